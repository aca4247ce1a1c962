import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import pino from 'pino';
import { applyReports, metricCounter, reportSchedule } from '../../../../src/modules/mod_event_pusher/delivery/thread.ts';
import { DELIVERY_ATTEMPTS, DELIVERY_RESPONSES, batchedInc, deliveryMetrics } from '../../../../src/modules/mod_event_pusher/delivery/metrics.ts';
import type { EngineReporter } from '../../../../src/modules/mod_event_pusher/delivery/engine.ts';

async function values(reg: Registry, name: string): Promise<Array<{ labels: Record<string, unknown>; value: number }>> {
  const m = await reg.getSingleMetric(name)!.get();
  return m.values.map((v) => ({ labels: { ...v.labels }, value: v.value })).sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)));
}

test("the sender thread's metric calls, counted per label set, add up to the same counters on the server's thread", async () => {
  const reg = new Registry();
  const rep: EngineReporter = {
    metrics: deliveryMetrics(reg),
    attempted() {},
    removed() {},
    senderReport() {},
    log: pino({ level: 'silent' }),
  };
  const c = metricCounter();
  for (let i = 0; i < 300; i++) c.add(0, 'localhost', '0', '');
  for (let i = 0; i < 290; i++) c.add(1, 'localhost', '0', '204');
  for (let i = 0; i < 10; i++) c.add(1, 'localhost', '0', '503');
  for (let i = 0; i < 5; i++) c.add(0, 'other.example', '1', '');
  const out: Array<string | number> = [];
  c.drainInto(out);
  assert.equal(out.length, 4 * 6, 'one record per label set');
  applyReports(structuredClone(out), rep);
  // The counters take the increments when the report's work is over, as a scrape would find them.
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(await values(reg, DELIVERY_ATTEMPTS), [
    { labels: { host_type: 'localhost', handler: '0' }, value: 300 },
    { labels: { host_type: 'other.example', handler: '1' }, value: 5 },
  ]);
  assert.deepEqual(await values(reg, DELIVERY_RESPONSES), [
    { labels: { host_type: 'localhost', handler: '0', status: '204' }, value: 290 },
    { labels: { host_type: 'localhost', handler: '0', status: '503' }, value: 10 },
  ]);
  // Drained: nothing is sent twice.
  const again: Array<string | number> = [];
  c.drainInto(again);
  assert.deepEqual(again, []);
});

test('increments made together reach the counter once the work that made them is over', async () => {
  const seen: number[] = [];
  const inc = batchedInc({ inc: (n = 1) => void seen.push(n) });
  inc.inc();
  inc.inc();
  inc.inc(3);
  assert.deepEqual(seen, []);
  await Promise.resolve();
  assert.deepEqual(seen, [5]);
  inc.inc();
  await Promise.resolve();
  assert.deepEqual(seen, [5, 1]);
});

describe('reportSchedule', () => {
  test('reports wait for the delay and go together; a full batch goes at the next turn', async () => {
    let flushed = 0;
    const s = reportSchedule(() => {
      flushed++;
      s.cancel();
    }, 30, 100);
    s.request(1);
    s.request(2);
    await new Promise((r) => setImmediate(r));
    assert.equal(flushed, 0, 'a few reports wait');
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(flushed, 1, 'and then go in one flush');
    s.request(1);
    s.request(100);
    await new Promise((r) => setImmediate(r));
    assert.equal(flushed, 2, 'a full batch does not wait for the delay');
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(flushed, 2, 'the timer of the first report was cancelled');
  });
});
