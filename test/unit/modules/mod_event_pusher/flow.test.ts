// The choices of the event pusher's flow control, with the counters the
// delivery engine gives it: who is throttled past the high-water mark, and
// when each is read again.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createFlowControl, THROTTLED_USERS, THROTTLE_TOTAL, type FlowShare } from '../../../../src/modules/mod_event_pusher/delivery/flow.ts';

type Share = { owner: string; rows: number; bytes: number; throttled?: boolean };

/** A flow control and a little outbox beside it: shares per user, total bytes. */
function setup(o: { high?: number; low?: number; max?: number; maxEvents?: number; perUser?: { maxEvents: number; maxBytes: number } } = {}) {
  const calls: Array<[string, boolean]> = [];
  const registry = new Registry();
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const flow = createFlowControl({
    highBytes: o.high ?? 1000,
    lowBytes: o.low ?? 500,
    maxBytes: o.max ?? 10_000,
    maxEvents: o.maxEvents,
    perUser: o.perUser,
    throttle: (owner, on) => calls.push([owner, on]),
    logger,
    registry,
  });
  const shares = new Map<string, Share>();
  let total = 0;
  let rows = 0;
  const add = (owner: string, bytes: number) => {
    let s = shares.get(owner);
    if (s === undefined) shares.set(owner, (s = { owner, rows: 0, bytes: 0 }));
    s.rows++;
    s.bytes += bytes;
    total += bytes;
    rows++;
    flow.enqueued(s as FlowShare, bytes, total, rows, shares.size);
  };
  const remove = (owner: string, bytes: number) => {
    const s = shares.get(owner)!;
    s.rows--;
    s.bytes -= bytes;
    total -= bytes;
    const gone = s.rows <= 0;
    if (gone) shares.delete(owner);
    rows--;
    flow.removed(s as FlowShare, bytes, gone, total, rows);
  };
  const gauge = async () => (await registry.getSingleMetric(THROTTLED_USERS)!.get()).values[0]?.value;
  const count = async () => (await registry.getSingleMetric(THROTTLE_TOTAL)!.get()).values[0]?.value;
  return { flow, calls, lines, add, remove, gauge, count, shares };
}

describe('flow control', () => {
  test('below the high-water mark nobody is throttled', () => {
    const f = setup();
    for (let i = 0; i < 9; i++) f.add('alice', 100);
    assert.deepEqual(f.calls, []);
  });

  test('past the high-water mark the heaviest sender is throttled and a light one is not', async () => {
    const f = setup();
    f.add('carol', 10);
    for (let i = 0; i < 10; i++) f.add('alice', 100);
    f.add('carol', 10);
    assert.deepEqual(f.calls, [['alice', true]]);
    assert.equal(await f.gauge(), 1);
    assert.equal(await f.count(), 1);
    const line = f.lines.find((l) => l.what === 'event_pusher_throttled');
    assert.equal(line?.user, 'alice');
    assert.equal(line?.level, 30);
  });

  test('near outbox_max_bytes a light sender with events waiting is throttled too', () => {
    const f = setup({ high: 1000, low: 500, max: 2005 });
    f.add('carol', 10);
    for (let i = 0; i < 19; i++) f.add('alice', 100);
    for (let i = 0; i < 8; i++) f.add('alice', 10);
    f.calls.length = 0;
    // The outbox is at 2000 of 2005 bytes: almost no room left, a small share is heavy enough.
    f.add('carol', 10);
    assert.deepEqual(f.calls, [['carol', true]]);
  });

  test('a throttled user is read again below the low-water mark, once', () => {
    const f = setup();
    for (let i = 0; i < 10; i++) f.add('alice', 100);
    f.add('alice', 100);
    f.calls.length = 0;
    // 1100 bytes; the low-water mark is 500: read again below it, not at it.
    for (let i = 0; i < 6; i++) f.remove('alice', 100);
    assert.deepEqual(f.calls, []);
    f.remove('alice', 100);
    assert.deepEqual(f.calls, [['alice', false]]);
    f.remove('alice', 100);
    assert.deepEqual(f.calls, [['alice', false]]);
    assert.ok(f.lines.some((l) => l.what === 'event_pusher_unthrottled' && l.user === 'alice'));
  });

  test('a throttled user whose last waiting event leaves is read again though the outbox is still high', () => {
    const f = setup({ high: 1000, low: 100 });
    for (let i = 0; i < 8; i++) f.add('bob', 100);
    f.add('alice', 900);
    assert.deepEqual(f.calls, [['alice', true]]);
    f.remove('alice', 900);
    assert.deepEqual(f.calls, [['alice', true], ['alice', false]]);
  });

  test('a user nearing its own share is throttled whatever the outbox holds, and read again below a quarter of it', () => {
    const f = setup({ perUser: { maxEvents: 8, maxBytes: 1_000_000 } });
    for (let i = 0; i < 4; i++) f.add('alice', 10);
    assert.deepEqual(f.calls, [['alice', true]]);
    f.remove('alice', 10);
    f.remove('alice', 10);
    assert.equal(f.calls.length, 1);
    f.remove('alice', 10);
    assert.deepEqual(f.calls.at(-1), ['alice', false]);
  });

  test('half of outbox_max_events makes the outbox high as its bytes do', () => {
    const f = setup({ high: 1_000_000, low: 500_000, max: 2_000_000, maxEvents: 20 });
    for (let i = 0; i < 9; i++) f.add('alice', 10);
    assert.deepEqual(f.calls, []);
    f.add('alice', 10);
    assert.deepEqual(f.calls, [['alice', true]]);
    // Read again below a quarter of the events.
    for (let i = 0; i < 5; i++) f.remove('alice', 10);
    assert.deepEqual(f.calls, [['alice', true]]);
    f.remove('alice', 10);
    assert.deepEqual(f.calls, [['alice', true], ['alice', false]]);
  });

  test('with the high-water mark at outbox_max_bytes nobody is throttled, not even past half of a share', () => {
    const f = setup({ high: 10_000, low: 500, max: 10_000, perUser: { maxEvents: 4, maxBytes: 1_000_000 } });
    for (let i = 0; i < 200; i++) f.add('alice', 100);
    assert.deepEqual(f.calls, []);
  });

  test('a throttled user that still sends is paused again (a session bound since)', () => {
    const f = setup();
    for (let i = 0; i < 10; i++) f.add('alice', 100);
    f.add('alice', 100);
    assert.deepEqual(f.calls, [['alice', true], ['alice', true]]);
  });

  test('a flood of users throttled in one second logs one line and a summary', async () => {
    const f = setup({ high: 100, low: 50, max: 1_000_000 });
    for (let u = 0; u < 50; u++) for (let i = 0; i < 3; i++) f.add(`u${u}`, 100);
    assert.ok((await f.count())! > 10);
    assert.equal(f.lines.filter((l) => l.what === 'event_pusher_throttled').length, 1);
    f.flow.close();
    const summary = f.lines.filter((l) => l.what === 'event_pusher_throttled');
    assert.equal(summary.length, 2);
    assert.ok((summary[1]!.users as number) > 0);
    assert.equal(await f.gauge(), 0);
  });
});
