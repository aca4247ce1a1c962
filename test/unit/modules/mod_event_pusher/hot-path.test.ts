import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { HttpOutcome, HttpPool } from '../../../../src/outgoing/types.ts';
import type { NewOutboxRow, OutboxRow, OutboxStore, SettleOp } from '../../../../src/storage/outbox.ts';
import { packBatch, packOp, unpackBatch } from '../../../../src/storage/outbox-packed.ts';
import { deliveryMetrics } from '../../../../src/modules/mod_event_pusher/http/metrics.ts';
import { createOutboxEngine } from '../../../../src/modules/mod_event_pusher/http/outbox-deliverer.ts';
import { RecentQuantiles } from '../../../../src/modules/mod_event_pusher/http/recent-quantiles.ts';
import { webhookId } from '../../../../src/modules/mod_event_pusher/http/webhook-id.ts';

test('the webhook-id of an event is the one earlier versions derived for it', () => {
  // First 16 bytes of SHA-256("alice@localhost/phone\nbob@localhost\nm1\n0\nin"), base64url.
  assert.equal(webhookId('alice@localhost/phone', 'bob@localhost', 'm1', 0, 'in'), 'msg_luvzQkRshbgnoyMvZ85BdA');
  assert.notEqual(webhookId('alice@localhost/phone', 'bob@localhost', 'm1', 0, 'out'), 'msg_luvzQkRshbgnoyMvZ85BdA');
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

test('a packed batch carries rows, bodies and settle ops across unchanged', () => {
  const rows: NewOutboxRow[] = [
    { handler: 'h', hostType: 'localhost', webhookId: 'msg_1', path: '/n', headers: [['a', 'b']], body: Buffer.from('héllo'), createdAt: 5, claimed: true },
    { handler: 'h', hostType: 'x', webhookId: 'msg_2', path: '/m', headers: [], headersJson: '[["c","d"]]', body: new Uint8Array(0), createdAt: 6, claimed: false },
  ];
  const ops: Array<number | string> = [];
  const settle: SettleOp[] = [
    { op: 'delivered', id: 3 },
    { op: 'retry', id: 4, attempts: 2, nextAt: 99, error: 'HTTP 500' },
    { op: 'release', id: 5 },
    { op: 'dead', id: 6, attempts: 3, at: 100, error: 'timeout: x' },
  ];
  for (const o of settle) packOp(ops, o);
  const packed = structuredClone(packBatch(rows, ops));
  const back = unpackBatch(packed);
  assert.deepEqual(back.ops, settle);
  assert.equal(back.rows.length, 2);
  assert.equal(back.rows[0]!.headersJson, '[["a","b"]]');
  assert.equal(Buffer.from(back.rows[0]!.body).toString(), 'héllo');
  assert.equal(back.rows[1]!.headersJson, '[["c","d"]]');
  assert.equal(back.rows[1]!.body.byteLength, 0);
  assert.deepEqual(back.rows.map((r) => [r.webhookId, r.hostType, r.path, r.createdAt, r.claimed]), [['msg_1', 'localhost', '/n', 5, true], ['msg_2', 'x', '/m', 6, false]]);
});

/** An outbox in memory that counts its claims. */
function memoryStore() {
  const rows = new Map<number, OutboxRow & { claimed: boolean }>();
  let next = 1;
  const s = {
    claims: 0,
    rows,
    async append(r: NewOutboxRow) {
      const id = next++;
      rows.set(id, { id, handler: r.handler, hostType: r.hostType, webhookId: r.webhookId, path: r.path, headers: r.headers, body: r.body, attempts: 0, createdAt: r.createdAt, claimed: r.claimed });
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
  const pool: HttpPool = {
    tag: 'p', baseUrl: 'http://x', workers: 1, url: (p) => 'http://x' + p,
    post: (_path, _h, body) => new Promise<HttpOutcome>((resolve) => {
      sent.push(Buffer.from(body as Uint8Array).toString());
      answer = () => resolve({ kind: 'ok', status: 204, headers: {}, body: '', timeMs: 1 });
    }),
    close: async () => {},
  };
  const engine = createOutboxEngine({
    store, logger: pino({ level: 'silent' }), metrics: deliveryMetrics(new Registry()), maxEvents: 100,
    onAttempt() {}, onDropped() {}, pollMs: 60_000, pageSize: 1,
  });
  const d = engine.deliverer({ index: 0, key: 'k', url: 'http://x/n', pool, retry: { max_attempts: 3, initial_delay: 10, max_delay: 10, max_age: 60_000 } });
  await engine.start();
  const req = (b: string) => ({ handler: 0, hostType: 'localhost', path: '/n', headers: [['webhook-id', b]] as Array<[string, string]>, body: b, webhookId: b });
  await d.enqueue(req('first'));
  await d.enqueue(req('second'));
  assert.deepEqual(sent, ['first']);
  assert.equal([...store.rows.values()].find((r) => r.webhookId === 'second')!.claimed, false);
  const claimsBefore = store.claims;
  answer!();
  const t0 = Date.now();
  while (sent.length < 2 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(sent, ['first', 'second']);
  assert.equal(store.claims, claimsBefore + 1);
  answer!();
  await engine.close(1000);
});
