import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openPostgresOutbox, openPostgresOutboxAdmin, type PostgresOutbox } from '../../../src/storage/outbox-postgres.ts';
import type { NewOutboxRow } from '../../../src/storage/outbox.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../../e2e/postgres/db.ts';

const reachable = await pgReachable();
const skip = reachable ? false : PG_UNREACHABLE;

const row = (i: number, o: Partial<NewOutboxRow> = {}): NewOutboxRow => ({
  handler: 'h1',
  hostType: 'localhost',
  webhookId: `msg_${i}`,
  path: '/hook',
  headers: [['content-type', 'application/json'], ['webhook-id', `msg_${i}`]],
  body: Buffer.from(`{"n":${i}}`),
  createdAt: 1000 + i,
  claimed: false,
  ...o,
});

describe('the PostgreSQL outbox', { skip }, () => {
  let db: TestDatabase;
  const open: PostgresOutbox[] = [];
  const outbox = async () => {
    const o = await openPostgresOutbox(db.settings, { sweepMs: 60_000 });
    open.push(o);
    return o;
  };

  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    for (const o of open) await o.close().catch(() => {});
    await db?.drop();
  });

  test('appends of one tick are one INSERT in one transaction, and resolve with their ids in order once committed', async () => {
    const o = await outbox();
    const n = 300;
    const ids = await Promise.all(Array.from({ length: n }, (_, i) => o.append(row(i, { claimed: i % 2 === 0 }))));
    assert.equal(new Set(ids).size, n);
    for (let i = 1; i < n; i++) assert.ok(ids[i]! > ids[i - 1]!, 'ids grow in append order');
    const rows = await db.query<{ id: string; webhook_id: string; claimed_by: string | null }>('SELECT id, webhook_id, claimed_by FROM petrel_event_outbox ORDER BY id');
    assert.deepEqual(rows.map((r) => [Number(r.id), r.webhook_id]), ids.map((id, i) => [id, `msg_${i}`]));
    assert.deepEqual(rows.map((r) => r.claimed_by), ids.map((_, i) => (i % 2 === 0 ? o.owner : null)));
    // Every row written by the same transaction has the same xmin.
    assert.deepEqual(await db.query('SELECT COUNT(DISTINCT xmin::text)::int AS n FROM petrel_event_outbox'), [{ n: 1 }]);
    await db.query('DELETE FROM petrel_event_outbox');
  });

  test('a claim takes due, unclaimed rows of its handler, oldest due first, with bodies and headers intact', async () => {
    const o = await outbox();
    const body = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x5c, 0x22]);
    await Promise.all([
      o.append(row(1, { createdAt: 3000, body })),
      o.append(row(2, { createdAt: 1000 })),
      o.append(row(3, { createdAt: 2000, handler: 'h2' })),
      o.append(row(4, { createdAt: 9000 })),
      o.append(row(5, { createdAt: 500, claimed: true })),
    ]);
    const got = await o.claim('h1', 5000, 10);
    assert.deepEqual(got.map((r) => r.webhookId), ['msg_2', 'msg_1']);
    assert.deepEqual(Buffer.from(got[1]!.body), body);
    assert.deepEqual(got[1]!.headers, [['content-type', 'application/json'], ['webhook-id', 'msg_1']]);
    assert.equal(got[1]!.attempts, 0);
    assert.equal(got[1]!.createdAt, 3000);
    assert.deepEqual(await o.claim('h1', 5000, 10), [], 'claimed rows are not claimed again');
    assert.deepEqual(await o.depth(), new Map([['h1', 4], ['h2', 1]]));
    await db.query('DELETE FROM petrel_event_outbox');
  });

  test('two outboxes claiming at once never take the same row', async () => {
    const a = await outbox();
    const b = await outbox();
    await Promise.all(Array.from({ length: 200 }, (_, i) => a.append(row(i))));
    const claims = await Promise.all([a, b, a, b, a, b].map((o) => o.claim('h1', 10_000, 40)));
    const ids = claims.flat().map((r) => r.id);
    assert.equal(ids.length, 200);
    assert.equal(new Set(ids).size, 200);
    await db.query('DELETE FROM petrel_event_outbox');
  });

  test('settle ops deliver, reschedule, release and dead-letter, and the admin sees and changes the result', async () => {
    const o = await outbox();
    const ids = await Promise.all([1, 2, 3, 4].map((i) => o.append(row(i, { claimed: true }))));
    o.settle({ op: 'delivered', id: ids[0]! });
    o.settle({ op: 'retry', id: ids[1]!, attempts: 1, nextAt: 50_000, error: 'HTTP 503' });
    o.settle({ op: 'release', id: ids[2]! });
    o.settle({ op: 'dead', id: ids[3]!, attempts: 8, error: 'refused: ECONNREFUSED', at: 77_000 });
    assert.deepEqual((await o.claim('h1', 10_000, 10)).map((r) => r.webhookId), ['msg_3'], 'the retry is not due yet');
    const retried = await o.claim('h1', 60_000, 10);
    assert.deepEqual(retried.map((r) => [r.webhookId, r.attempts]), [['msg_2', 1]]);

    const admin = await openPostgresOutboxAdmin(db.settings);
    try {
      assert.deepEqual(await admin.counts(), new Map([['h1', { queued: 2, inFlight: 2, retrying: 0, deadLettered: 1 }]]));
      const dead = await admin.deadLetters();
      assert.deepEqual(dead, [{ webhookId: 'msg_4', handler: 'h1', attempts: 8, lastError: 'refused: ECONNREFUSED', deadAt: 77_000, createdAt: 1004 }]);
      assert.deepEqual(await admin.replay({ ids: ['msg_4', 'msg_nope'] }, 90_000), ['msg_4']);
      const back = await o.claim('h1', 90_000, 10);
      assert.deepEqual(back.map((r) => [r.webhookId, r.attempts, Buffer.from(r.body).toString()]), [['msg_4', 0, '{"n":4}']]);
      o.settle({ op: 'dead', id: back[0]!.id, attempts: 1, error: 'HTTP 400', at: 91_000 });
      await o.depth();
      assert.deepEqual(await admin.purge({ all: true }), ['msg_4']);
      assert.deepEqual(await admin.deadLetters(), []);
    } finally {
      await admin.close();
    }
    await db.query('DELETE FROM petrel_event_outbox');
  });

  test('claims of an owner that is gone go back to the queue when an outbox opens; a live owner keeps its own', async () => {
    const live = await outbox();
    await live.append(row(1, { claimed: true }));
    await db.query(`INSERT INTO petrel_event_outbox (handler, host_type, webhook_id, path, headers, body, created_at, next_attempt_at, claimed_by)
                    VALUES ('h1', 'localhost', 'orphan', '/hook', '[]', '\\x00', 1, 1, 'petrel-outbox 0000000000000000')`);
    const fresh = await outbox();
    assert.equal(fresh.releasedAtOpen, 1);
    assert.deepEqual((await fresh.claim('h1', 10_000, 10)).map((r) => r.webhookId), ['orphan']);
    assert.equal(await fresh.sweep(), 0);
    await db.query('DELETE FROM petrel_event_outbox');
  });

  test('close writes what is pending and releases its claims', async () => {
    const o = await openPostgresOutbox(db.settings);
    const id = await o.append(row(1, { claimed: true }));
    o.settle({ op: 'retry', id, attempts: 1, nextAt: 5, error: 'HTTP 500' });
    await o.close();
    assert.deepEqual(await db.query('SELECT webhook_id, attempts, claimed_by FROM petrel_event_outbox'), [{ webhook_id: 'msg_1', attempts: 1, claimed_by: null }]);
    await assert.rejects(o.append(row(2)), /closed/);
    await db.query('DELETE FROM petrel_event_outbox');
  });
});
