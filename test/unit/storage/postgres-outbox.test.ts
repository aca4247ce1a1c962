import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { openPostgresOutbox, openPostgresOutboxAdmin, PG_OUTBOX_STEPS, type PostgresOutbox } from '../../../src/storage/outbox/postgres.ts';
import type { NewOutboxRow } from '../../../src/storage/outbox/types.ts';
import { migratePg } from '../../../src/storage/migrations.ts';
import { openPgPool } from '../../../src/storage/postgres.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../../e2e/postgres/db.ts';

const reachable = await pgReachable();
const skip = reachable ? false : PG_UNREACHABLE;

const row = (i: number, o: Partial<NewOutboxRow> = {}): NewOutboxRow => ({
  handler: 'h1',
  hostType: 'localhost',
  eventId: `msg_${i}`,
  payload: Buffer.from(`{"n":${i}}`),
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
    const rows = await db.query<{ id: string; event_id: string; claimed_by: string | null }>('SELECT id, event_id, claimed_by FROM petrel_event_outbox ORDER BY id');
    assert.deepEqual(rows.map((r) => [Number(r.id), r.event_id]), ids.map((id, i) => [id, `msg_${i}`]));
    assert.deepEqual(rows.map((r) => r.claimed_by), ids.map((_, i) => (i % 2 === 0 ? o.owner : null)));
    // Every row written by the same transaction has the same xmin.
    assert.deepEqual(await db.query('SELECT COUNT(DISTINCT xmin::text)::int AS n FROM petrel_event_outbox'), [{ n: 1 }]);
    await db.query('DELETE FROM petrel_event_outbox');
  });

  test('a claim takes due, unclaimed rows of its handler, oldest due first, with payloads intact', async () => {
    const o = await outbox();
    const body = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x5c, 0x22]);
    await Promise.all([
      o.append(row(1, { createdAt: 3000, payload: body })),
      o.append(row(2, { createdAt: 1000 })),
      o.append(row(3, { createdAt: 2000, handler: 'h2' })),
      o.append(row(4, { createdAt: 9000 })),
      o.append(row(5, { createdAt: 500, claimed: true })),
    ]);
    const got = await o.claim('h1', 5000, 10);
    assert.deepEqual(got.map((r) => r.eventId), ['msg_2', 'msg_1']);
    assert.deepEqual(Buffer.from(got[1]!.payload), body);
    assert.equal(got[1]!.hostType, 'localhost');
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
    assert.deepEqual((await o.claim('h1', 10_000, 10)).map((r) => r.eventId), ['msg_3'], 'the retry is not due yet');
    const retried = await o.claim('h1', 60_000, 10);
    assert.deepEqual(retried.map((r) => [r.eventId, r.attempts]), [['msg_2', 1]]);

    const admin = await openPostgresOutboxAdmin(db.settings);
    try {
      assert.deepEqual(await admin.counts(), new Map([['h1', { queued: 2, inFlight: 2, retrying: 0, deadLettered: 1 }]]));
      const dead = await admin.deadLetters();
      assert.deepEqual(dead, [{ eventId: 'msg_4', handler: 'h1', attempts: 8, lastError: 'refused: ECONNREFUSED', deadAt: 77_000, createdAt: 1004 }]);
      assert.deepEqual(await admin.replay({ ids: ['msg_4', 'msg_nope'] }, 90_000), ['msg_4']);
      const back = await o.claim('h1', 90_000, 10);
      assert.deepEqual(back.map((r) => [r.eventId, r.attempts, Buffer.from(r.payload).toString()]), [['msg_4', 0, '{"n":4}']]);
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
    await db.query(`INSERT INTO petrel_event_outbox (handler, host_type, event_id, payload, created_at, next_attempt_at, claimed_by)
                    VALUES ('h1', 'localhost', 'orphan', '\\x00', 1, 1, 'petrel-outbox 0000000000000000')`);
    const fresh = await outbox();
    assert.equal(fresh.releasedAtOpen, 1);
    assert.deepEqual((await fresh.claim('h1', 10_000, 10)).map((r) => r.eventId), ['orphan']);
    assert.equal(await fresh.sweep(), 0);
    await db.query('DELETE FROM petrel_event_outbox');
  });

  test('PostgreSQL probes the outbox connections of a silent server after a third of outbox_owner_timeout, so that a lost host\'s claims are swept', async (t) => {
    // A host lost whole closes no socket: PostgreSQL notices only through TCP
    // keep-alive, whose system default starts after two hours. The timer of
    // the server's side of each outbox connection shows the setting in force.
    const ss = spawnSync('ss', ['-V']);
    if (ss.error !== undefined) return t.skip('the ss tool (iproute2) is not installed');
    const o = await openPostgresOutbox(db.settings, { sweepMs: 60_000, ownerTimeoutMs: 6000 });
    open.push(o);
    await o.depth();
    const ports = (await db.query<{ client_port: number }>('SELECT client_port FROM pg_stat_activity WHERE application_name = $1', [o.owner])).map((r) => r.client_port);
    assert.ok(ports.length > 0);
    for (const port of ports) {
      // Right after an answer the timer is the retransmission one ("on") until the client's ACK.
      let out = '';
      let m: RegExpExecArray | null = null;
      for (let i = 0; i < 40 && m === null; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 50));
        out = spawnSync('ss', ['-tnoH', 'state', 'established', `( sport = :5432 and dport = :${port} )`], { encoding: 'utf8' }).stdout;
        m = /timer:\(keepalive,([\d.]+)(ms|sec|min)/.exec(out);
      }
      assert.ok(m, `no keep-alive timer on PostgreSQL's side of port ${port}: ${out}`);
      const ms = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'sec' ? 1000 : 60_000);
      assert.ok(ms <= 2000, `keep-alive probes start after ${m[1]}${m[2]}, not within 2 s`);
    }
  });

  test('close writes what is pending and releases its claims', async () => {
    const o = await openPostgresOutbox(db.settings);
    const id = await o.append(row(1, { claimed: true }));
    o.settle({ op: 'retry', id, attempts: 1, nextAt: 5, error: 'HTTP 500' });
    await o.close();
    assert.deepEqual(await db.query('SELECT event_id, attempts, claimed_by FROM petrel_event_outbox'), [{ event_id: 'msg_1', attempts: 1, claimed_by: null }]);
    await assert.rejects(o.append(row(2)), /closed/);
    await db.query('DELETE FROM petrel_event_outbox');
  });

  test('a row the database refuses fails alone, and the rows of its batch are committed', async () => {
    await db.query(`CREATE FUNCTION petrel_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.event_id = 'msg_bad' THEN RAISE EXCEPTION 'refused row'; END IF; RETURN NEW; END $$`);
    await db.query('CREATE TRIGGER refuse BEFORE INSERT ON petrel_event_outbox FOR EACH ROW EXECUTE FUNCTION petrel_test_refuse()');
    try {
      const o = await outbox();
      const res = await Promise.allSettled([1, 2, 3, 4, 5].map((i) => o.append(row(i, i === 2 ? { eventId: 'msg_bad' } : {}))));
      assert.deepEqual(res.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
      assert.deepEqual((await db.query<{ event_id: string }>('SELECT event_id FROM petrel_event_outbox ORDER BY id')).map((r) => r.event_id), ['msg_1', 'msg_3', 'msg_4', 'msg_5']);
    } finally {
      await db.query('DROP TRIGGER refuse ON petrel_event_outbox');
      await db.query('DROP FUNCTION petrel_test_refuse()');
      await db.query('DELETE FROM petrel_event_outbox');
    }
  });

  test('the HTTP-shaped tables of an earlier version are migrated with their queued and dead-lettered events', async () => {
    const old = await createTestDatabase();
    const pool = await openPgPool(old.settings, { max: 1 });
    try {
      // The tables and version as the earlier code left them.
      await migratePg(pool, 'outbox', PG_OUTBOX_STEPS.slice(0, 2));
      await pool.query(`INSERT INTO petrel_event_outbox (id, handler, host_type, webhook_id, path, headers, body, attempts, created_at, next_attempt_at, claimed_by, last_error)
                        VALUES (41, 'h1', 'localhost', 'msg_q', '/hook', '[["webhook-id", "msg_q"]]', '\\x00ff41', 3, 10, 20, NULL, 'HTTP 503')`);
      await pool.query(`INSERT INTO petrel_event_dead_letter (handler, host_type, webhook_id, path, headers, body, attempts, created_at, dead_at, last_error)
                        VALUES ('h1', 'localhost', 'msg_d', '/hook', '[]', 'dead', 8, 1, 2, 'HTTP 400')`);
      const o = await openPostgresOutbox(old.settings, { sweepMs: 60_000 });
      try {
        const [r] = await o.claim('h1', 100, 10);
        assert.deepEqual([r!.id, r!.eventId, r!.attempts, r!.createdAt], [41, 'msg_q', 3, 10]);
        const p = Buffer.from(r!.payload);
        assert.equal(p[0], 0);
        const text = p.subarray(0, p.length - 3).toString('utf8');
        assert.match(text, /^\0\/hook\0(.*)\0$/);
        assert.deepEqual(JSON.parse(text.slice(7, -1)), [['webhook-id', 'msg_q']]);
        assert.deepEqual([...p.subarray(p.length - 3)], [0, 0xff, 0x41]);
      } finally {
        await o.close();
      }
      const admin = await openPostgresOutboxAdmin(old.settings);
      try {
        assert.deepEqual((await admin.deadLetters()).map((d) => [d.eventId, d.attempts, d.lastError]), [['msg_d', 8, 'HTTP 400']]);
      } finally {
        await admin.close();
      }
    } finally {
      await pool.end();
      await old.drop();
    }
  });
});
