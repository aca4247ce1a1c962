// XEP-0357 push notifications through mod_event_pusher's push backend and
// mod_push_service_mongoosepush, end to end: a real server process,
// @xmpp/client sending the enable IQ, and a test MongoosePush (a real
// node:http listener) receiving the notifications.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { freePort, startPetrel, type Petrel } from '../helpers/server.ts';
import { prometheusToml, sampleValue, scrape, waitForSample } from '../pusher/helpers.ts';
import { connect, isMessage, xml } from '../helpers/client.ts';
import { Webhook, restart, type Received } from '../delivery/helpers.ts';
import { disableIq, enableIq, publishOptions, pushToml } from './helpers.ts';

const USERS: Array<[string, string]> = [['alice', 'pw'], ['bob', 'pw'], ['carol', 'pw'], ['dave', 'pw'], ['erin', 'pw']];

function registrations(p: Petrel, user: string): number {
  const db = new DatabaseSync(join(p.dir, 'data', 'petrel.sqlite'), { readOnly: true });
  try {
    return Number((db.prepare('SELECT COUNT(*) AS n FROM event_pusher_push_subscription WHERE user = ?').get(user) as { n: number }).n);
  } finally {
    db.close();
  }
}

function offlineCount(p: Petrel, user: string): number {
  const db = new DatabaseSync(join(p.dir, 'data', 'petrel.sqlite'), { readOnly: true });
  try {
    return Number((db.prepare('SELECT COUNT(*) AS n FROM offline WHERE user = ?').get(user) as { n: number }).n);
  } finally {
    db.close();
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > 10_000) throw new Error(`not reached within 10 s: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function json(r: Received): unknown {
  return JSON.parse(r.body);
}

describe('push notifications to MongoosePush (plugin_defaults)', () => {
  const mp = new Webhook();
  let server: Petrel;
  let metricsPort = 0;

  before(async () => {
    await mp.up();
    metricsPort = await freePort();
    server = await startPetrel({ users: USERS, extraToml: prometheusToml(metricsPort) + pushToml({ port: mp.port, extra: '  max_registrations = 3' }) });
  });

  after(async () => {
    await server?.dispose();
    await mp.down().catch(() => {});
  });

  const login = (user: string) => connect({ port: server.port }, user, 'pw');

  /** Enables one device for `user` and leaves. */
  const register = async (user: string, node: string, fields: Record<string, string>) => {
    const c = await login(user);
    await c.iq(enableIq({ jid: 'pubsub.localhost', node }, publishOptions(fields)));
    await c.close();
  };

  test('a message to an offline user reaches MongoosePush as the documented v3 JSON, with the enable form\'s publish-options', async () => {
    await register('alice', 'node-a1', {
      service: 'apns', device_id: 'token-a1', mode: 'dev', priority: 'high', topic: 'com.example.app',
      mutable_content: 'true', time_to_live: '3600', click_action: 'OPEN_CHAT', sound: 'bell.caf', tags: 'not-copied',
    });
    const bob = await login('bob');
    await bob.message('alice@localhost', 'hello alice');
    await mp.until(() => mp.on('/v3/notification/token-a1').length >= 1, 10_000, 'the notification');
    const got = mp.on('/v3/notification/token-a1')[0]!;
    assert.equal(got.headers['content-type'], 'application/json');
    assert.deepEqual(json(got), {
      service: 'apns', mode: 'dev', priority: 'high', topic: 'com.example.app', mutable_content: 'true', time_to_live: '3600',
      alert: { body: 'hello alice', title: 'bob@localhost', tag: 'bob@localhost', badge: 1, click_action: 'OPEN_CHAT', sound: 'bell.caf' },
    });
    await bob.close();
  });

  test('a silent registration gets the summary as data instead of an alert', async () => {
    await register('carol', 'node-c1', { service: 'fcm', device_id: 'token-c1', silent: 'true' });
    const bob = await login('bob');
    await bob.message('carol@localhost', 'quiet please');
    await mp.until(() => mp.on('/v3/notification/token-c1').length >= 1, 10_000, 'the notification');
    assert.deepEqual(json(mp.on('/v3/notification/token-c1')[0]!), {
      service: 'fcm',
      data: { 'message-count': 1, 'last-message-sender': 'bob@localhost', 'last-message-body': 'quiet please' },
    });
    await bob.close();
  });

  test('an online recipient, a message without a body and a session that is bound but unavailable get no notification', async () => {
    await register('dave', 'node-d1', { service: 'fcm', device_id: 'token-d1' });
    const bob = await login('bob');
    const dave = await login('dave');
    await dave.available();
    const id = await bob.message('dave@localhost', 'you are here');
    await dave.waitFor(isMessage(id));
    await dave.close();
    // Bound, never available: the message goes to offline storage, and plugin_defaults still sees a session.
    const bound = await login('dave');
    await bob.send(xml('message', { to: 'dave@localhost', type: 'chat', id: 'x1' }, xml('body', {}, 'while bound')));
    // Once mod_offline kept it, the push backend has seen it (filter_local_packet runs first).
    await until(() => offlineCount(server, 'dave') === 1, 'the message kept offline');
    await bound.close();
    await bob.send(xml('message', { to: 'dave@localhost', type: 'chat', id: 'x2' }, xml('active', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    await bob.message('dave@localhost', 'marker');
    await mp.until(() => mp.on('/v3/notification/token-d1').length >= 1, 10_000, 'the marker notification');
    const bodies = mp.on('/v3/notification/token-d1').map((r) => (json(r) as { alert: { body: string } }).alert.body);
    assert.deepEqual(bodies, ['marker']);
    await bob.close();
  });

  test('registrations survive a restart', async () => {
    await register('erin', 'node-e1', { service: 'fcm', device_id: 'token-e1' });
    await server.stop();
    await restart(server);
    const bob = await login('bob');
    await bob.message('erin@localhost', 'after the restart');
    await mp.until(() => mp.on('/v3/notification/token-e1').length >= 1, 10_000, 'the notification');
    assert.equal((json(mp.on('/v3/notification/token-e1')[0]!) as { alert: { body: string } }).alert.body, 'after the restart');
    await bob.close();
  });

  test('a notification made while MongoosePush is down is listed by petrel deliveries and arrives once it is back', async () => {
    await register('alice', 'node-a2', { service: 'fcm', device_id: 'token-a2' });
    await mp.down();
    try {
      const bob = await login('bob');
      await bob.message('alice@localhost', 'are you there');
      // Both of alice's devices (this test's and the first test's) wait in the outbox.
      const row = /^0 push:mongoosepush:mongoose_push_http\s+2\s+\d+\s+\d+\s+0$/m;
      let listed = '';
      for (let i = 0; i < 20 && !row.test(listed); i++) listed = (await server.cli(['deliveries'])).stdout;
      assert.match(listed, row);
      assert.equal(mp.on('/v3/notification/token-a2').length, 0);
      await bob.close();
    } finally {
      await mp.up();
    }
    await mp.until(() => mp.on('/v3/notification/token-a2').length >= 1, 15_000, 'the retried notification');
    assert.equal((json(mp.on('/v3/notification/token-a2')[0]!) as { alert: { body: string } }).alert.body, 'are you there');
  });

  test('a 410 from MongoosePush removes the registration, with a log line, and nothing more is sent to that device', async () => {
    mp.script('/v3/notification/token-gone', () => ({ status: 410 }));
    await register('bob', 'node-b-gone', { service: 'fcm', device_id: 'token-gone' });
    await register('bob', 'node-b-kept', { service: 'fcm', device_id: 'token-kept' });
    assert.equal(registrations(server, 'bob'), 2);
    const carol = await login('carol');
    await carol.message('bob@localhost', 'first');
    const line = await server.waitForLog((l) => l.what === 'push_registration_disabled');
    assert.equal(line.user, 'bob@localhost');
    assert.equal(line.node, 'node-b-gone');
    assert.equal(line.reason, 'device_not_registered');
    assert.equal(registrations(server, 'bob'), 1);
    await waitForSample(metricsPort, 'petrel_event_pusher_push_registrations_disabled_total', { host_type: 'localhost', reason: 'device_not_registered' }, (v) => v === 1);
    await carol.message('bob@localhost', 'second');
    await mp.until(() => mp.on('/v3/notification/token-kept').length >= 2, 10_000, 'both notifications of the kept device');
    assert.equal(mp.on('/v3/notification/token-gone').length, 1);
    // The refused notification is a dead letter, listed with its answer.
    const dead = await server.cli(['deliveries', 'dead-letter', 'list']);
    assert.equal(dead.code, 0, dead.stderr);
    assert.match(dead.stdout, /push:mongoosepush:mongoose_push_http  attempts=1  error="HTTP 410: device not registered"/);
    await carol.close();
  });

  test('disable without a node removes every node of that service, with a node only that node', async () => {
    const carol = await login('carol');
    await carol.iq(disableIq({ jid: 'pubsub.localhost' }));
    await carol.iq(enableIq({ jid: 'pubsub.localhost', node: 'n1' }, publishOptions({ service: 'fcm', device_id: 'c-1' })));
    await carol.iq(enableIq({ jid: 'pubsub.localhost', node: 'n2' }, publishOptions({ service: 'fcm', device_id: 'c-2' })));
    await carol.iq(enableIq({ jid: 'pubsub.localhost', node: 'n3' }, publishOptions({ service: 'fcm', device_id: 'c-3' })));
    assert.equal(registrations(server, 'carol'), 3);
    await carol.iq(disableIq({ jid: 'pubsub.localhost', node: 'n3' }));
    assert.equal(registrations(server, 'carol'), 2);
    await carol.iq(disableIq({ jid: 'pubsub.localhost' }));
    assert.equal(registrations(server, 'carol'), 0);
    await carol.close();
  });

  test('bad enable and disable requests are answered with MongooseIM\'s errors over a real socket', async () => {
    const c = await login('carol');
    const fails = async (el: ReturnType<typeof enableIq>, condition: string, text?: RegExp) => {
      const err = await c.iq(el).then(() => undefined, (e: { condition?: string; text?: string }) => e);
      assert.ok(err !== undefined, `${el.toString()} was accepted`);
      assert.equal(err.condition, condition, el.toString());
      if (text !== undefined) assert.match(String(err.text), text);
    };
    const opts = publishOptions({ service: 'fcm', device_id: 'x' });
    await fails(enableIq({ node: 'n' }, opts), 'bad-request');
    await fails(enableIq({ jid: '@@', node: 'n' }, opts), 'bad-request');
    await fails(enableIq({ jid: 'pubsub.localhost' }, opts), 'bad-request');
    await fails(enableIq({ jid: 'pubsub.localhost', node: '' }, opts), 'bad-request');
    await fails(enableIq({ jid: 'pubsub.localhost', node: 'n' }, publishOptions({ service: 'fcm' }, { type: 'form' })), 'bad-request');
    await fails(enableIq({ jid: 'pubsub.localhost', node: 'n' }, publishOptions({ service: 'fcm' }, { formType: 'urn:example:other' })), 'bad-request');
    await fails(enableIq({ jid: 'pubsub.localhost', node: 'n' }, publishOptions({ service: 'fcm' }, { formType: null })), 'bad-request');
    await fails(enableIq({ jid: 'pubsub.localhost', node: 'n' }, publishOptions({ service: ['fcm', 'apns'] })), 'bad-request');
    await fails(disableIq({ node: 'n' }), 'bad-request');
    await fails(disableIq({ jid: 'pubsub.localhost', node: '' }), 'bad-request');
    await fails(xml('iq', { type: 'set' }, xml('configure', { xmlns: 'urn:xmpp:push:0' })), 'bad-request');
    await fails(xml('iq', { type: 'get' }, xml('enable', { xmlns: 'urn:xmpp:push:0', jid: 'pubsub.localhost', node: 'n' })), 'not-allowed');
    await fails(enableIq({ jid: 'push.example.net', node: 'n' }, opts), 'feature-not-implemented', /server-to-server/);
    await fails(enableIq({ jid: 'pubsub.localhost', node: 'n' }, opts, 'alice@localhost'), 'forbidden');
    await fails(enableIq({ jid: 'pubsub.localhost', node: 'big' }, publishOptions({ service: 'fcm', device_id: 'x'.repeat(5000) })), 'not-acceptable', /max_registration_size/);
    // max_registrations = 3: a fourth node is refused, re-enabling a kept one is not.
    for (const n of ['l1', 'l2', 'l3']) await c.iq(enableIq({ jid: 'pubsub.localhost', node: n }, opts));
    await fails(enableIq({ jid: 'pubsub.localhost', node: 'l4' }, opts), 'resource-constraint', /max_registrations/);
    await c.iq(enableIq({ jid: 'pubsub.localhost', node: 'l2' }, publishOptions({ service: 'apns', device_id: 'y' })));
    assert.equal(registrations(server, 'carol'), 3);
    await c.iq(disableIq({ jid: 'pubsub.localhost' }));
    const text = await scrape(metricsPort);
    assert.equal(sampleValue(text, 'petrel_event_pusher_push_requests_total', { host_type: 'localhost', result: 'bad_request' }), 11);
    assert.equal(sampleValue(text, 'petrel_event_pusher_push_requests_total', { host_type: 'localhost', result: 'limit' }), 2);
    // The server is still there.
    const bob = await login('bob');
    const id = await bob.message(c.jid, 'still here');
    await c.waitFor(isMessage(id));
    await bob.close();
    await c.close();
  });

  test('petrel unregister removes the account\'s push registrations', async () => {
    await server.register('frank', 'pw');
    await register('frank', 'node-f1', { service: 'fcm', device_id: 'token-f1' });
    assert.equal(registrations(server, 'frank'), 1);
    await server.unregister('frank');
    assert.equal(registrations(server, 'frank'), 0);
  });
});

describe('push notifications with mod_event_pusher_push_plugin_enhanced', () => {
  const mp = new Webhook();
  let server: Petrel;

  before(async () => {
    await mp.up();
    server = await startPetrel({ users: USERS, extraToml: pushToml({ port: mp.port, plugin: 'mod_event_pusher_push_plugin_enhanced' }) });
  });

  after(async () => {
    await server?.dispose();
    await mp.down().catch(() => {});
  });

  test('a message handed to offline storage while the user still has a session is notified, once', async () => {
    const alice = await connect({ port: server.port }, 'alice', 'pw');
    await alice.iq(enableIq({ jid: 'pubsub.localhost', node: 'n' }, publishOptions({ service: 'fcm', device_id: 'enh-1' })));
    // Bound but not available: the message is kept offline.
    const bob = await connect({ port: server.port }, 'bob', 'pw');
    await bob.message('alice@localhost', 'kept offline');
    await mp.until(() => mp.on('/v3/notification/enh-1').length >= 1, 10_000, 'the notification');
    await alice.close();
    await bob.message('alice@localhost', 'no session at all');
    await mp.until(() => mp.on('/v3/notification/enh-1').length >= 2, 10_000, 'the second notification');
    const bodies = mp.on('/v3/notification/enh-1').map((r) => (json(r) as { alert: { body: string } }).alert.body);
    assert.deepEqual(bodies, ['kept offline', 'no session at all']);
    await bob.close();
  });
});

describe('push notifications with only_offline = false and only_with_body = false', () => {
  const mp = new Webhook();
  let server: Petrel;

  before(async () => {
    await mp.up();
    // The senders on the server's thread this time (the other servers use the sender thread).
    server = await startPetrel({ users: USERS, extraToml: `[modules.mod_event_pusher]\n  sender_thread = "main"\n${pushToml({ port: mp.port, extra: '  only_offline = false\n  only_with_body = false' })}` });
  });

  after(async () => {
    await server?.dispose();
    await mp.down().catch(() => {});
  });

  test('an online recipient and a message without a body are notified too', async () => {
    const alice = await connect({ port: server.port }, 'alice', 'pw');
    await alice.available();
    await alice.iq(enableIq({ jid: 'pubsub.localhost', node: 'n' }, publishOptions({ service: 'fcm', device_id: 'all-1' })));
    const bob = await connect({ port: server.port }, 'bob', 'pw');
    const id = await bob.message('alice@localhost', 'while online');
    await alice.waitFor(isMessage(id));
    await mp.until(() => mp.on('/v3/notification/all-1').length >= 1, 10_000, 'the notification');
    await bob.send(xml('message', { to: 'alice@localhost', type: 'chat', id: 's1' }, xml('composing', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    await mp.until(() => mp.on('/v3/notification/all-1').length >= 2, 10_000, 'the second notification');
    const bodies = mp.on('/v3/notification/all-1').map((r) => (json(r) as { alert: { body: string } }).alert.body);
    assert.deepEqual(bodies, ['while online', '']);
    await alice.close();
    await bob.close();
  });
});
