// mod_offline's store, one contract over SQLite and PostgreSQL.
import { beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { OFFLINE_STORE, type OfflineStore } from '../../../../src/modules/mod_offline/store.ts';
import { onEachBackend } from '../../storage/backends.ts';

onEachBackend('the offline message store', (b) => {
  let offline: OfflineStore;
  beforeEach(async () => {
    offline = await b.access.open(OFFLINE_STORE, b.kind, 'modules.mod_offline.backend');
  });

  test('opening creates the table and records its version under "mod_offline"', async () => {
    assert.deepEqual(
      (await b.query('SELECT component, version FROM petrel_schema_version')).map((r) => [r.component, Number(r.version)]),
      [['mod_offline', 2]],
    );
  });

  test('messages are popped oldest first, with every field, and then gone', async () => {
    for (let i = 0; i < 5; i++) {
      await offline.store('alice', 'example.com', { xml: `<message id="${i}"/>`, from: 'bob@example.com/r', timestamp: 1000 + i });
    }
    assert.equal(await offline.count('alice', 'example.com'), 5);
    assert.deepEqual(await offline.usage('alice', 'example.com'), { count: 5, chars: 5 * '<message id="0"/>'.length });
    const popped = await offline.popAll('alice', 'example.com');
    assert.deepEqual(popped.map((m) => [m.xml, m.timestamp]), [0, 1, 2, 3, 4].map((i) => [`<message id="${i}"/>`, 1000 + i]));
    assert.deepEqual(popped[0], { xml: '<message id="0"/>', from: 'bob@example.com/r', timestamp: 1000 });
    assert.equal(await offline.count('alice', 'example.com'), 0);
    assert.deepEqual(await offline.popAll('alice', 'example.com'), []);
  });

  test('two pops at once hand each message over once', async () => {
    for (let i = 0; i < 5; i++) await offline.store('carol', 'localhost', { xml: `<message id="${i}"/>`, from: 'bob@localhost/r', timestamp: 1000 + i });
    const [x, y] = await Promise.all([offline.popAll('carol', 'localhost'), offline.popAll('carol', 'localhost')]);
    assert.deepEqual([...x, ...y].map((m) => m.xml), [0, 1, 2, 3, 4].map((i) => `<message id="${i}"/>`));
    assert.equal(await offline.count('carol', 'localhost'), 0);
  });

  test('popping one user\'s messages leaves another user\'s', async () => {
    await offline.store('alice', 'example.com', { xml: '<a/>', from: 'x@y', timestamp: 1 });
    await offline.store('alice', 'other.org', { xml: '<b/>', from: 'x@y', timestamp: 2 });
    await offline.store('bob', 'example.com', { xml: '<c/>', from: 'x@y', timestamp: 3 });
    assert.deepEqual((await offline.popAll('alice', 'example.com')).map((m) => m.xml), ['<a/>']);
    assert.equal(await offline.count('alice', 'other.org'), 1);
    assert.equal(await offline.count('bob', 'example.com'), 1);
  });

  test('a message stored after a pop is kept for the next one', async () => {
    await offline.store('alice', 'example.com', { xml: '<a/>', from: 'x@y', timestamp: 1 });
    await offline.popAll('alice', 'example.com');
    await offline.store('alice', 'example.com', { xml: '<b/>', from: 'x@y', timestamp: 2 });
    assert.deepEqual((await offline.popAll('alice', 'example.com')).map((m) => m.xml), ['<b/>']);
  });

  test('removing a user deletes their messages and nobody else\'s', async () => {
    await offline.store('alice', 'example.com', { xml: '<a/>', from: 'x@y', timestamp: 1 });
    await offline.store('alice', 'example.com', { xml: '<b/>', from: 'x@y', timestamp: 2 });
    await offline.store('bob', 'example.com', { xml: '<c/>', from: 'x@y', timestamp: 3 });
    await offline.removeUser('alice', 'example.com');
    assert.equal(await offline.count('alice', 'example.com'), 0);
    assert.equal(await offline.count('bob', 'example.com'), 1);
  });

  test('messages outlive a reopen', async () => {
    await offline.store('alice', 'example.com', { xml: '<a/>', from: 'x@y', timestamp: 1 });
    const again = await (await b.reopen()).open(OFFLINE_STORE, b.kind, 'modules.mod_offline.backend');
    assert.equal(await again.count('alice', 'example.com'), 1);
  });
});
