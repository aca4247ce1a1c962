// The choices of the event pusher's flow control, with the counters the
// delivery engine gives it: who is throttled from the throttle mark (halfway
// between the low-water mark and the ceiling, outbox_high_water_bytes), when
// each is read again, and which events wait for room below the ceiling.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createFlowControl, throttleMark, THROTTLED_USERS, THROTTLE_TOTAL, type FlowShare } from '../../../../src/modules/mod_event_pusher/delivery/flow.ts';

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
  test('the throttle mark is halfway between the low-water mark and the ceiling', () => {
    assert.equal(throttleMark(1000, 500), 750);
    assert.equal(throttleMark(1000, 0), 500);
    assert.equal(throttleMark(1001, 1000), 1001);
  });

  test('below the throttle mark nobody is throttled', () => {
    const f = setup();
    for (let i = 0; i < 7; i++) f.add('alice', 100);
    assert.deepEqual(f.calls, []);
  });

  test('past the throttle mark the heaviest sender is throttled and a light one is not', async () => {
    const f = setup();
    f.add('carol', 10);
    for (let i = 0; i < 8; i++) f.add('alice', 100);
    f.add('carol', 10);
    assert.deepEqual(f.calls, [['alice', true]]);
    assert.equal(await f.gauge(), 1);
    assert.equal(await f.count(), 1);
    const line = f.lines.find((l) => l.what === 'event_pusher_throttled');
    assert.equal(line?.user, 'alice');
    assert.equal(line?.level, 30);
  });

  test('at the ceiling a light sender with events waiting is throttled too', () => {
    const f = setup();
    f.add('carol', 10);
    for (let i = 0; i < 9; i++) f.add('alice', 100);
    for (let i = 0; i < 8; i++) f.add('alice', 10);
    f.calls.length = 0;
    // The outbox is at its ceiling, 1000 bytes: no room left, a small share is heavy enough.
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
    for (let i = 0; i < 5; i++) f.add('bob', 100);
    f.add('alice', 300);
    assert.deepEqual(f.calls, [['alice', true]]);
    f.remove('alice', 300);
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
    for (let i = 0; i < 8; i++) f.add('alice', 100);
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

  test('an event fits below the ceiling, up to it; past it, it waits while events of this server can make room', () => {
    const f = setup();
    assert.equal(f.flow.fits(100, 900, 5), true, 'up to the ceiling');
    assert.equal(f.flow.fits(101, 900, 5), false, 'one byte past it');
    assert.equal(f.flow.fits(101, 900, 0), true, 'nothing of this server in the outbox would make room');
    assert.equal(f.flow.fits(5000, 0, 0), true, 'a first event larger than the ceiling');
  });

  test('with flow control off (the mark at outbox_max_bytes) nothing waits', () => {
    const f = setup({ high: 10_000, low: 500, max: 10_000 });
    assert.equal(f.flow.fits(1000, 9500, 5), true);
  });

  test('a sender whose event waits past the ceiling is throttled, however light its share', () => {
    const f = setup();
    f.add('carol', 10);
    for (let i = 0; i < 7; i++) f.add('alice', 100);
    f.calls.length = 0;
    // The outbox holds 710 bytes, below the throttle mark; dave's event of 300 does not fit:
    // it waits, and the outbox with it counts 1010.
    const dave: Share = { owner: 'dave', rows: 1, bytes: 300 };
    assert.equal(f.flow.fits(300, 710, 8), false);
    f.flow.enqueued(dave as FlowShare, 300, 1010, 9, 3);
    assert.deepEqual(f.calls, [['dave', true]]);
  });
});
