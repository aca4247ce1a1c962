// The sending half of at-least-once delivery: claims rows of the outbox,
// sends them through the handlers' pools, and settles them (delivered,
// retried with backoff, dead-lettered, released). It runs on the server's
// thread (PostgreSQL outbox, or pools it did not create) or in the SQLite
// outbox's writer thread (outbox-delivery-worker.ts), where the rows
// already are; what it reports (metrics, attempts, logs) goes through a
// DeliveryReporter, which in the writer thread forwards it to the server's.
//
// Memory stays bounded whatever the backlog: each handler keeps at most
// `page` claimed rows in memory (being sent or waiting for a free
// connection). A failed attempt goes back to the table with its next time,
// and is claimed again, a page at a time, when it is due; so is whatever a
// restart or `petrel deliveries dead-letter replay` left there. A new event
// is claimed as it is written when its handler has room, so that the usual
// path costs no read: it is sent as soon as its batch is committed. One
// written unclaimed (its handler had no room) makes the handler claim again
// as soon as it has room, so it does not wait for the poll, which is only a
// safety net (and what picks up replays).
//
// Concurrency is per pool: the handlers sharing a pool share its `workers`
// slots, taken in turn. Retries can overtake newer events, so one handler's
// deliveries may arrive out of order.
import type { HttpOutcome, HttpPool } from '../../../outgoing/types.ts';
import type { NewOutboxRow, OutboxRow, OutboxStore } from '../../../storage/outbox.ts';
import { idleOrTimeout, type DeliveryRequest } from './deliverer.ts';
import type { DeliveryMetrics } from './metrics.ts';
import { backoffMs, retryAfterMs, verdictOf, type RetryPolicy, type Verdict } from './retry.ts';
import { signedHeaders, type Signer } from './signing.ts';

/** Most rows of one handler held in memory at once. */
export const MAX_PAGE = 500;
/** How often the outbox is read for due rows (retries, replays, a backlog). */
export const DEFAULT_POLL_MS = 1000;

export interface OutboxHandler {
  index: number;
  /** Stable key of the handler in the store. */
  key: string;
  url: string;
  pool: HttpPool;
  retry: RetryPolicy;
  signer?: Signer;
  /** The signer's keys, for a sender in another thread. */
  signingKeys?: readonly Uint8Array[];
}

/** What happened to one attempt, for the backend's metrics and logs. */
export interface AttemptReport {
  attempt: number;
  verdict: Verdict;
  /** Set when the event will be tried again. */
  nextAttemptInMs?: number;
  /** Set when the event moved to the dead-letter table. */
  deadLettered?: 'attempts' | 'max_age' | 'final';
}

/** The logging calls the sender makes (pino's, or their forwarding from another thread). */
export interface SenderLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface DeliveryReporter {
  metrics: Pick<DeliveryMetrics, 'attempt' | 'retry' | 'deadLettered' | 'response'>;
  onAttempt(req: DeliveryRequest, outcome: HttpOutcome, r: AttemptReport): void;
  /** A row of `key` left the outbox (delivered or dead-lettered). */
  removed(key: string): void;
  log: SenderLog;
}

export interface SenderOptions {
  store: Pick<OutboxStore, 'settle' | 'claim'>;
  reporter: DeliveryReporter;
  pageSize?: number;
  pollMs?: number;
  now?: () => number;
}

export interface Sender {
  add(h: OutboxHandler): void;
  /** A new event of `key` is about to be written: whether it is claimed as it is (the handler has room). */
  admit(key: string): boolean;
  /** The event is committed as `id`; `hot` as admit answered. */
  written(key: string, row: NewOutboxRow, id: number, hot: boolean): void;
  /** The event could not be written. */
  writeFailed(key: string, hot: boolean): void;
  /** Claims due rows now, then every pollMs. */
  start(): void;
  /** Stops sending; waits up to `graceMs` for requests in flight. Claims are left to the store's close. */
  close(graceMs: number): Promise<void>;
}

/** A claimed row in memory, under its handler's index; it is also the DeliveryRequest reported to the backend. */
interface Item extends Omit<OutboxRow, 'handler'> {
  handler: number;
}

interface Lane {
  limit: number;
  inFlight: number;
  handlers: HState[];
  next: number;
}

interface HState {
  h: OutboxHandler;
  lane: Lane;
  ready: Item[];
  /**
   * Rows claimed by this server: ready, in flight, or being written claimed.
   * A claim under way does not count: new events are taken hot meanwhile,
   * and what the claim brings beyond the page is released.
   */
  active: number;
  inFlight: number;
  disabled: boolean;
  /** The last claim filled its page: more rows may be due. */
  more: boolean;
  claiming: boolean;
  /** A wake-up came while a claim was under way: claim again, for rows due by then. */
  reclaim: number | null;
  wakeAt: number;
  wakeTimer: NodeJS.Timeout | null;
}

function errorText(o: HttpOutcome): string {
  if (o.kind === 'ok' || o.kind === 'http_status') return `HTTP ${o.status}`;
  return `${o.kind}: ${o.message}`;
}

function itemOf(handler: number, r: OutboxRow): Item {
  return { id: r.id, handler, hostType: r.hostType, webhookId: r.webhookId, path: r.path, headers: r.headers, body: r.body, attempts: r.attempts, createdAt: r.createdAt };
}

export function createSender(o: SenderOptions): Sender {
  const store = o.store;
  const rep = o.reporter;
  const log = rep.log;
  const metrics = rep.metrics;
  const now = o.now ?? Date.now;
  const page = Math.min(MAX_PAGE, Math.max(1, o.pageSize ?? MAX_PAGE));
  const pollMs = o.pollMs ?? DEFAULT_POLL_MS;
  const lanes = new Map<HttpPool, Lane>();
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

  const send = (s: HState, item: Item) => {
    const lane = s.lane;
    lane.inFlight++;
    s.inFlight++;
    const attempt = item.attempts + 1;
    const headers = s.h.signer !== undefined ? signedHeaders(s.h.signer, item.headers, item.webhookId, item.body, now()) : item.headers;
    metrics.attempt(item.hostType, s.h.index);
    s.h.pool.post(item.path, headers, item.body).then(
      (outcome) => done(s, item, attempt, outcome),
      (err) => done(s, item, attempt, { kind: 'error', message: String(err) }),
    );
  };

  const deadLetter = (s: HState, item: Item, attempt: number, error: string, reason: 'attempts' | 'max_age' | 'final') => {
    store.settle({ op: 'dead', id: item.id, attempts: attempt, error, at: now() });
    rep.removed(s.h.key);
    metrics.deadLettered(item.hostType, s.h.index, reason);
    log.warn(
      { what: 'event_pusher_dead_lettered', handler: s.h.index, url: s.h.url, host_type: item.hostType, webhook_id: item.webhookId, attempts: attempt, reason, error },
      'HTTP notification moved to the dead-letter table',
    );
  };

  const done = (s: HState, item: Item, attempt: number, outcome: HttpOutcome) => {
    s.lane.inFlight--;
    s.inFlight--;
    s.active--;
    if (closed) return;
    const status = outcome.kind === 'ok' || outcome.kind === 'http_status' ? String(outcome.status) : outcome.kind;
    metrics.response(item.hostType, s.h.index, status);
    const verdict = verdictOf(outcome);
    const report: AttemptReport = { attempt, verdict };
    const t = now();
    switch (verdict) {
      case 'delivered':
        store.settle({ op: 'delivered', id: item.id });
        rep.removed(s.h.key);
        break;
      case 'final':
        report.deadLettered = 'final';
        break;
      case 'gone':
        // The event stays for after a restart; so do the handler's others.
        store.settle({ op: 'retry', id: item.id, attempts: attempt, nextAt: t, error: errorText(outcome) });
        disable(s, item);
        break;
      case 'retry': {
        let delay = backoffMs(s.h.retry, attempt);
        const asked = retryAfterMs(outcome, t);
        if (asked !== undefined) delay = Math.max(delay, asked);
        if (attempt >= s.h.retry.max_attempts) report.deadLettered = 'attempts';
        else if (t + delay > item.createdAt + s.h.retry.max_age) report.deadLettered = 'max_age';
        else {
          store.settle({ op: 'retry', id: item.id, attempts: attempt, nextAt: t + delay, error: errorText(outcome) });
          metrics.retry(item.hostType, s.h.index);
          report.nextAttemptInMs = delay;
          wake(s, t + delay);
        }
        break;
      }
    }
    rep.onAttempt(item, outcome, report);
    if (report.deadLettered !== undefined) deadLetter(s, item, attempt, errorText(outcome), report.deadLettered);
    if (closing) {
      if (idle !== null && inFlightTotal() === 0) idle();
      return;
    }
    if (s.more && s.active <= page / 2) claim(s);
    pump(s.lane);
  };

  const disable = (s: HState, item: Item) => {
    if (s.disabled) return;
    s.disabled = true;
    log.error(
      { what: 'event_pusher_endpoint_gone', handler: s.h.index, url: s.h.url, webhook_id: item.webhookId },
      'the endpoint answered 410 Gone: nothing more is sent to it until the server restarts; its events stay in the outbox',
    );
    for (const r of s.ready) store.settle({ op: 'release', id: r.id });
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
    const room = page - s.active;
    if (room <= 0) return;
    s.claiming = true;
    s.reclaim = null;
    store.claim(s.h.key, Math.max(now(), dueBy ?? 0), room).then(
      (rows) => {
        s.claiming = false;
        s.more = rows.length === room;
        if (closing) return;
        if (s.disabled) {
          for (const r of rows) store.settle({ op: 'release', id: r.id });
          return;
        }
        // Events taken hot meanwhile may have used the room: what no longer
        // fits in the page goes back, to be claimed when there is room again.
        const fit = Math.max(0, Math.min(rows.length, page - s.active));
        for (let i = fit; i < rows.length; i++) store.settle({ op: 'release', id: rows[i]!.id });
        if (fit < rows.length) s.more = true;
        s.active += fit;
        for (let i = 0; i < fit; i++) s.ready.push(itemOf(s.h.index, rows[i]!));
        pump(s.lane);
        if (s.reclaim !== null) claim(s, s.reclaim);
      },
      (err) => {
        s.claiming = false;
        if (!closed) log.error({ what: 'event_pusher_outbox_read_failed', handler: s.h.index, err: String(err) }, 'could not read due events from the outbox');
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
    add(h) {
      let lane = lanes.get(h.pool);
      if (lane === undefined) {
        lane = { limit: Math.max(1, h.pool.workers), inFlight: 0, handlers: [], next: 0 };
        lanes.set(h.pool, lane);
      }
      const s: HState = {
        h, lane, ready: [], active: 0, inFlight: 0, disabled: false, more: false, claiming: false, reclaim: null, wakeAt: 0, wakeTimer: null,
      };
      lane.handlers.push(s);
      states.push(s);
      byKey.set(h.key, s);
    },
    admit(key) {
      const s = byKey.get(key);
      if (s === undefined || closing || s.disabled || s.active >= page) return false;
      s.active++;
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
        return;
      }
      // Rows from another thread carry their headers as JSON only.
      const headers = row.headers.length > 0 || row.headersJson === undefined ? row.headers : (JSON.parse(row.headersJson) as Array<[string, string]>);
      s.ready.push({ id, handler: s.h.index, hostType: row.hostType, webhookId: row.webhookId, path: row.path, headers, body: row.body, attempts: 0, createdAt: row.createdAt });
      pump(s.lane);
    },
    writeFailed(key, hot) {
      const s = byKey.get(key);
      if (s !== undefined && hot) s.active--;
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
    },
  };
}
