import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { OutboxTables } from '../../../src/storage/outbox/sqlite-tables.ts';
import type { NewOutboxRow } from '../../../src/storage/outbox/types.ts';
import { openSqliteOutbox } from '../../../src/storage/outbox/sqlite.ts';
import { GroupCommit } from '../../../src/storage/outbox/group-commit.ts';

const dir = mkdtempSync(join(tmpdir(), 'petrel-outbox-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function row(i: number, over: Partial<NewOutboxRow> = {}): NewOutboxRow {
  return {
    handler: 'h', hostType: 'localhost', eventId: `msg_${i}`, payload: Buffer.from(`body ${i}`), createdAt: 1000 + i, claimed: false, ...over,
  };
}

test('appends made in one tick are committed together and resolve with their ids', async () => {
  const file = join(dir, 'a.sqlite');
  const store = await openSqliteOutbox(file);
  const ids = await Promise.all([store.append(row(1)), store.append(row(2)), store.append(row(3))]);
  assert.deepEqual(ids, [1, 2, 3]);
  assert.deepEqual([...(await store.depth())], [['h', 3]]);
  await store.close();
  const t = new OutboxTables(new DatabaseSync(file));
  assert.equal(t.counts().get('h')!.queued, 3);
  t.db.close();
});

test('a claim returns due unclaimed rows once, oldest due first, with their bytes intact', async () => {
  const file = join(dir, 'b.sqlite');
  const store = await openSqliteOutbox(file);
  await Promise.all([store.append(row(1)), store.append(row(2)), store.append(row(3, { handler: 'other' }))]);
  const first = await store.claim('h', 5000, 10);
  assert.deepEqual(first.map((r) => r.eventId), ['msg_1', 'msg_2']);
  assert.equal(Buffer.from(first[0]!.payload).toString(), 'body 1');
  assert.deepEqual([first[0]!.hostType, first[0]!.createdAt, first[0]!.attempts], ['localhost', 1001, 0]);
  assert.deepEqual(await store.claim('h', 5000, 10), []);
  store.settle({ op: 'retry', id: first[0]!.id, attempts: 1, nextAt: 6000, error: 'HTTP 500' });
  store.settle({ op: 'delivered', id: first[1]!.id });
  assert.deepEqual(await store.claim('h', 5999, 10), []);
  const again = await store.claim('h', 6000, 10);
  assert.deepEqual(again.map((r) => [r.eventId, r.attempts]), [['msg_1', 1]]);
  await store.close();
});

test('claims left by a stopped server are released when the outbox is opened again', async () => {
  const file = join(dir, 'c.sqlite');
  let store = await openSqliteOutbox(file);
  await store.append(row(1, { claimed: true }));
  await store.close();
  store = await openSqliteOutbox(file);
  assert.equal((await store.claim('h', 5000, 10)).length, 1);
  await store.close();
});

test('dead letters are listed, replayed with their attempts reset, and purged', async () => {
  const file = join(dir, 'd.sqlite');
  const store = await openSqliteOutbox(file);
  const [a, b] = await Promise.all([store.append(row(1, { claimed: true })), store.append(row(2, { claimed: true }))]);
  store.settle({ op: 'dead', id: a!, attempts: 3, error: 'HTTP 500', at: 9000 });
  store.settle({ op: 'dead', id: b!, attempts: 1, error: 'HTTP 404', at: 9001 });
  assert.deepEqual([...(await store.depth())], []);
  await store.close();

  const t = new OutboxTables(new DatabaseSync(file));
  assert.deepEqual(t.deadLetters().map((d) => [d.eventId, d.attempts, d.lastError]), [['msg_1', 3, 'HTTP 500'], ['msg_2', 1, 'HTTP 404']]);
  assert.deepEqual(t.counts().get('h'), { queued: 0, inFlight: 0, retrying: 0, deadLettered: 2 });
  assert.deepEqual(t.replay({ ids: ['msg_1'] }, 10_000), ['msg_1']);
  assert.deepEqual(t.counts().get('h'), { queued: 1, inFlight: 0, retrying: 0, deadLettered: 1 });
  const back = t.claim('h', 10_000, 10);
  assert.deepEqual(back.map((r) => [r.eventId, r.attempts, Buffer.from(r.payload).toString()]), [['msg_1', 0, 'body 1']]);
  assert.deepEqual(t.purge({ all: true }), ['msg_2']);
  assert.deepEqual(t.deadLetters(), []);
  t.db.close();
});

test('an outbox of the HTTP-shaped tables is migrated with its queued and dead-lettered events, ids and attempts kept', async () => {
  const file = join(dir, 'legacy.sqlite');
  const db = new DatabaseSync(file);
  // The tables as servers created them before payloads were opaque (and before versions were kept).
  db.exec(`
    CREATE TABLE event_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, handler TEXT NOT NULL, host_type TEXT NOT NULL, webhook_id TEXT NOT NULL,
      path TEXT NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
      next_attempt_at INTEGER NOT NULL, claimed INTEGER NOT NULL DEFAULT 0, last_error TEXT);
    CREATE INDEX event_outbox_due ON event_outbox (handler, claimed, next_attempt_at);
    CREATE TABLE event_dead_letter (id INTEGER PRIMARY KEY AUTOINCREMENT, handler TEXT NOT NULL, host_type TEXT NOT NULL, webhook_id TEXT NOT NULL,
      path TEXT NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL, attempts INTEGER NOT NULL, created_at INTEGER NOT NULL, dead_at INTEGER NOT NULL, last_error TEXT NOT NULL);
  `);
  const ins = db.prepare('INSERT INTO event_outbox (id, handler, host_type, webhook_id, path, headers, body, attempts, created_at, next_attempt_at, claimed, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
  ins.run(7, 'h', 'localhost', 'msg_q', '/n', '[["webhook-id","msg_q"]]', Buffer.from([0, 0xff, 0x41]), 2, 100, 200, 1, 'HTTP 500');
  db.prepare('INSERT INTO event_dead_letter (handler, host_type, webhook_id, path, headers, body, attempts, created_at, dead_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    .run('h', 'localhost', 'msg_d', '/n', '[]', Buffer.from('dead body'), 8, 50, 60, 'refused: x');
  db.close();

  const store = await openSqliteOutbox(file);
  assert.equal(store.releasedAtOpen, 1);
  const [r] = await store.claim('h', 10_000, 10);
  assert.deepEqual([r!.id, r!.eventId, r!.attempts, r!.createdAt], [7, 'msg_q', 2, 100]);
  // The HTTP backend reads this layout (test/unit/modules/mod_event_pusher/hot-path.test.ts).
  assert.deepEqual(Buffer.from(r!.payload), Buffer.concat([Buffer.from('\0/n\0[["webhook-id","msg_q"]]\0'), Buffer.from([0, 0xff, 0x41])]));
  // A new row takes an id after the migrated ones.
  assert.ok((await store.append(row(1))) > 7);
  await store.close();
  const t = new OutboxTables(new DatabaseSync(file));
  assert.deepEqual(t.deadLetters().map((d) => [d.eventId, d.attempts, d.lastError, d.deadAt]), [['msg_d', 8, 'refused: x', 60]]);
  assert.deepEqual(t.replay({ all: true }, 1), ['msg_d']);
  assert.equal(Buffer.from(t.claim('h', 1, 10).find((x) => x.eventId === 'msg_d')!.payload).toString('latin1'), '\0/n\0[]\0dead body');
  t.db.close();
});

test('a row the database refuses fails alone: the rows batched with it are committed, and settle ops are kept until written', async () => {
  const file = join(dir, 'refuse.sqlite');
  const db = new DatabaseSync(file);
  new OutboxTables(db);
  // A database that refuses one row (a constraint, a full disk for that page...).
  db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON event_outbox WHEN NEW.event_id = 'msg_bad' BEGIN SELECT RAISE(ABORT, 'refused row'); END`);
  db.close();
  const warnings: string[] = [];
  const store = await openSqliteOutbox(file, { retryMs: 20, onWarning: (what) => warnings.push(what) });
  const results = await Promise.allSettled([1, 2, 3, 4, 5, 6, 7].map((i) => store.append(row(i, i === 5 ? { eventId: 'msg_bad' } : {}))));
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
  assert.match(String((results[4] as PromiseRejectedResult).reason), /refused row/);
  assert.ok(warnings.includes('event_pusher_outbox_write_failed'));
  assert.deepEqual([...(await store.depth())], [['h', 6]]);
  await store.close();
});

test('the group commit keeps settle ops whose write failed and writes them later, and splits failing batches down to the bad row', async () => {
  let failNext = 0;
  const writes: Array<{ rows: number[]; ops: string[] }> = [];
  const written: string[] = [];
  let nextId = 1;
  const q = new GroupCommit<number, string>(
    async (rows, ops) => {
      writes.push({ rows: [...rows], ops: [...ops] });
      if (failNext > 0) {
        failNext--;
        throw new Error('store down');
      }
      if (rows.includes(13)) throw new Error('bad row');
      written.push(...ops);
      return rows.map(() => nextId++);
    },
    () => 10,
    { retryMs: 10, settleDelayMs: 1, maxRows: 8, maxBytes: 1000 },
  );
  q.settle('op1');
  failNext = 1;
  await assert.rejects(q.settled(), /store down/);
  // Kept: written on the next try, after retryMs.
  await new Promise((r) => setTimeout(r, 30));
  await q.settled();
  assert.deepEqual(written, ['op1']);
  const rows = [10, 11, 12, 13, 14, 15, 16, 17];
  const res = await Promise.allSettled(rows.map((r) => q.append(r)));
  assert.deepEqual(res.map((r) => r.status), rows.map((r) => (r === 13 ? 'rejected' : 'fulfilled')));
  // Halves, then quarters, down to the bad row alone.
  assert.ok(writes.some((w) => w.rows.length === 1 && w.rows[0] === 13));
  assert.ok(writes.length - 2 <= 2 * Math.log2(rows.length) + 1, `${writes.length} writes`);
  q.close();
});

test('draining at close, a bad row batched with settle ops does not cost the ops: they are written on their own', async () => {
  const written: string[] = [];
  let nextId = 1;
  const q = new GroupCommit<number, string>(
    async (rows, ops) => {
      if (rows.includes(13)) throw new Error('bad row');
      written.push(...ops);
      return rows.map(() => nextId++);
    },
    () => 10,
    { retryMs: 60_000, settleDelayMs: 60_000, maxRows: 8, maxBytes: 1000 },
  );
  q.settle('dead-7');
  const bad = q.append(13);
  const good = q.append(14);
  await q.drain();
  await assert.rejects(bad, /bad row/);
  assert.equal(typeof (await good), 'number');
  assert.deepEqual(written, ['dead-7']);
  q.close();
});

test('the group commit bounds a batch by payload bytes as well as rows', async () => {
  const batches: number[][] = [];
  const q = new GroupCommit<number, never>(async (rows) => {
    batches.push([...rows]);
    return rows.map((_, i) => i);
  }, (n) => n, { maxRows: 100, maxBytes: 1000 });
  await Promise.all([400, 400, 400, 2000, 10].map((n) => q.append(n)));
  assert.deepEqual(batches, [[400, 400], [400], [2000], [10]]);
  q.close();
});

test('a batch holds at most outbox_batch_max_rows_per_user rows of one sender: the rows of others behind a flood go in the next batch, each sender keeping its order', async () => {
  const batches: string[][] = [];
  let release: () => void = () => {};
  let first = true;
  const q = new GroupCommit<string, never>(
    async (rows) => {
      batches.push([...rows]);
      // The first write is slow, so that the flood and the others queue behind it.
      if (first) {
        first = false;
        await new Promise<void>((r) => (release = r));
      }
      return rows.map((_, i) => i);
    },
    () => 1,
    { maxRows: 100, maxBytes: 1_000_000, maxInFlight: 1, maxRowsPerOwner: 3, ownerOf: (r) => (r.startsWith('-') ? undefined : r.split(':')[0]) },
  );
  const all: Array<Promise<number>> = [q.append('a:0')];
  await new Promise((r) => setImmediate(r));
  for (let i = 1; i <= 7; i++) all.push(q.append(`a:${i}`));
  all.push(q.append('b:0'), q.append('-x'), q.append('c:0'), q.append('b:1'));
  release();
  await Promise.all(all);
  assert.deepEqual(batches, [['a:0'], ['a:1', 'a:2', 'a:3', 'b:0', '-x', 'c:0', 'b:1'], ['a:4', 'a:5', 'a:6'], ['a:7']]);
  q.close();
});

test('without owners, or under the per-sender share, a batch is the queue in order', async () => {
  const batches: string[][] = [];
  const q = new GroupCommit<string, never>(async (rows) => {
    batches.push([...rows]);
    return rows.map((_, i) => i);
  }, () => 1, { maxRows: 4, maxRowsPerOwner: 2, ownerOf: (r) => r.split(':')[0] });
  await Promise.all(['a:0', 'b:0', 'a:1', 'b:1', 'c:0'].map((r) => q.append(r)));
  assert.deepEqual(batches, [['a:0', 'b:0', 'a:1', 'b:1'], ['c:0']]);
  q.close();
});
