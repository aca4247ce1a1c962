// The two example configurations of the specification, copied verbatim,
// against an HTTPS web service on localhost:8000 as they name it. The
// service's self-signed certificate is trusted through NODE_EXTRA_CA_CERTS,
// so not a character of the examples changes.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { preparePetrel, tempDir, type Petrel } from '../helpers/server.ts';
import { isMessage, type TestClient } from '../helpers/client.ts';
import { copyFixtures, decodeForm, makeLocalhostCert, unique, Webhook, online } from './helpers.ts';

const EXAMPLE_1 = `[outgoing_pools.http.http_pool]
  scope = "global"
  workers = 50

  [outgoing_pools.http.http_pool.connection]
    host = "https://localhost:8000"
    path_prefix = "/webservice"
    request_timeout = 2000

[modules.mod_event_pusher.backend.http]
  pool_name = "http_pool"
  path = "/notifications"
`;

const EXAMPLE_2 = `[[modules.mod_event_pusher.backend.http]]
  pool_name = "http_pool"
  path = "/notifications"
  callback_module = "mod_event_pusher_http_notifications"

[[modules.mod_event_pusher.backend.http]]
  pool_name = "http_pool"
  path = "/alerts"
  callback_module = "mod_event_pusher_http_alerts"
`;

/** The pool of the first example: the second one uses it without repeating it. */
const EXAMPLE_1_POOL = EXAMPLE_1.slice(0, EXAMPLE_1.indexOf('[modules.'));

describe("the specification's example configurations", () => {
  let certDir: string;
  let certfile: string;
  let hook: Webhook | undefined;
  let unavailable: string | undefined;

  before(async () => {
    certDir = await tempDir();
    const cert = await makeLocalhostCert(certDir);
    certfile = cert.certfile;
    // "localhost" may resolve to either loopback address; the service answers on both.
    try {
      hook = await Webhook.start({ tls: cert, port: 8000, addresses: ['127.0.0.1', '::1'] });
    } catch (err) {
      unavailable = `port 8000 is taken (${(err as Error).message})`;
    }
  });

  after(async () => {
    await hook?.close();
    await rm(certDir, { recursive: true, force: true });
  });

  async function run(t: TestContext, toml: string, fixtures: string[], body: (alice: TestClient, bob: TestClient, hook: Webhook) => Promise<void>): Promise<void> {
    if (unavailable !== undefined || hook === undefined) {
      t.skip(unavailable ?? 'no web service on port 8000');
      return;
    }
    const dir = await tempDir();
    await copyFixtures(dir, fixtures);
    let server: Petrel | undefined;
    let clients: TestClient[] = [];
    try {
      server = await preparePetrel({ users: [['alice', 'alice-pw'], ['bob', 'bob-pw']], extraToml: toml }, dir);
      await server.start({ env: { ...process.env, NODE_EXTRA_CA_CERTS: certfile } });
      clients = await Promise.all([online(server.port, 'alice', 'alice-pw'), online(server.port, 'bob', 'bob-pw')]);
      await body(clients[0]!, clients[1]!, hook);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      if (server !== undefined) await server.dispose();
      else await rm(dir, { recursive: true, force: true });
    }
  }

  test('the first example POSTs the default form to https://localhost:8000/webservice/notifications', async (t) => {
    await run(t, EXAMPLE_1, [], async (alice, bob, hook) => {
      const text = unique('example-1');
      const id = await alice.message('bob@localhost', text);
      await bob.waitFor(isMessage(id));
      const [r] = await hook.waitFor((x) => decodeForm(x.text).message === text);
      assert.equal(r!.method, 'POST');
      assert.equal(r!.url, '/webservice/notifications');
      assert.equal(r!.headers.host, 'localhost:8000');
      assert.equal(r!.headers['content-type'], 'application/x-www-form-urlencoded');
      assert.equal(r!.text, `author=alice&server=localhost&receiver=bob&message=${text}`);
    });
  });

  test('the second example sends to /webservice/notifications and /webservice/alerts as its callback modules decide', async (t) => {
    const fixtures = ['mod_event_pusher_http_notifications.ts', 'mod_event_pusher_http_alerts.ts'];
    await run(t, EXAMPLE_1_POOL + '\n' + EXAMPLE_2, fixtures, async (alice, bob, hook) => {
      const text = unique('example-2');
      const id = await alice.message('bob@localhost', text);
      await bob.waitFor(isMessage(id));
      const [[n], [a]] = await Promise.all([
        hook.waitFor((x) => x.url === '/webservice/notifications' && x.text.includes(text)),
        hook.waitFor((x) => x.url === '/webservice/alerts' && x.text.includes(text)),
      ]);
      assert.deepEqual(JSON.parse(n!.text), { kind: 'notification', dir: 'in', host: 'localhost', sender: 'alice', receiver: 'bob', receiverHost: 'localhost', message: text });
      assert.equal(a!.text, `alert out alice->bob: ${text}`);
      // Each module chose one direction: one request per path for the message.
      assert.equal(hook.matching((x) => x.text.includes(text)).length, 2);
    });
  });
});
