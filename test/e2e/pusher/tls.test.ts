// HTTPS web services: a self-signed certificate named in the pool's
// connection.tls.cacertfile is trusted; the same service behind a pool
// without it is refused, and the log says it was TLS.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, preparePetrel, tempDir, type Petrel } from '../helpers/server.ts';
import { isMessage, type TestClient } from '../helpers/client.ts';
import { bestEffortLine, decodeForm, handlersToml, makeLocalhostCert, poolToml, prometheusToml, unique, waitForSample, Webhook, online } from './helpers.ts';

const TRUSTED = 0;
const UNTRUSTED = 1;

describe('HTTPS web services', () => {
  let server: Petrel;
  let hook: Webhook;
  let metricsPort: number;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    const dir = await tempDir();
    const cert = await makeLocalhostCert(dir);
    hook = await Webhook.start({ tls: cert });
    metricsPort = await freePort();
    const toml =
      prometheusToml(metricsPort) +
      // Relative to the config file, as an operator writes it.
      poolToml({ tag: 'trusted', host: hook.origin, path_prefix: '/trusted', tls: { cacertfile: 'webhook-cert.pem' } }) +
      poolToml({ tag: 'untrusted', host: hook.origin, path_prefix: '/untrusted' }) +
      handlersToml([{ pool_name: 'trusted', path: '/notifications' }, { pool_name: 'untrusted', path: '/notifications' }], await bestEffortLine());
    server = await preparePetrel({ users: [['alice', 'alice-pw'], ['bob', 'bob-pw']], extraToml: toml }, dir);
    await server.start();
    [alice, bob] = await Promise.all([online(server.port, 'alice', 'alice-pw'), online(server.port, 'bob', 'bob-pw')]);
  });

  after(async () => {
    await Promise.all([alice?.close(), bob?.close()]);
    await server?.dispose();
    await hook?.close();
  });

  test('a self-signed certificate trusted through cacertfile is accepted', async () => {
    const text = unique('over-tls');
    const id = await alice.message('bob@localhost', text);
    await bob.waitFor(isMessage(id));
    const [r] = await hook.waitFor((x) => x.url === '/trusted/notifications' && decodeForm(x.text).message === text);
    assert.deepEqual(decodeForm(r!.text), { author: 'alice', server: 'localhost', receiver: 'bob', message: text });
    await waitForSample(metricsPort, 'petrel_event_pusher_http_responses_total', { host_type: 'localhost', handler: String(TRUSTED), outcome: 'ok' }, (v) => v >= 1);
  });

  test('without cacertfile the same certificate is refused as a TLS failure', async () => {
    const text = unique('refused-tls');
    const id = await alice.message('bob@localhost', text);
    await bob.waitFor(isMessage(id));
    await waitForSample(metricsPort, 'petrel_event_pusher_http_responses_total', { host_type: 'localhost', handler: String(UNTRUSTED), outcome: 'tls' }, (v) => v >= 1);
    await waitForSample(metricsPort, 'mod_event_pusher_http_sent_failure_count', { host_type: 'localhost' }, (v) => v >= 1);
    const line = await server.waitForLog((l) => typeof l.what === 'string' && /event_pusher_http_.*fail/.test(l.what) && l.handler === UNTRUSTED);
    assert.equal(line.reason, 'tls');
    assert.match(String(line.error), /self[- ]signed|certificate/i);
    assert.equal(hook.matching((x) => x.url.startsWith('/untrusted')).length, 0, 'nothing reached the service through the untrusted pool');
  });
});
