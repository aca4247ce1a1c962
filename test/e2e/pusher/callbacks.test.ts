// Two handlers with callback modules written by the operator, as TypeScript
// files next to the config file (the shape of the specification's second
// example): each path gets exactly the events its module's shouldMakeReq
// picks, shaped by its prepareHeaders and prepareBody.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { preparePetrel, tempDir, type Petrel } from '../helpers/server.ts';
import { isMessage, type TestClient } from '../helpers/client.ts';
import { copyFixtures, poolToml, unique, Webhook, type Received, online } from './helpers.ts';

const MODULES = ['mod_event_pusher_http_notifications.ts', 'mod_event_pusher_http_alerts.ts'];

describe('callback modules in the config directory', () => {
  let server: Petrel;
  let hook: Webhook;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    hook = await Webhook.start();
    const dir = await tempDir();
    await copyFixtures(dir, MODULES);
    // One connection: the notifications of each handler arrive in the order they were made.
    const toml =
      poolToml({ tag: 'http_pool', host: hook.origin, path_prefix: '/webservice', workers: 1 }) +
      `[[modules.mod_event_pusher.backend.http]]
  pool_name = "http_pool"
  path = "/notifications"
  callback_module = "mod_event_pusher_http_notifications"

[[modules.mod_event_pusher.backend.http]]
  pool_name = "http_pool"
  path = "/alerts"
  callback_module = "mod_event_pusher_http_alerts"
`;
    server = await preparePetrel({ users: [['alice', 'alice-pw'], ['bob', 'bob-pw']], extraToml: toml }, dir);
    await server.start();
    [alice, bob] = await Promise.all([online(server.port, 'alice', 'alice-pw'), online(server.port, 'bob', 'bob-pw')]);
  });

  after(async () => {
    await Promise.all([alice?.close(), bob?.close()]);
    await server?.dispose();
    await hook?.close();
  });

  const at = (path: string) => (r: Received) => r.url === path;

  test('each path receives exactly the events its callback module chooses, shaped by it', async () => {
    const tag = unique('cb');
    const sent: Array<{ from: TestClient; to: TestClient; text: string }> = [
      { from: alice, to: bob, text: `${tag} one` },
      { from: alice, to: bob, text: `${tag} two` },
      { from: bob, to: alice, text: `${tag} three` },
    ];
    for (const m of sent) {
      const id = await m.from.message(m.to.bare, m.text);
      await m.to.waitFor(isMessage(id));
    }
    // Neither module pushes a groupchat message, nor one without a body.
    const gc = await alice.message(bob.jid, `${tag} groupchat`, 'groupchat');
    await bob.waitFor(isMessage(gc));
    // The last message marks the end: with one connection, everything before it has arrived when it does.
    const end = `${tag} end`;
    const endId = await alice.message(bob.bare, end);
    await bob.waitFor(isMessage(endId));
    await Promise.all([hook.waitFor((r) => at('/webservice/notifications')(r) && r.text.includes(end)), hook.waitFor((r) => at('/webservice/alerts')(r) && r.text.includes(end))]);

    const mine = (r: Received) => r.text.includes(tag);
    const notifications = hook.matching((r) => at('/webservice/notifications')(r) && mine(r));
    const alerts = hook.matching((r) => at('/webservice/alerts')(r) && mine(r));
    const expected = [...sent, { from: alice, to: bob, text: end }];
    assert.deepEqual(
      notifications.map((r) => JSON.parse(r.text)),
      expected.map((m) => ({ kind: 'notification', dir: 'in', host: 'localhost', sender: m.from.xmpp.jid!.local, receiver: m.to.xmpp.jid!.local, receiverHost: 'localhost', message: m.text })),
    );
    for (const r of notifications) {
      assert.equal(r.method, 'POST');
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(r.headers['x-petrel-handler'], '/notifications');
      assert.equal(r.headers['x-alert'], undefined);
    }
    assert.deepEqual(
      alerts.map((r) => r.text),
      expected.map((m) => `alert out ${m.from.xmpp.jid!.local}->${m.to.xmpp.jid!.local}: ${m.text}`),
    );
    for (const r of alerts) {
      assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(r.headers['x-alert'], 'yes');
      assert.equal(r.headers['x-petrel-handler'], undefined);
    }
  });

  test('the two handlers carry different webhook-id headers for the same message', async () => {
    const text = unique('ids');
    const id = await alice.message(bob.bare, text);
    await bob.waitFor(isMessage(id));
    const [[n], [a]] = await Promise.all([hook.waitFor((r) => at('/webservice/notifications')(r) && r.text.includes(text)), hook.waitFor((r) => at('/webservice/alerts')(r) && r.text.includes(text))]);
    const ids = [n!.headers['webhook-id'], a!.headers['webhook-id']];
    for (const v of ids) assert.match(String(v), /\S/);
    assert.notEqual(ids[0], ids[1]);
  });
});

describe('a callback module on a server of two domains', () => {
  test('prepareBody gets the sender\'s domain as host and the recipient\'s as receiverHost', async () => {
    const hook = await Webhook.start();
    const dir = await tempDir();
    await copyFixtures(dir, ['mod_event_pusher_http_notifications.ts']);
    const toml =
      poolToml({ tag: 'http_pool', host: hook.origin, path_prefix: '/', workers: 1 }) +
      '[[modules.mod_event_pusher.backend.http]]\n  path = "/n"\n  callback_module = "mod_event_pusher_http_notifications"\n';
    const server = await preparePetrel({ hosts: ['localhost', 'other.test'], users: [['alice', 'alice-pw']], extraToml: toml }, dir);
    let alice: TestClient | undefined;
    let bob: TestClient | undefined;
    try {
      await server.register('bob', 'bob-pw', 'other.test');
      await server.start();
      alice = await online(server.port, 'alice', 'alice-pw');
      bob = await online(server.port, 'bob', 'bob-pw', { domain: 'other.test' });
      const id = await alice.message(bob.bare, 'across domains');
      await bob.waitFor(isMessage(id));
      const [got] = await hook.waitFor((r) => r.url === '/n' && r.text.includes('across domains'));
      assert.deepEqual(JSON.parse(got!.text), {
        kind: 'notification', dir: 'in', host: 'localhost', sender: 'alice', receiver: 'bob', receiverHost: 'other.test', message: 'across domains',
      });
    } finally {
      await Promise.all([alice?.close(), bob?.close()]);
      await server.dispose();
      await hook.close();
    }
  });
});
