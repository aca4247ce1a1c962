// A web service that is not there, or that answers 500: the failure is
// counted and logged (without the message body), and chat goes on as if
// nothing happened.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, preparePetrel, type LogLine, type Petrel } from '../helpers/server.ts';
import { isMessage, type TestClient } from '../helpers/client.ts';
import { bestEffortLine, handlersToml, poolToml, prometheusToml, sampleValue, scrape, spiralRow, unique, until, waitForSample, Webhook, online } from './helpers.ts';

const HOST = { host_type: 'localhost' };
const FAILED = 'mod_event_pusher_http_sent_failure_count';
const OUTCOMES = 'petrel_event_pusher_http_responses_total';
/** Handler 0 sends to a port nobody listens on, handler 1 to a service answering 500. */
const DEAD = 0;
const BROKEN = 1;

describe('failing web services', () => {
  let server: Petrel;
  let broken: Webhook;
  let metricsPort: number;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    broken = await Webhook.start({ respond: () => ({ status: 500, body: 'it broke' }) });
    const deadPort = await freePort();
    metricsPort = await freePort();
    const toml =
      prometheusToml(metricsPort) +
      poolToml({ tag: 'dead', host: `http://127.0.0.1:${deadPort}`, path_prefix: '/nobody' }) +
      poolToml({ tag: 'broken', host: broken.origin, path_prefix: '/webservice' }) +
      // Without retries where this build can turn them off: one failure per message.
      handlersToml([{ pool_name: 'dead', path: '/notifications' }, { pool_name: 'broken', path: '/notifications' }], await bestEffortLine());
    server = await preparePetrel({ users: [['alice', 'alice-pw'], ['bob', 'bob-pw']], extraToml: toml });
    await server.start();
    [alice, bob] = await Promise.all([online(server.port, 'alice', 'alice-pw'), online(server.port, 'bob', 'bob-pw')]);
  });

  after(async () => {
    await Promise.all([alice?.close(), bob?.close()]);
    await server?.dispose();
    await broken?.close();
  });

  const failedLog = (handler: number) => (l: LogLine) => typeof l.what === 'string' && /event_pusher_http_.*fail/.test(l.what) && l.handler === handler;

  test('with no listener on the pool port the failure is counted and the message is still delivered', async () => {
    const before = sampleValue(await scrape(metricsPort), FAILED, HOST) ?? 0;
    const text = unique('to-nowhere');
    const id = await alice.message('bob@localhost', text);
    const got = await bob.waitFor(isMessage(id));
    assert.equal(got.getChildText('body'), text);
    await waitForSample(metricsPort, FAILED, HOST, (v) => v >= before + 1);
    await waitForSample(metricsPort, OUTCOMES, { ...HOST, handler: String(DEAD), outcome: 'refused' }, (v) => v >= 1);
    const line = await server.waitForLog(failedLog(DEAD));
    assert.equal(line.reason, 'refused');
    assert.match(String(line.url), /^http:\/\/127\.0\.0\.1:\d+\/nobody\/notifications$/);
    assert.ok(server.running, 'the server is still up');
    // Still serving: another message goes through.
    const again = await bob.message(alice.jid, unique('reply'));
    await alice.waitFor(isMessage(again));
  });

  test('a 500 answer is a failure with its status in the metrics and the log', async () => {
    const text = unique('to-broken');
    await alice.message('bob@localhost', text);
    const [req] = await broken.waitFor((r) => r.text.includes(text));
    assert.equal(req!.url, '/webservice/notifications');
    await waitForSample(metricsPort, OUTCOMES, { ...HOST, handler: String(BROKEN), outcome: 'http_500' }, (v) => v >= 1);
    assert.ok((sampleValue(await scrape(metricsPort), FAILED, HOST) ?? 0) >= 1);
    const line = await server.waitForLog((l) => failedLog(BROKEN)(l) && l.status === 500);
    assert.equal(line.level, 40);
    assert.equal(line.host_type, 'localhost');
  });

  test('petrel metrics shows the failures in the failed row', async () => {
    const failed = sampleValue(await scrape(metricsPort), FAILED, HOST)!;
    assert.ok(failed >= 2);
    const r = await server.cli(['metrics']);
    assert.equal(r.code, 0, r.stderr);
    const row = spiralRow(r.stdout, 'localhost', 'failed');
    assert.ok(row !== undefined, r.stdout);
    assert.ok(row.count >= failed, r.stdout);
    assert.ok(row.one >= 1, r.stdout);
    assert.equal(spiralRow(r.stdout, 'localhost', 'sent')?.count, 0);
  });

  test('message bodies are not in the server log, even when the push fails', async () => {
    const secret = unique('do-not-log-this-body');
    const before = { dead: server.logs.filter(failedLog(DEAD)).length, broken: server.logs.filter(failedLog(BROKEN)).length };
    const id = await alice.message('bob@localhost', secret);
    await bob.waitFor(isMessage(id));
    await broken.waitFor((r) => r.text.includes(secret));
    await until(() => server.logs.filter(failedLog(DEAD)).length > before.dead, 'a new failure line for the dead handler');
    await until(() => server.logs.filter(failedLog(BROKEN)).length > before.broken, 'a new failure line for the broken handler');
    const leaked = server.logs.filter((l) => JSON.stringify(l).includes(secret));
    assert.deepEqual(leaked, []);
  });
});
