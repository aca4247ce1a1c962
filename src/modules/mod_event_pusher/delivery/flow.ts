// Flow control of the outbox: before its bounds refuse anything
// (outbox_max_bytes, a sender's share), the users whose events are waiting
// are slowed down at the source: their connections are not read until the
// outbox has drained. Nothing is refused while this works, and users with
// no events waiting are never slowed.
//
// outbox_high_water_bytes is a ceiling: the outbox's payload bytes (every
// handler together, counted when an event is taken, before its write
// commits) never exceed it. Slowing a sender down cannot ensure that on its
// own: what a throttled connection had already read (the rest of a socket
// read, parsed a slice at a time) is still handled, and sessions, parsers
// and commits under way hold more than a headroom could fairly bound. So
// two things work together:
// - throttling starts below the mark, at the throttle mark, halfway between
//   outbox_low_water_bytes and the ceiling (throttleMark()): there the
//   heaviest senders stop, and lighter ones follow as the outbox nears the
//   ceiling (at it, everyone with an event waiting). What is still in the
//   pipeline then usually lands in the room left below the ceiling;
// - an event that would take the outbox past the ceiling is not written
//   yet (fits() is false): it waits, in order, in memory, its sender is
//   throttled, and it is written as soon as deliveries have made room
//   (outbox.ts). Its sender's message is routed once it is written, as for
//   any event (the write is the routing barrier), so nothing is refused or
//   reordered; waiting events count in their sender's share and against
//   outbox_max_bytes, which bound them. An event waits only while events
//   of this server's handlers are in the outbox: their leaving is what
//   makes room (rows of another node or of handlers no longer configured
//   are not this server's to drain, and never hold an event for good).
// The outbox is "high" (throttling) from the throttle mark, or half of
// outbox_max_events, until it is back below outbox_low_water_bytes (and a
// quarter of outbox_max_events). While high, a user who enqueues an event
// is throttled when its share is among the heavy ones: at least the average
// share (bytes waiting / users with events waiting) scaled by how much room
// is left before the ceiling (and before outbox_max_events), so the
// heaviest senders stop first. A user is also throttled, high or not, when
// its share reaches half of outbox_max_events_per_user or
// outbox_max_bytes_per_user, so that its own share is not refused either.
//
// With outbox_high_water_bytes = outbox_max_bytes flow control is off:
// nobody is throttled, nothing waits, only the refusals remain.
//
// A throttled user is read again when the outbox is back below low water
// (and its share below a quarter of its bounds), or when none of its events
// is waiting any more. Everything is decided on enqueue and on settle, with
// counters the engine keeps anyway: O(1) a message; only the transitions
// (low water reached) walk the throttled users.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { logLimiter } from './log-limit.ts';

/** Users whose connections are not read because their events wait in the outbox. */
export const THROTTLED_USERS = 'petrel_event_pusher_throttled_users';
/** Times a user was throttled. */
export const THROTTLE_TOTAL = 'petrel_event_pusher_throttle_total';
/** Payload bytes in the outbox (what the marks are compared with). */
export const OUTBOX_BYTES = 'petrel_event_pusher_outbox_bytes';
/** Events that waited for room below the ceiling before being written. */
export const OUTBOX_WAITED_TOTAL = 'petrel_event_pusher_outbox_waited_total';

/** What the flow control knows of one sender's waiting events (the engine's Share). */
export interface FlowShare {
  readonly owner: string;
  readonly rows: number;
  readonly bytes: number;
  /** Set by the flow control while the user is throttled. */
  throttled?: boolean;
}

export interface FlowOptions {
  highBytes: number;
  lowBytes: number;
  /** outbox_max_bytes. */
  maxBytes: number;
  /** outbox_max_events: the outbox is high at half of it too, and low again below a quarter. */
  maxEvents?: number;
  /** The per-user bounds (outbox_max_events_per_user, outbox_max_bytes_per_user), when there are. */
  perUser?: { maxEvents: number; maxBytes: number };
  /** Stops or resumes reading every connection of a user (bare JID). */
  throttle(owner: string, on: boolean): void;
  logger: Logger;
  registry: Registry;
}

export interface FlowControl {
  /**
   * After an event of `size` bytes of `share` was taken; `totalBytes`/`totalRows`/`users`: the outbox's bytes
   * (with the events waiting for room, this one included, if it waits) and events, and the users with events waiting.
   */
  enqueued(share: FlowShare, size: number, totalBytes: number, totalRows: number, users: number): void;
  /** After an event of `share` (undefined: a row this server did not count) left (`gone`: it was the user's last waiting event). */
  removed(share: FlowShare | undefined, size: number, gone: boolean, totalBytes: number, totalRows: number): void;
  /**
   * Whether an event of `size` payload bytes may be written now, the outbox
   * holding `totalBytes` and `liveRows` events of this server's handlers:
   * false when it would pass the ceiling (outbox_high_water_bytes) while
   * those rows can still make room; the event then waits.
   */
  fits(size: number, totalBytes: number, liveRows: number): boolean;
  /** An event is waiting for room below the ceiling (fits() was false), for the counter. */
  waited(): void;
  /** The byte count was re-read from the store. */
  synced(totalBytes: number, totalRows: number): void;
  /** Payload bytes in the outbox, for the gauge (read at scrape time). */
  bytes(read: () => number): void;
  /** Reads everyone again and flushes the log summaries (shutdown). */
  close(): void;
}

/**
 * Where throttling starts: halfway between the low-water mark and the
 * ceiling, so that what throttled connections still bring has room below
 * the ceiling, and the hysteresis down to low water stays.
 */
export function throttleMark(highBytes: number, lowBytes: number): number {
  return lowBytes + Math.ceil((highBytes - lowBytes) / 2);
}

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function createFlowControl(o: FlowOptions): FlowControl {
  const log = o.logger;
  const throttled = new Map<string, FlowShare>();
  let high = false;
  /** Bytes of the events counted in shares (rows of an earlier run, or of another node, are in the outbox's bytes but in no share). */
  let sharedBytes = 0;
  let readBytes: () => number = () => 0;
  const userHighRows = o.perUser === undefined ? Infinity : Math.max(1, Math.floor(o.perUser.maxEvents / 2));
  const userHighBytes = o.perUser === undefined ? Infinity : Math.floor(o.perUser.maxBytes / 2);
  const userLowRows = o.perUser === undefined ? Infinity : Math.floor(o.perUser.maxEvents / 4);
  const userLowBytes = o.perUser === undefined ? Infinity : Math.floor(o.perUser.maxBytes / 4);
  const off = o.highBytes >= o.maxBytes;
  const startBytes = throttleMark(o.highBytes, o.lowBytes);
  const span = Math.max(1, o.highBytes - startBytes);
  const maxRows = o.maxEvents ?? Infinity;
  const highRows = Math.max(1, Math.floor(maxRows / 2));
  const lowRows = Math.floor(maxRows / 4);
  const rowSpan = Math.max(1, maxRows - highRows);
  const isHigh = (bytes: number, rows: number) => bytes >= startBytes || rows >= highRows;
  const isLow = (bytes: number, rows: number) => bytes < o.lowBytes && rows < lowRows;

  const gauge = getOrCreate(o.registry, THROTTLED_USERS, () => new Gauge({
    name: THROTTLED_USERS,
    help: 'Users whose connections are not read because their events wait in an outbox past its high-water mark',
    registers: [o.registry],
  }));
  const total = getOrCreate(o.registry, THROTTLE_TOTAL, () => new Counter({
    name: THROTTLE_TOTAL,
    help: 'Times a user was throttled by the event pusher (its connections not read until the outbox drains)',
    registers: [o.registry],
  }));
  getOrCreate(o.registry, OUTBOX_BYTES, () => new Gauge({
    name: OUTBOX_BYTES,
    help: 'Payload bytes in the outbox, every handler together (compared with outbox_high_water_bytes and outbox_low_water_bytes)',
    registers: [o.registry],
    collect() {
      this.set(readBytes());
    },
  }));
  const waited = getOrCreate(o.registry, OUTBOX_WAITED_TOTAL, () => new Counter({
    name: OUTBOX_WAITED_TOTAL,
    help: 'Events that waited for room below outbox_high_water_bytes before being written to the outbox',
    registers: [o.registry],
  }));
  gauge.set(0);
  total.inc(0);
  waited.inc(0);

  // One line a second for each: the first at once with its user, the rest of
  // the second counted in a summary line, so a flood of users cannot flood the log.
  const onLog = logLimiter((n, windowMs) =>
    log.info({ what: 'event_pusher_throttled', users: n, window_ms: windowMs, throttled_users: throttled.size }, 'more users are not read until the outbox drains'));
  const offLog = logLimiter((n, windowMs) =>
    log.info({ what: 'event_pusher_unthrottled', users: n, window_ms: windowMs, throttled_users: throttled.size }, 'more users are read again'));

  const start = (share: FlowShare, totalBytes: number, reason: 'high_water' | 'user_share') => {
    share.throttled = true;
    throttled.set(share.owner, share);
    gauge.set(throttled.size);
    total.inc();
    if (onLog.admit()) {
      log.info({ what: 'event_pusher_throttled', user: share.owner, reason, events: share.rows, bytes: share.bytes, outbox_bytes: totalBytes, outbox_high_water_bytes: o.highBytes },
        'the outbox is filling up: this user is not read until it drains');
    }
    o.throttle(share.owner, true);
  };

  const end = (share: FlowShare, totalBytes: number) => {
    share.throttled = false;
    throttled.delete(share.owner);
    gauge.set(throttled.size);
    if (offLog.admit()) {
      log.info({ what: 'event_pusher_unthrottled', user: share.owner, events: share.rows, bytes: share.bytes, outbox_bytes: totalBytes, outbox_low_water_bytes: o.lowBytes },
        'the outbox has drained: this user is read again');
    }
    o.throttle(share.owner, false);
  };

  const ownLow = (s: FlowShare) => s.rows < userLowRows && s.bytes < userLowBytes;

  const lowReached = (totalBytes: number) => {
    high = false;
    for (const s of [...throttled.values()]) if (ownLow(s)) end(s, totalBytes);
  };

  return {
    enqueued(share, size, totalBytes, totalRows, users) {
      if (off) return;
      sharedBytes += size;
      if (share.throttled === true) {
        // Its connections were paused, yet it sends: a session bound (or
        // resumed) since, or stanzas read before the pause. Pausing again is
        // cheap and idempotent.
        o.throttle(share.owner, true);
        return;
      }
      if (share.rows >= userHighRows || share.bytes >= userHighBytes) return start(share, totalBytes, 'user_share');
      if (!high) {
        if (!isHigh(totalBytes, totalRows)) return;
        high = true;
      }
      // Heavy: at least the average share, less so as the outbox nears its
      // ceiling (at it, or past it with the event waiting: everyone).
      const room = Math.max(0, Math.min(1, (o.highBytes - totalBytes) / span, Number.isFinite(maxRows) ? (maxRows - totalRows) / rowSpan : 1));
      if (share.bytes * users >= sharedBytes * room) start(share, totalBytes, 'high_water');
    },
    fits(size, totalBytes, liveRows) {
      return off || totalBytes + size <= o.highBytes || liveRows <= 0;
    },
    waited() {
      waited.inc();
    },
    removed(share, size, gone, totalBytes, totalRows) {
      if (off) return;
      sharedBytes -= size;
      if (high && isLow(totalBytes, totalRows)) lowReached(totalBytes);
      if (share !== undefined && share.throttled === true && (gone || (!high && ownLow(share)))) end(share, totalBytes);
    },
    synced(totalBytes, totalRows) {
      if (off) return;
      if (high && isLow(totalBytes, totalRows)) lowReached(totalBytes);
      else if (!high && isHigh(totalBytes, totalRows)) high = true;
    },
    bytes(read) {
      readBytes = read;
    },
    close() {
      for (const s of [...throttled.values()]) {
        s.throttled = false;
        o.throttle(s.owner, false);
      }
      throttled.clear();
      gauge.set(0);
      onLog.flush();
      offLog.flush();
    },
  };
}
