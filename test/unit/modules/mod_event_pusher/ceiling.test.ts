// The outbox's ceiling (outbox_high_water_bytes) with a real SQLite outbox
// and a web service that answers only when told to: the outbox's bytes never
// pass it, the events that do not fit wait and are written, in order, as
// deliveries make room, their sender is throttled, and nothing is refused.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { openSqliteOutbox } from '../../../../src/storage/outbox/sqlite.ts';
import { createDeliveryEngine } from '../../../../src/modules/mod_event_pusher/delivery/outbox.ts';
import { deliveryMetrics } from '../../../../src/modules/mod_event_pusher/delivery/metrics.ts';
import { createFlowControl } from '../../../../src/modules/mod_event_pusher/delivery/flow.ts';
import type { DeliveryItem, EngineHandler, SendResult } from '../../../../src/modules/mod_event_pusher/delivery/types.ts';

const dir = mkdtempSync(join(tmpdir(), 'petrel-ceiling-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const HIGH = 1000;
const LOW = 500;
const SIZE = 100;

describe('the outbox ceiling', () => {
  test('the outbox never holds more than outbox_high_water_bytes; what does not fit waits, is written in order, and nothing is refused', async () => {
    const logger = pino({ level: 'silent' });
    const registry = new Registry();
    const throttles: Array<[string, boolean]> = [];
    const flow = createFlowControl({
      highBytes: HIGH, lowBytes: LOW, maxBytes: 100_000, maxEvents: 1_000_000, perUser: { maxEvents: 1000, maxBytes: 100_000 },
      throttle: (owner, on) => throttles.push([owner, on]), logger, registry,
    });
    let readBytes: () => number = () => 0;
    const bytes = flow.bytes.bind(flow);
    flow.bytes = (read) => {
      readBytes = read;
      bytes(read);
    };
    let maxSeen = 0;
    const look = () => (maxSeen = Math.max(maxSeen, readBytes()));

    // Deliveries wait until released; the order they arrive in is kept.
    const held: Array<() => void> = [];
    const arrived: string[] = [];
    const dropped: string[] = [];
    const engine = createDeliveryEngine({
      open: () => openSqliteOutbox(join(dir, 'outbox.db')), senderThread: 'main', logger, metrics: deliveryMetrics(registry),
      maxEvents: 1_000_000, maxBytes: 100_000, perUser: { maxEvents: 1000, maxBytes: 100_000 }, flow, pollMs: 50,
    });
    const h: EngineHandler = { backend: 'test', index: 0, key: 'test/0', lane: 'l', concurrency: 2, retry: { max_attempts: 5, initial_delay: 10, max_delay: 10, max_age: 60_000 }, logFields: {} };
    const q = engine.handler(h, { attempted() {}, dropped: (_h, id, reason) => void dropped.push(`${id} ${reason}`) });
    engine.sender('test', {
      local: () => ({
        deliver: (_i: number, item: DeliveryItem) => {
          look();
          return new Promise<SendResult>((resolve) => held.push(() => {
            arrived.push(item.eventId);
            resolve({ kind: 'delivered', status: '204', timeMs: 1 });
          }));
        },
        close: async () => {},
      }),
    });
    await engine.start();
    try {
      const n = 30;
      const committed: string[] = [];
      const writes: Array<Promise<void>> = [];
      for (let i = 0; i < n; i++) {
        const id = `e${i}`;
        const r = q.enqueue('localhost', id, new Uint8Array(SIZE), 'alice@localhost');
        assert.notEqual(typeof r, 'string', `${id} is taken`);
        writes.push((r as Promise<void>).then(() => void committed.push(id)));
        look();
      }
      assert.equal(readBytes(), HIGH, 'the outbox is filled up to its ceiling, not past it');
      assert.deepEqual(throttles[0], ['alice@localhost', true], 'the sender is throttled');
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(committed, Array.from({ length: HIGH / SIZE }, (_, i) => `e${i}`), 'what fits is committed, the rest waits');

      // The web service answers, one delivery at a time: each makes room for one waiting event.
      while (arrived.length < n) {
        const next = held.shift();
        if (next === undefined) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        next();
        await new Promise((r) => setImmediate(r));
        look();
      }
      await Promise.all(writes);
      assert.ok(maxSeen <= HIGH, `the outbox held at most ${maxSeen} bytes`);
      assert.deepEqual(committed, Array.from({ length: n }, (_, i) => `e${i}`), 'written in the order they came');
      assert.deepEqual(arrived, committed, 'delivered in that order');
      assert.deepEqual(dropped, [], 'nothing refused');
      assert.deepEqual(throttles.at(-1), ['alice@localhost', false], 'the sender is read again');
    } finally {
      await engine.close(1000);
    }
  });

  test('events still waiting at shutdown are written, not lost', async () => {
    const logger = pino({ level: 'silent' });
    const registry = new Registry();
    const flow = createFlowControl({
      highBytes: HIGH, lowBytes: LOW, maxBytes: 100_000, perUser: { maxEvents: 1000, maxBytes: 100_000 }, throttle() {}, logger, registry,
    });
    const file = join(dir, 'shutdown.db');
    const engine = createDeliveryEngine({
      open: () => openSqliteOutbox(file), senderThread: 'main', logger, metrics: deliveryMetrics(registry),
      maxEvents: 1_000_000, maxBytes: 100_000, perUser: { maxEvents: 1000, maxBytes: 100_000 }, flow, pollMs: 50,
    });
    const h: EngineHandler = { backend: 'test', index: 0, key: 'test/0', lane: 'l', concurrency: 1, retry: { max_attempts: 5, initial_delay: 10, max_delay: 10, max_age: 60_000 }, logFields: {} };
    const q = engine.handler(h, { attempted() {}, dropped() {} });
    // A web service that never answers.
    engine.sender('test', { local: () => ({ deliver: () => new Promise<SendResult>(() => {}), close: async () => {} }) });
    await engine.start();
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < 15; i++) writes.push(q.enqueue('localhost', `e${i}`, new Uint8Array(SIZE), 'alice@localhost') as Promise<void>);
    await engine.close(100);
    await Promise.all(writes);
    const store = await openSqliteOutbox(file);
    try {
      const depth = await store.depth();
      assert.equal(depth.get('test/0'), 15);
    } finally {
      await store.close();
    }
  });
});
