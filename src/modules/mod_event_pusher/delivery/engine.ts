// The sending half of at-least-once delivery, for every backend: claims rows
// of the outbox, hands them to the backend's sender, and settles them
// (delivered, retried with backoff, dead-lettered, released). It runs on the
// server's thread or in the sender thread (mod_event_pusher's sender_thread;
// thread.ts); what it reports (metrics, attempts, logs) goes through an
// EngineReporter, which in the sender thread forwards it to the server's.
//
// Memory stays bounded whatever the backlog: each handler keeps at most
// `page` claimed rows in memory (being sent or waiting for a free slot), and
// at most `pageBytes` of their payloads (a claim takes no more than the room
// left, one row at least), so a page of huge events neither fills memory nor
// makes one claim too long to finish. A
// failed attempt goes back to the table with its next time, and is claimed
// again, a page at a time, when it is due; so is whatever a restart or
// `petrel deliveries dead-letter replay` left there. A new event is claimed
// as it is written when its handler has room, so that the usual path costs
// no read: it is sent as soon as its batch is committed. One written
// unclaimed (its handler had no room, or another thread wrote it) makes the
// handler claim again as soon as it has room, so it does not wait for the
// poll, which is only a safety net (and what picks up replays).
//
// Concurrency is per lane: the handlers of one backend sharing a lane (HTTP:
// a pool) share its slots, taken in turn. Retries can overtake newer events,
// so one handler's deliveries may arrive out of order.
import { DEFAULT_BATCH_MAX_BYTES, type NewOutboxRow, type OutboxRow, type OutboxStore } from '../../../storage/outbox/types.ts';
import { handlerLabel, type DeliveryMetrics } from './metrics.ts';
import { backoffMs } from './retry.ts';
import type { AttemptReport, BackendSender, DeliveryItem, EngineHandler, SenderReport, SendResult } from './types.ts';

/**
 * Most rows of one handler held in memory at once: being sent, waiting for
 * a free connection, or being written claimed. Under a load that the sender
 * keeps up with, every new event is taken as it is written (admit), and
 * none is read back from the table; a smaller page sends the overflow
 * through the table (written unclaimed, then claimed), which costs the
 * writer thread a read and an update per row.
 */
export const MAX_PAGE = 2000;
/**
 * Most rows one claim reads from the outbox. A claim is one transaction on
 * the thread that also commits the server's writes, so a backlog (after a
 * restart, or when a webhook is back) is read in steps of this many, and a
 * write waits behind one step at most.
 */
export const MAX_CLAIM = 500;
/** How often the outbox is read for due rows (retries, replays, a backlog). */
export const DEFAULT_POLL_MS = 1000;

/** The logging calls the engine makes (pino's, or their forwarding from another thread). */
export interface SenderLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface EngineReporter {
  metrics: Pick<DeliveryMetrics, 'attempt' | 'retry' | 'deadLettered' | 'response'>;
  /** `gi`: the handler's position in the order of add(). */
  attempted(gi: number, item: DeliveryItem, result: SendResult, report: AttemptReport): void;
  /** Row `id` of handler `gi`, of `bytes` payload bytes, left the outbox (delivered or dead-lettered). */
  removed(gi: number, id: number, bytes: number): void;
  /** What a backend's sender reported about itself (see SenderReport). */
  senderReport(backend: string, r: SenderReport): void;
  log: SenderLog;
}

export interface SendLoopOptions {
  store: Pick<OutboxStore, 'settle' | 'claim'>;
  reporter: EngineReporter;
  pageSize?: number;
  /** Payload bytes of one handler's claimed rows held in memory at most (outbox_batch_max_bytes). */
  pageBytes?: number;
  pollMs?: number;
  now?: () => number;
}

export interface SendLoop {
  add(h: EngineHandler, sender: BackendSender): void;
  /** A new event of `key`, of `bytes` payload bytes, is about to be written: whether it is claimed as it is (the handler has room). */
  admit(key: string, bytes: number): boolean;
  /** The event is committed as `id`; `hot` as admit answered. */
  written(key: string, row: NewOutboxRow, id: number, hot: boolean): void;
  /** The event, of `bytes` payload bytes, could not be written. */
  writeFailed(key: string, hot: boolean, bytes: number): void;
  /** Rows of `key` were written unclaimed elsewhere: claim them when there is room. */
  nudge(key: string): void;
  /** Claims due rows now, then every pollMs. */
  start(): void;
  /** Stops sending; waits up to `graceMs` for deliveries in flight. Claims are left to the store's close. */
  close(graceMs: number): Promise<void>;
}

interface Lane {
  limit: number;
  inFlight: number;
  handlers: HState[];
  next: number;
}

interface HState {
  gi: number;
  h: EngineHandler;
  /** Its `handler` metric label. */
  label: string;
  sender: BackendSender;
  lane: Lane;
  ready: DeliveryItem[];
  /**
   * Rows claimed by this engine: ready, in flight, or being written claimed.
   * A claim under way does not count: new events are taken hot meanwhile,
   * and what the claim brings beyond the page is released.
   */
  active: number;
  /** Payload bytes of the rows counted in `active`. */
  bytes: number;
  disabled: boolean;
  /** The last claim filled its page: more rows may be due. */
  more: boolean;
  claiming: boolean;
  /** A wake-up came while a claim was under way: claim again, for rows due by then. */
  reclaim: number | null;
  wakeAt: number;
  wakeTimer: NodeJS.Timeout | null;
}

function itemOf(handler: number, r: OutboxRow): DeliveryItem {
  return { id: r.id, handler, hostType: r.hostType, eventId: r.eventId, payload: r.payload, attempts: r.attempts, createdAt: r.createdAt };
}

/**
 * Waits for a sender to become idle, at most `graceMs`: `arm` receives the
 * function to call once its last request has finished.
 */
export function idleOrTimeout(graceMs: number, arm: (idle: () => void) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, graceMs);
    timer.unref();
    arm(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export function createSendLoop(o: SendLoopOptions): SendLoop {
  const store = o.store;
  const rep = o.reporter;
  const log = rep.log;
  const metrics = rep.metrics;
  const now = o.now ?? Date.now;
  const page = Math.min(MAX_PAGE, Math.max(1, o.pageSize ?? MAX_PAGE));
  const pageBytes = Math.max(1, o.pageBytes ?? DEFAULT_BATCH_MAX_BYTES);
  const pollMs = o.pollMs ?? DEFAULT_POLL_MS;
  const lanes = new Map<string, Lane>();
  const states: HState[] = [];
  const byKey = new Map<string, HState>();
  let pollTimer: NodeJS.Timeout | null = null;
  let closing = false;
  let closed = false;
  let idle: (() => void) | null = null;

  const pump = (lane: Lane) => {
    if (closing) return;
    const hs = lane.handlers;
    while (lane.inFlight < lane.limit) {
      let picked: HState | undefined;
      for (let i = 0; i < hs.length; i++) {
        const s = hs[(lane.next + i) % hs.length]!;
        if (s.ready.length > 0 && !s.disabled) {
          picked = s;
          lane.next = (lane.next + i + 1) % hs.length;
          break;
        }
      }
      if (picked === undefined) return;
      send(picked, picked.ready.shift()!);
    }
  };

  const send = (s: HState, item: DeliveryItem) => {
    s.lane.inFlight++;
    metrics.attempt(item.hostType, s.label);
    let p: Promise<SendResult>;
    try {
      p = s.sender.deliver(s.h.index, item);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (r) => done(s, item, r),
      (err) => done(s, item, { kind: 'retry', status: 'error', error: `error: ${String(err)}` }),
    );
  };

  const deadLetter = (s: HState, item: DeliveryItem, attempt: number, error: string, reason: NonNullable<AttemptReport['deadLettered']>) => {
    store.settle({ op: 'dead', id: item.id, attempts: attempt, error, at: now() });
    rep.removed(s.gi, item.id, item.payload.byteLength);
    metrics.deadLettered(item.hostType, s.label, reason);
    log.warn(
      { what: 'event_pusher_dead_lettered', backend: s.h.backend, handler: s.h.index, ...s.h.logFields, host_type: item.hostType, webhook_id: item.eventId, attempts: attempt, reason, error },
      'event moved to the dead-letter table',
    );
  };

  const done = (s: HState, item: DeliveryItem, r: SendResult) => {
    s.lane.inFlight--;
    s.active--;
    s.bytes -= item.payload.byteLength;
    if (closed) return;
    metrics.response(item.hostType, s.label, r.status);
    const attempt = item.attempts + 1;
    const report: AttemptReport = { attempt };
    const t = now();
    switch (r.kind) {
      case 'delivered':
        store.settle({ op: 'delivered', id: item.id });
        rep.removed(s.gi, item.id, item.payload.byteLength);
        break;
      case 'final':
        report.deadLettered = 'final';
        break;
      case 'gone':
        if (r.scope === 'event') report.deadLettered = 'gone';
        else {
          // The event stays for after a restart; so do the handler's others.
          store.settle({ op: 'retry', id: item.id, attempts: attempt, nextAt: t, error: r.error });
          disable(s, item);
        }
        break;
      case 'retry': {
        let delay = backoffMs(s.h.retry, attempt);
        if (r.afterMs !== undefined) delay = Math.max(delay, r.afterMs);
        if (attempt >= s.h.retry.max_attempts) report.deadLettered = 'attempts';
        else if (t + delay > item.createdAt + s.h.retry.max_age) report.deadLettered = 'max_age';
        else {
          store.settle({ op: 'retry', id: item.id, attempts: attempt, nextAt: t + delay, error: r.error });
          metrics.retry(item.hostType, s.label);
          report.nextAttemptInMs = delay;
          wake(s, t + delay);
        }
        break;
      }
    }
    rep.attempted(s.gi, item, r, report);
    if (report.deadLettered !== undefined) deadLetter(s, item, attempt, r.kind === 'delivered' ? '' : r.error, report.deadLettered);
    if (r.kind === 'gone') {
      try {
        s.sender.gone?.(s.h.index, item, r);
      } catch (err) {
        log.error({ what: 'event_pusher_sender_failed', backend: s.h.backend, handler: s.h.index, err: String(err) }, 'the sender failed on an endpoint that is gone');
      }
    }
    if (closing) {
      if (idle !== null && inFlightTotal() === 0) idle();
      return;
    }
    if (s.more && s.active <= page / 2) claim(s);
    pump(s.lane);
  };

  const disable = (s: HState, item: DeliveryItem) => {
    if (s.disabled) return;
    s.disabled = true;
    log.error(
      { what: 'event_pusher_endpoint_gone', backend: s.h.backend, handler: s.h.index, ...s.h.logFields, webhook_id: item.eventId },
      'the endpoint is gone: nothing more is sent to it until the server restarts; its events stay in the outbox',
    );
    for (const r of s.ready) {
      store.settle({ op: 'release', id: r.id });
      s.bytes -= r.payload.byteLength;
    }
    s.active -= s.ready.length;
    s.ready = [];
    if (s.wakeTimer !== null) clearTimeout(s.wakeTimer);
    s.wakeTimer = null;
  };

  /** Claims rows due by `dueBy` (now by default) into the handler's free room. */
  const claim = (s: HState, dueBy?: number) => {
    if (closing || s.disabled) return;
    if (s.claiming) {
      s.reclaim = Math.max(s.reclaim ?? 0, dueBy ?? 0);
      return;
    }
    const room = Math.min(MAX_CLAIM, page - s.active);
    const byteRoom = pageBytes - s.bytes;
    if (room <= 0 || byteRoom <= 0) return;
    s.claiming = true;
    s.reclaim = null;
    store.claim(s.h.key, Math.max(now(), dueBy ?? 0), room, byteRoom).then(
      (rows) => {
        s.claiming = false;
        let got = 0;
        for (const r of rows) got += r.payload.byteLength;
        s.more = rows.length === room || got >= byteRoom;
        if (closing) return;
        if (s.disabled) {
          for (const r of rows) store.settle({ op: 'release', id: r.id });
          return;
        }
        // Events taken hot meanwhile may have used the room: what no longer
        // fits in the page goes back, to be claimed when there is room again.
        let fit = 0;
        while (fit < rows.length && s.active < page && (fit === 0 || s.bytes < pageBytes)) {
          s.active++;
          s.bytes += rows[fit]!.payload.byteLength;
          s.ready.push(itemOf(s.h.index, rows[fit]!));
          fit++;
        }
        for (let i = fit; i < rows.length; i++) store.settle({ op: 'release', id: rows[i]!.id });
        if (fit < rows.length) s.more = true;
        pump(s.lane);
        if (s.reclaim !== null) claim(s, s.reclaim);
      },
      (err) => {
        s.claiming = false;
        if (!closed) log.error({ what: 'event_pusher_outbox_read_failed', backend: s.h.backend, handler: s.h.index, err: String(err) }, 'could not read due events from the outbox');
      },
    );
  };

  /** Claims again at `at` when that comes before the next poll. */
  const wake = (s: HState, at: number) => {
    const delay = at - now();
    if (delay >= pollMs) return;
    if (s.wakeTimer !== null && s.wakeAt <= at) return;
    if (s.wakeTimer !== null) clearTimeout(s.wakeTimer);
    s.wakeAt = at;
    s.wakeTimer = setTimeout(() => {
      s.wakeTimer = null;
      // A timer may fire a little before the wall clock reaches `at`.
      claim(s, at);
    }, Math.max(0, delay));
    s.wakeTimer.unref();
  };

  const poll = () => {
    for (const s of states) claim(s);
  };

  const inFlightTotal = () => {
    let n = 0;
    for (const l of lanes.values()) n += l.inFlight;
    return n;
  };

  return {
    add(h, sender) {
      const laneKey = h.backend + '\0' + h.lane;
      let lane = lanes.get(laneKey);
      if (lane === undefined) {
        lane = { limit: Math.max(1, h.concurrency), inFlight: 0, handlers: [], next: 0 };
        lanes.set(laneKey, lane);
      }
      const s: HState = {
        gi: states.length, h, label: handlerLabel(h), sender, lane, ready: [], active: 0, bytes: 0, disabled: false, more: false, claiming: false, reclaim: null, wakeAt: 0, wakeTimer: null,
      };
      lane.handlers.push(s);
      states.push(s);
      byKey.set(h.key, s);
    },
    admit(key, bytes) {
      const s = byKey.get(key);
      if (s === undefined || closing || s.disabled || s.active >= page || (s.active > 0 && s.bytes + bytes > pageBytes)) return false;
      s.active++;
      s.bytes += bytes;
      return true;
    },
    written(key, row, id, hot) {
      const s = byKey.get(key);
      if (s === undefined) return;
      if (!hot) {
        // Written unclaimed: claim it as soon as there is room, not at the next poll.
        s.more = true;
        if (!closing && !s.disabled && s.active < page) claim(s);
        return;
      }
      if (closing || s.disabled) {
        // Left claimed in the store only until close (which releases every claim) or released now.
        if (!closing) store.settle({ op: 'release', id });
        s.active--;
        s.bytes -= row.payload.byteLength;
        return;
      }
      s.ready.push({ id, handler: s.h.index, hostType: row.hostType, eventId: row.eventId, payload: row.payload, attempts: 0, createdAt: row.createdAt });
      pump(s.lane);
    },
    writeFailed(key, hot, bytes) {
      const s = byKey.get(key);
      if (s !== undefined && hot) {
        s.active--;
        s.bytes -= bytes;
      }
    },
    nudge(key) {
      const s = byKey.get(key);
      if (s === undefined) return;
      s.more = true;
      if (!closing && !s.disabled && s.active < page) claim(s);
    },
    start() {
      poll();
      pollTimer = setInterval(poll, pollMs);
      pollTimer.unref();
    },
    async close(graceMs) {
      if (closing) return;
      closing = true;
      if (pollTimer !== null) clearInterval(pollTimer);
      for (const s of states) if (s.wakeTimer !== null) clearTimeout(s.wakeTimer);
      if (inFlightTotal() > 0) {
        await idleOrTimeout(graceMs, (f) => {
          idle = f;
        });
      }
      closed = true;
      for (const sender of new Set(states.map((s) => s.sender))) await sender.close().catch(() => {});
    },
  };
}
