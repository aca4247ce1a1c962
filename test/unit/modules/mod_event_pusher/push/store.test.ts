// The push backend's registrations, one contract over SQLite and PostgreSQL.
import { beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { PUSH_STORE, type PushStore } from '../../../../../src/modules/mod_event_pusher/push/store.ts';
import { onEachBackend } from '../../../storage/backends.ts';

onEachBackend('the push registration store', (b) => {
  let store: PushStore;
  beforeEach(async () => {
    store = await b.access.open(PUSH_STORE, b.kind, 'modules.mod_event_pusher.push.backend');
  });

  const reg = (node: string, form: Record<string, string> = {}, pubsub = 'pubsub.example.com') => ({ pubsub, node, form });

  test('opening creates the table and records its version under "mod_event_pusher_push"', async () => {
    assert.deepEqual(
      (await b.query('SELECT component, version FROM petrel_schema_version')).map((r) => [r.component, Number(r.version)]),
      [['mod_event_pusher_push', 1]],
    );
  });

  test('an enable is listed with its form, and enabling the same node again replaces the form', async () => {
    assert.equal(await store.enable('alice', 'example.com', reg('n1', { service: 'fcm', device_id: 'a' }), 10), 'ok');
    assert.equal(await store.enable('alice', 'example.com', reg('n2', { service: 'apns' }), 10), 'ok');
    assert.equal(await store.enable('alice', 'example.com', reg('n1', { service: 'fcm', device_id: 'b' }), 10), 'ok');
    assert.deepEqual(await store.list('alice', 'example.com'), [reg('n1', { service: 'fcm', device_id: 'b' }), reg('n2', { service: 'apns' })]);
    assert.deepEqual(await store.list('alice', 'other.org'), []);
  });

  test('a new registration past the limit is refused, a kept one is still replaced', async () => {
    for (const n of ['a', 'b', 'c']) assert.equal(await store.enable('bob', 'example.com', reg(n), 3), 'ok');
    assert.equal(await store.enable('bob', 'example.com', reg('d'), 3), 'limit');
    assert.equal(await store.enable('bob', 'example.com', reg('b', { x: '1' }), 3), 'ok');
    const got = await Promise.all(['e', 'f'].map((n) => store.enable('bob', 'example.com', reg(n), 4)));
    assert.deepEqual(got.sort(), ['limit', 'ok']);
    assert.equal((await store.list('bob', 'example.com')).length, 4);
  });

  test('disable removes one node, or every node of a service, and keeps the others', async () => {
    await store.enable('carol', 'example.com', reg('n1'), 10);
    await store.enable('carol', 'example.com', reg('n2'), 10);
    await store.enable('carol', 'example.com', reg('n3', {}, 'push.other.org'), 10);
    assert.equal(await store.disable('carol', 'example.com', 'pubsub.example.com', 'n1'), 1);
    assert.equal(await store.disable('carol', 'example.com', 'pubsub.example.com', 'nope'), 0);
    await store.enable('carol', 'example.com', reg('n4'), 10);
    assert.equal(await store.disable('carol', 'example.com', 'pubsub.example.com', undefined), 2);
    assert.deepEqual(await store.list('carol', 'example.com'), [reg('n3', {}, 'push.other.org')]);
  });

  test('registrations are kept across a reopen, and removing a user deletes theirs only', async () => {
    await store.enable('dave', 'example.com', reg('n1', { k: 'v' }), 10);
    await store.enable('erin', 'example.com', reg('n1'), 10);
    const access = await b.reopen();
    store = await access.open(PUSH_STORE, b.kind, 'modules.mod_event_pusher.push.backend');
    assert.deepEqual(await store.list('dave', 'example.com'), [reg('n1', { k: 'v' })]);
    await store.removeUser('dave', 'example.com');
    assert.deepEqual(await store.list('dave', 'example.com'), []);
    assert.equal((await store.list('erin', 'example.com')).length, 1);
  });
});
