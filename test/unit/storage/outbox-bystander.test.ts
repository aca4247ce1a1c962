// One user's huge events cannot cost other users' events, on both stores.
// A claim is bounded by payload bytes, so a page of huge rows is taken a few
// at a time and never holds up the rows behind it. And rows batched with a
// huge one are not refused because the store was held up:
// while another connection keeps the outbox locked past the store's wait (the
// statement timeout of PostgreSQL, the busy timeout of SQLite), a batch of
// one user's huge event and other users' small ones fails, is split, and its
// rows fail alone; those are tried again once the store answers, instead of
// being refused, so every one of them is committed. Real stores.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { openPostgresOutbox } from '../../../src/storage/outbox/postgres.ts';
import { openSqliteOutbox } from '../../../src/storage/outbox/sqlite.ts';
import type { NewOutboxRow, OutboxStore } from '../../../src/storage/outbox/types.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../../e2e/postgres/db.ts';

const reachable = await pgReachable();

const row = (i: number, payload: Uint8Array): NewOutboxRow => ({ handler: 'h', hostType: 'localhost', eventId: `e${i}`, payload, createdAt: 1000 + i, claimed: false });

/** Appends one huge row and `n` small ones in one tick; the outcome of each small one. */
async function appendMixed(store: OutboxStore, n: number): Promise<{ small: Array<number | Error>; huge: number | Error }> {
  const huge = store.append(row(0, Buffer.alloc(2 * 1024 * 1024, 0x68))).catch((e: Error) => e);
  const small = [];
  for (let i = 1; i <= n; i++) small.push(store.append(row(i, Buffer.from(`small ${i}`))).catch((e: Error) => e));
  return { small: await Promise.all(small), huge: await huge };
}

/** Ten rows of 1 MiB then ten small ones: claims bounded to 2.5 MiB take three huge rows at most each, and reach the small ones. */
async function claimsByBytes(store: OutboxStore): Promise<void> {
  const ids: number[] = [];
  for (let i = 0; i < 10; i++) ids.push(await store.append(row(i, Buffer.alloc(1024 * 1024, 0x68))));
  for (let i = 10; i < 20; i++) ids.push(await store.append(row(i, Buffer.from(`small ${i}`))));
  const sizes: number[][] = [];
  for (;;) {
    const got = await store.claim('h', 1_000_000, 500, 2.5 * 1024 * 1024);
    if (got.length === 0) break;
    sizes.push(got.map((r) => r.payload.byteLength));
  }
  for (const page of sizes) {
    // Rows are taken while the bytes before them are under the bound: at most one row past it.
    assert.ok(page.slice(0, -1).reduce((a, b) => a + b, 0) < 2.5 * 1024 * 1024, `a claim of ${page.join(' + ')} bytes`);
  }
  assert.deepEqual(sizes.slice(0, 3).map((p) => p.length), [3, 3, 3]);
  assert.equal(sizes.flat().length, 20);
}

describe('the PostgreSQL outbox with huge events', { skip: reachable ? false : PG_UNREACHABLE }, () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  test('a claim takes no more payload bytes than its bound, so huge rows come a few at a time and the small ones after them are reached', async () => {
    const store = await openPostgresOutbox(db.settings, { sweepMs: 60_000 });
    try {
      await claimsByBytes(store);
    } finally {
      await store.close();
      await db.query('DELETE FROM petrel_event_outbox');
    }
  });

  test('held up past its statement timeout, it commits every row batched with a huge one once it answers again, none refused', async () => {
    const settings = { ...db.settings, connection: { ...db.settings.connection, query_timeout: 200 } };
    const store = await openPostgresOutbox(settings, { sweepMs: 60_000, retryMs: 1000 });
    const locker = new pg.Client({ host: settings.connection.host, port: settings.connection.port, user: settings.connection.username, password: settings.connection.password, database: settings.connection.database });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE petrel_event_outbox IN ACCESS EXCLUSIVE MODE');
      const outcome = appendMixed(store, 20);
      // Long enough for the batch to fail, be split, and its rows to fail alone many times over.
      await new Promise((r) => setTimeout(r, 2500));
      await locker.query('COMMIT');
      const { small, huge } = await outcome;
      assert.deepEqual(small.filter((r) => r instanceof Error).map(String), []);
      assert.equal(typeof huge, 'number', String(huge));
      assert.equal((await db.query<{ n: string }>('SELECT COUNT(*) AS n FROM petrel_event_outbox'))[0]!.n, '21');
    } finally {
      await locker.end().catch(() => {});
      await store.close();
    }
  });
});

describe('the SQLite outbox with huge events', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-bystander-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a claim takes no more payload bytes than its bound, so huge rows come a few at a time and the small ones after them are reached', async () => {
    const store = await openSqliteOutbox(join(dir, 'claims.sqlite'));
    try {
      await claimsByBytes(store);
    } finally {
      await store.close();
    }
  });

  test('held up by another connection, it commits every row batched with a huge one once the lock is gone, none refused', async () => {
    const file = join(dir, 'outbox.sqlite');
    const store = await openSqliteOutbox(file, { retryMs: 1000 });
    const locker = new DatabaseSync(file);
    try {
      locker.exec('BEGIN IMMEDIATE');
      const outcome = appendMixed(store, 20);
      await new Promise((r) => setTimeout(r, 2000));
      locker.exec('COMMIT');
      const { small, huge } = await outcome;
      assert.deepEqual(small.filter((r) => r instanceof Error).map(String), []);
      assert.equal(typeof huge, 'number', String(huge));
      assert.equal((locker.prepare('SELECT COUNT(*) AS n FROM event_outbox').get() as { n: number }).n, 21);
    } finally {
      locker.close();
      await store.close();
    }
  });
});
