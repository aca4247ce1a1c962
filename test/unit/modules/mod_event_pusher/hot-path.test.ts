import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { NewOutboxRow, OutboxRow, OutboxStore, SettleOp } from '../../../../src/storage/outbox/types.ts';
import { packBatch, unpackBatch } from '../../../../src/storage/outbox/packed.ts';
import { deliveryMetrics } from '../../../../src/modules/mod_event_pusher/delivery/metrics.ts';
import { createDeliveryEngine, MAX_PAGE } from '../../../../src/modules/mod_event_pusher/delivery/outbox.ts';
import { MAX_CLAIM } from '../../../../src/modules/mod_event_pusher/delivery/engine.ts';
import type { SendResult } from '../../../../src/modules/mod_event_pusher/delivery/types.ts';
import { encodePayload, encodePrefix, payloadDecoder } from '../../../../src/modules/mod_event_pusher/http/payload.ts';
import { RecentQuantiles } from '../../../../src/modules/mod_event_pusher/http/recent-quantiles.ts';
import { newWebhookId } from '../../../../src/modules/mod_event_pusher/http/webhook-id.ts';

test('every webhook-id the server allocates is new, in the msg_ and 22 base64url characters form', () => {
  const ids = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const id = newWebhookId();
    assert.match(id, /^msg_[A-Za-z0-9_-]{22}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 10_000);
});

test('recent quantiles are exact below the sample size and forget what is older than the window', () => {
  let now = 1_000_000;
  const registry = new Registry();
  const q = new RecentQuantiles({
    name: 'x_recent', help: 'h', labelName: 'host_type', quantiles: [0.5, 0.99], maxAgeSeconds: 60, ageBuckets: 6, registers: [registry], now: () => now,
  });
  const c = q.labels('localhost');
  for (let v = 1; v <= 100; v++) c.observe(v);
  let got = q.get();
  assert.equal(got.type, 'summary');
  assert.deepEqual(got.values.map((v) => [v.metricName ?? 'q' + v.labels.quantile, v.value]), [['q0.5', 50], ['q0.99', 99], ['x_recent_sum', 5050], ['x_recent_count', 100]]);
  now += 71_000;
  c.observe(7);
  got = q.get();
  assert.deepEqual(got.values.slice(0, 2).map((v) => v.value), [7, 7]);
  // Sum and count stay cumulative, as prom-client's summary keeps them.
  assert.equal(got.values[3]!.value, 101);
});

test('recent quantiles stay close to the true ones when far more values than samples are seen', () => {
  const q = new RecentQuantiles({ name: 'y_recent', help: 'h', labelName: 'host_type', quantiles: [0.5, 0.9], maxAgeSeconds: 60, ageBuckets: 6 });
  const c = q.labels('h');
  for (let i = 0; i < 100_000; i++) c.observe(i % 1000);
  const [p50, p90] = q.get().values.slice(0, 2).map((v) => v.value);
  assert.ok(Math.abs(p50! - 500) < 60, `p50 ${p50}`);
  assert.ok(Math.abs(p90! - 900) < 40, `p90 ${p90}`);
});

test('a packed batch carries rows, payloads and settle ops across unchanged', () => {
  const rows: NewOutboxRow[] = [
    { handler: 'h', hostType: 'localhost', eventId: 'msg_1', payload: Buffer.from('héllo'), createdAt: 5, claimed: true },
    { handler: 'h', hostType: 'x', eventId: 'msg_2', payload: new Uint8Array(0), createdAt: 6, claimed: false },
  ];
  const settle: SettleOp[] = [
    { op: 'delivered', id: 3 },
    { op: 'retry', id: 4, attempts: 2, nextAt: 99, error: 'HTTP 500' },
    { op: 'release', id: 5 },
    { op: 'dead', id: 6, attempts: 3, at: 100, error: 'timeout: x' },
  ];
  const packed = structuredClone(packBatch(rows, settle));
  const back = unpackBatch(packed);
  assert.deepEqual(back.ops, settle);
  assert.equal(back.rows.length, 2);
  assert.equal(Buffer.from(back.rows[0]!.payload).toString(), 'héllo');
  assert.equal(back.rows[1]!.payload.byteLength, 0);
  assert.deepEqual(back.rows.map((r) => [r.eventId, r.hostType, r.handler, r.createdAt, r.claimed]), [['msg_1', 'localhost', 'h', 5, true], ['msg_2', 'x', 'h', 6, false]]);
});

test('an HTTP payload keeps path, headers and body, and the migrated layout of older rows reads the same', () => {
  const decode = payloadDecoder();
  const prefix = encodePrefix('/n', [['content-type', 'application/json'], ['x-é', 'v']], true);
  for (const body of ['{"a":"é"}', Buffer.from([0, 1, 0xff])]) {
    const d = decode(encodePayload(prefix, body));
    assert.equal(d.path, '/n');
    assert.deepEqual(d.headers, [['content-type', 'application/json'], ['x-é', 'v']]);
    assert.equal(d.addEventId, true);
    assert.deepEqual(Buffer.from(d.body), Buffer.from(body as string));
  }
  const own = decode(encodePayload(encodePrefix('', [['webhook-id', 'mine']], false), ''));
  assert.deepEqual([own.path, own.headers, own.addEventId, own.body.byteLength], ['', [['webhook-id', 'mine']], false, 0]);
  const legacy = Buffer.concat([Buffer.from('\0/old\0[["webhook-id","msg_1"]]\0'), Buffer.from([0, 0xfe])]);
  const l = decode(legacy);
  assert.deepEqual([l.path, l.headers, l.addEventId, [...l.body]], ['/old', [['webhook-id', 'msg_1']], false, [0, 0xfe]]);
});

/** An outbox in memory that counts its claims. */
function memoryStore() {
  const rows = new Map<number, OutboxRow & { claimed: boolean }>();
  let next = 1;
  const s = {
    claims: 0,
    /** The largest limit a claim asked for. */
    maxLimit: 0,
    rows,
    async append(r: NewOutboxRow) {
      const id = next++;
      rows.set(id, { id, handler: r.handler, hostType: r.hostType, eventId: r.eventId, payload: r.payload, attempts: 0, createdAt: r.createdAt, claimed: r.claimed });
      return id;
    },
    settle(op: SettleOp) {
      const r = rows.get(op.id);
      if (r === undefined) return;
      if (op.op === 'delivered' || op.op === 'dead') rows.delete(op.id);
      else r.claimed = false;
    },
    async claim(handler: string, _now: number, limit: number) {
      s.claims++;
      s.maxLimit = Math.max(s.maxLimit, limit);
      const out: OutboxRow[] = [];
      for (const r of rows.values()) {
        if (out.length >= limit) break;
        if (r.handler === handler && !r.claimed) {
          r.claimed = true;
          out.push(r);
        }
      }
      return out;
    },
    async depth() {
      const m = new Map<string, number>();
      for (const r of rows.values()) m.set(r.handler, (m.get(r.handler) ?? 0) + 1);
      return m;
    },
    async close() {},
  };
  return s satisfies OutboxStore;
}

test('an event written unclaimed, because its handler was full, is sent as soon as there is room, not at the next poll', async () => {
  const store = memoryStore();
  const sent: string[] = [];
  let answer: (() => void) | null = null;
  const engine = createDeliveryEngine({
    open: async () => store, senderThread: 'main', logger: pino({ level: 'silent' }), metrics: deliveryMetrics(new Registry()), maxEvents: 100,
    pollMs: 60_000, pageSize: 1,
  });
  const d = engine.handler(
    { backend: 'test', index: 0, key: 'k', lane: 'p', concurrency: 1, retry: { max_attempts: 3, initial_delay: 10, max_delay: 10, max_age: 60_000 }, logFields: {} },
    { attempted() {}, dropped() {} },
  );
  engine.sender('test', {
    local: () => ({
      deliver: (_h, item) => new Promise<SendResult>((resolve) => {
        sent.push(Buffer.from(item.payload).toString());
        answer = () => resolve({ kind: 'delivered', status: '204', timeMs: 1 });
      }),
      close: async () => {},
    }),
  });
  await engine.start();
  const req = (b: string) => [ 'localhost', b, Buffer.from(b)] as const;
  await d.enqueue(...req('first'));
  await d.enqueue(...req('second'));
  assert.deepEqual(sent, ['first']);
  assert.equal([...store.rows.values()].find((r) => r.eventId === 'second')!.claimed, false);
  const claimsBefore = store.claims;
  answer!();
  const t0 = Date.now();
  while (sent.length < 2 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(sent, ['first', 'second']);
  assert.equal(store.claims, claimsBefore + 1);
  answer!();
  await engine.close(1000);
});

test('a backlog is claimed a step at a time: one claim reads at most MAX_CLAIM rows, though the page holds more', async () => {
  const store = memoryStore();
  const backlog = MAX_CLAIM * 2 + 200;
  for (let i = 0; i < backlog; i++) await store.append({ handler: 'k', hostType: 'localhost', eventId: 'e' + i, payload: Buffer.from('x'), createdAt: 1, claimed: false });
  const engine = createDeliveryEngine({
    open: async () => store, senderThread: 'main', logger: pino({ level: 'silent' }), metrics: deliveryMetrics(new Registry()), maxEvents: 100_000, pollMs: 60_000,
  });
  engine.handler(
    { backend: 'test', index: 0, key: 'k', lane: 'p', concurrency: 1, retry: { max_attempts: 3, initial_delay: 10, max_delay: 10, max_age: 60_000 }, logFields: {} },
    { attempted() {}, dropped() {} },
  );
  // Nothing is ever answered: what is claimed stays in the page.
  engine.sender('test', { local: () => ({ deliver: () => new Promise<SendResult>(() => {}), close: async () => {} }) });
  await engine.start();
  await new Promise((r) => setTimeout(r, 50));
  const claimed = [...store.rows.values()].filter((r) => r.claimed).length;
  assert.ok(MAX_CLAIM < MAX_PAGE);
  assert.equal(store.maxLimit, MAX_CLAIM);
  assert.equal(claimed, MAX_CLAIM);
  await engine.close(10);
});
