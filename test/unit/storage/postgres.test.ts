import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openPostgresStorage, type PostgresStorage } from '../../../src/storage/postgres.ts';
import type { RosterItem, StoredCredentials } from '../../../src/storage/types.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../../e2e/postgres/db.ts';

const reachable = await pgReachable();
const skip = reachable ? false : PG_UNREACHABLE;

const CREDS: StoredCredentials = {
  sha256: { salt: 'c2FsdA==', iterations: 4096, storedKey: 'c3RvcmVk', serverKey: 'c2VydmVy' },
};

const item = (jid: string, over: Partial<RosterItem> = {}): RosterItem => ({
  jid, name: null, subscription: 'none', ask: null, pendingIn: false, groups: [], ...over,
});

describe('the PostgreSQL store', { skip }, () => {
  let db: TestDatabase;
  let s: PostgresStorage;

  before(async () => {
    db = await createTestDatabase();
    s = await openPostgresStorage(db.settings);
  });
  after(async () => {
    await s?.close();
    await db?.drop();
  });

  test('opening creates the tables and records the schema version', async () => {
    const tables = (await db.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE tablename LIKE 'petrel_%' ORDER BY 1")).map((r) => r.tablename);
    assert.deepEqual(tables, ['petrel_offline', 'petrel_roster', 'petrel_schema_version', 'petrel_users']);
    assert.deepEqual(await db.query('SELECT component, version FROM petrel_schema_version'), [{ component: 'store', version: 1 }]);
  });

  test('several stores opening the same new database at once all succeed', async () => {
    const other = await createTestDatabase();
    try {
      const stores = await Promise.all([1, 2, 3, 4].map(() => openPostgresStorage(other.settings)));
      await Promise.all(stores.map((x) => x.close()));
      assert.deepEqual(await other.query('SELECT version FROM petrel_schema_version'), [{ version: 1 }]);
    } finally {
      await other.drop();
    }
  });

  test('a user is created once, found, counted and its credentials read back', async () => {
    assert.equal(await s.users.createUser('alice', 'localhost', CREDS), true);
    assert.equal(await s.users.createUser('alice', 'localhost', { plain: 'other' }), false);
    assert.equal(await s.users.userExists('alice', 'localhost'), true);
    assert.equal(await s.users.userExists('alice', 'example.com'), false);
    assert.deepEqual(await s.users.getCredentials('alice', 'localhost'), CREDS);
    assert.equal(await s.users.getCredentials('nobody', 'localhost'), null);
    assert.equal(await s.users.countUsers('localhost'), 1);
  });

  test('roster items are stored, replaced, listed in contact order and removed', async () => {
    await s.roster.setItem('bob', 'localhost', item('zed@localhost'));
    await s.roster.setItem('bob', 'localhost', item('amy@localhost', { name: 'Amy', subscription: 'to', ask: 'subscribe', groups: ['Friends', 'Work, "quoted"'] }));
    await s.roster.setItem('bob', 'localhost', item('zed@localhost', { subscription: 'both', pendingIn: true }));
    const roster = await s.roster.getRoster('bob', 'localhost');
    assert.deepEqual(roster.map((r) => r.jid), ['amy@localhost', 'zed@localhost']);
    assert.deepEqual(roster[0], item('amy@localhost', { name: 'Amy', subscription: 'to', ask: 'subscribe', groups: ['Friends', 'Work, "quoted"'] }));
    assert.deepEqual(await s.roster.getItem('bob', 'localhost', 'zed@localhost'), item('zed@localhost', { subscription: 'both', pendingIn: true }));
    await s.roster.removeItem('bob', 'localhost', 'zed@localhost');
    assert.equal(await s.roster.getItem('bob', 'localhost', 'zed@localhost'), null);
  });

  test('offline messages come back oldest first, once', async () => {
    for (let i = 0; i < 5; i++) await s.offline.store('carol', 'localhost', { xml: `<message id="${i}"/>`, from: 'bob@localhost/r', timestamp: 1000 + i });
    assert.equal(await s.offline.count('carol', 'localhost'), 5);
    const [a, b] = await Promise.all([s.offline.popAll('carol', 'localhost'), s.offline.popAll('carol', 'localhost')]);
    const got = [...a, ...b];
    assert.deepEqual(got.map((m) => m.xml), [0, 1, 2, 3, 4].map((i) => `<message id="${i}"/>`));
    assert.deepEqual(got[0], { xml: '<message id="0"/>', from: 'bob@localhost/r', timestamp: 1000 });
    assert.equal(await s.offline.count('carol', 'localhost'), 0);
  });

  test('removing a user removes its roster and offline messages, and only its own', async () => {
    await s.users.createUser('dave', 'localhost', CREDS);
    await s.roster.setItem('dave', 'localhost', item('alice@localhost'));
    await s.offline.store('dave', 'localhost', { xml: '<message/>', from: 'alice@localhost', timestamp: 1 });
    await s.roster.setItem('alice', 'localhost', item('dave@localhost'));
    assert.equal(await s.users.removeUser('dave', 'localhost'), true);
    assert.equal(await s.users.removeUser('dave', 'localhost'), false);
    assert.deepEqual(await s.roster.getRoster('dave', 'localhost'), []);
    assert.equal(await s.offline.count('dave', 'localhost'), 0);
    assert.equal((await s.roster.getRoster('alice', 'localhost')).length, 1);
  });

  test('a store that cannot connect fails to open with the database and address named', async () => {
    const settings = { ...db.settings, call_timeout: 2000, connection: { ...db.settings.connection, port: 1 } };
    await assert.rejects(openPostgresStorage(settings), /cannot use PostgreSQL database "petrel_test_\w+" at 127\.0\.0\.1:1 as "postgres"/);
  });

  test('tls.required refuses a server without TLS; without it the connection falls back to plaintext', async () => {
    const ssl = (await db.query<{ ssl: string }>('SHOW ssl'))[0]!.ssl;
    if (ssl === 'on') return; // only meaningful against a server without TLS
    const tls = (required: boolean) => ({ ...db.settings, connection: { ...db.settings.connection, tls: { required, verify_mode: 'none' as const } } });
    await assert.rejects(openPostgresStorage(tls(true)), /does not support SSL/);
    const warnings: string[] = [];
    const fallback = await openPostgresStorage(tls(false), { onWarning: (what) => warnings.push(what) });
    await fallback.close();
    assert.deepEqual(warnings, ['rdbms_tls_unavailable']);
  });
});
