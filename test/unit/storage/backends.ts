// Runs one contract suite over each store: the embedded SQLite file and
// PostgreSQL. The PostgreSQL half is skipped, with the reason shown in the
// report, when no server answers on this machine.
import { after, afterEach, before, beforeEach, describe } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStoreAccess, type OpenStoreAccess } from '../../../src/storage/open.ts';
import type { StoreBackend } from '../../../src/storage/types.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../../e2e/postgres/db.ts';

const reachable = await pgReachable();

export interface Backend {
  readonly kind: StoreBackend;
  /** Access over empty stores, fresh for each test. */
  access: OpenStoreAccess;
  /** Closes `access` and opens another over the same data (what a restart does). */
  reopen(): Promise<OpenStoreAccess>;
  /** SQL straight on the database, to check what is stored. */
  query(sql: string): Promise<Array<Record<string, unknown>>>;
}

/** `suite` once per store, in a describe named after it. */
export function onEachBackend(name: string, suite: (b: Backend) => void): void {
  describe(`${name} (internal: SQLite)`, () => {
    let dir = '';
    const open = () => openStoreAccess({ sqliteFile: join(dir, 'data', 'petrel.sqlite') });
    const b: Backend = {
      kind: 'internal',
      access: undefined as unknown as OpenStoreAccess,
      async reopen() {
        await b.access.close();
        b.access = open();
        return b.access;
      },
      async query(sql) {
        return b.access.sqlite().prepare(sql).all() as Array<Record<string, unknown>>;
      },
    };
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'petrel-store-'));
      b.access = open();
    });
    afterEach(async () => {
      await b.access.close();
      rmSync(dir, { recursive: true, force: true });
    });
    suite(b);
  });

  describe(`${name} (rdbms: PostgreSQL)`, { skip: reachable ? false : PG_UNREACHABLE }, () => {
    let db: TestDatabase;
    // No embedded file: a store that asked for one by mistake would fail here.
    const open = () => openStoreAccess({ sqliteFile: '/nonexistent/petrel.sqlite', rdbms: db.settings });
    const b: Backend = {
      kind: 'rdbms',
      access: undefined as unknown as OpenStoreAccess,
      async reopen() {
        await b.access.close();
        b.access = open();
        return b.access;
      },
      query: (sql) => db.query(sql),
    };
    before(async () => {
      db = await createTestDatabase();
    });
    after(async () => {
      await db?.drop();
    });
    beforeEach(async () => {
      await db.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
      b.access = open();
    });
    afterEach(async () => {
      await b.access.close();
    });
    suite(b);
  });
}
