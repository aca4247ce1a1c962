import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { OutboxTables, type NewOutboxRow } from '../../../src/storage/outbox.ts';
import { openSqliteOutbox } from '../../../src/storage/outbox-sqlite.ts';

const dir = mkdtempSync(join(tmpdir(), 'petrel-outbox-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function row(i: number, over: Partial<NewOutboxRow> = {}): NewOutboxRow {
  return {
    handler: 'h', hostType: 'localhost', webhookId: `msg_${i}`, path: '/n', headers: [['webhook-id', `msg_${i}`]],
    body: Buffer.from(`body ${i}`), createdAt: 1000 + i, claimed: false, ...over,
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
  assert.deepEqual(first.map((r) => r.webhookId), ['msg_1', 'msg_2']);
  assert.equal(Buffer.from(first[0]!.body).toString(), 'body 1');
  assert.deepEqual(first[0]!.headers, [['webhook-id', 'msg_1']]);
  assert.deepEqual(await store.claim('h', 5000, 10), []);
  store.settle({ op: 'retry', id: first[0]!.id, attempts: 1, nextAt: 6000, error: 'HTTP 500' });
  store.settle({ op: 'delivered', id: first[1]!.id });
  assert.deepEqual(await store.claim('h', 5999, 10), []);
  const again = await store.claim('h', 6000, 10);
  assert.deepEqual(again.map((r) => [r.webhookId, r.attempts]), [['msg_1', 1]]);
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
  assert.deepEqual(t.deadLetters().map((d) => [d.webhookId, d.attempts, d.lastError]), [['msg_1', 3, 'HTTP 500'], ['msg_2', 1, 'HTTP 404']]);
  assert.deepEqual(t.counts().get('h'), { queued: 0, inFlight: 0, retrying: 0, deadLettered: 2 });
  assert.deepEqual(t.replay({ ids: ['msg_1'] }, 10_000), ['msg_1']);
  assert.deepEqual(t.counts().get('h'), { queued: 1, inFlight: 0, retrying: 0, deadLettered: 1 });
  const back = t.claim('h', 10_000, 10);
  assert.deepEqual(back.map((r) => [r.webhookId, r.attempts, Buffer.from(r.body).toString()]), [['msg_1', 0, 'body 1']]);
  assert.deepEqual(t.purge({ all: true }), ['msg_2']);
  assert.deepEqual(t.deadLetters(), []);
  t.db.close();
});
