// PostgreSQL itself: opening the pool (errors, TLS fallback) and migrating
// from several processes at once. (What each store keeps is checked by its
// contract suite, run on both stores.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OFFLINE_STORE } from '../../../src/modules/mod_offline/store.ts';
import { ROSTER_STORE } from '../../../src/modules/mod_roster/store.ts';
import { ACCOUNTS } from '../../../src/storage/accounts.ts';
import type { StoreKind } from '../../../src/storage/types.ts';

const KINDS: StoreKind<unknown>[] = [ACCOUNTS, ROSTER_STORE, OFFLINE_STORE];
import { openStoreAccess } from '../../../src/storage/open.ts';
import { openPgPool } from '../../../src/storage/postgres.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../../e2e/postgres/db.ts';

const reachable = await pgReachable();
const skip = reachable ? false : PG_UNREACHABLE;

describe('the PostgreSQL store', { skip }, () => {
  let db: TestDatabase;

  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  test('opening the stores creates their tables, each version under its own component', async () => {
    const access = openStoreAccess({ sqliteFile: '/nonexistent/petrel.sqlite', rdbms: db.settings });
    try {
      for (const kind of KINDS) await access.open(kind, 'rdbms', 'test');
    } finally {
      await access.close();
    }
    const tables = (await db.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE tablename LIKE 'petrel_%' ORDER BY 1")).map((r) => r.tablename);
    assert.deepEqual(tables, ['petrel_offline', 'petrel_roster', 'petrel_schema_version', 'petrel_users']);
    assert.deepEqual(await db.query('SELECT component, version FROM petrel_schema_version ORDER BY component'), [
      { component: 'accounts', version: 1 },
      { component: 'mod_offline', version: 2 },
      { component: 'mod_roster', version: 1 },
    ]);
  });

  test('several processes opening the same new database at once all succeed', async () => {
    const other = await createTestDatabase();
    try {
      const all = [1, 2, 3, 4].map(() => openStoreAccess({ sqliteFile: '/nonexistent/petrel.sqlite', rdbms: other.settings }));
      await Promise.all(all.map((a) => Promise.all(KINDS.map((k) => a.open(k, 'rdbms', 'test')))));
      await Promise.all(all.map((a) => a.close()));
      assert.deepEqual(await other.query('SELECT version FROM petrel_schema_version ORDER BY version'), [{ version: 1 }, { version: 1 }, { version: 2 }]);
    } finally {
      await other.drop();
    }
  });

  test('a pool that cannot connect fails to open with the database and address named', async () => {
    const settings = { ...db.settings, call_timeout: 2000, connection: { ...db.settings.connection, port: 1 } };
    await assert.rejects(openPgPool(settings), /cannot use PostgreSQL database "petrel_test_\w+" at 127\.0\.0\.1:1 as "postgres"/);
    const access = openStoreAccess({ sqliteFile: '/nonexistent/petrel.sqlite', rdbms: settings });
    await assert.rejects(access.open(ACCOUNTS, 'rdbms', 'auth.rdbms'), /cannot use PostgreSQL database/);
    await access.close();
  });

  test('tls.required refuses a server without TLS; without it the connection falls back to plaintext', async () => {
    const ssl = (await db.query<{ ssl: string }>('SHOW ssl'))[0]!.ssl;
    if (ssl === 'on') return; // only meaningful against a server without TLS
    const tls = (required: boolean) => ({ ...db.settings, connection: { ...db.settings.connection, tls: { required, verify_mode: 'none' as const } } });
    await assert.rejects(openPgPool(tls(true)), /does not support SSL/);
    const warnings: string[] = [];
    const fallback = await openPgPool(tls(false), { onWarning: (what) => warnings.push(what) });
    await fallback.end();
    assert.deepEqual(warnings, ['rdbms_tls_unavailable']);
  });
});
