// At-least-once delivery: every request is written to the outbox before the
// sender's message moves on, then sent from there, retried with backoff until
// a 2xx answer, and moved to the dead-letter table when it runs out of
// attempts or of age.
//
// Memory stays bounded whatever the backlog: each handler keeps at most
// `pageSize` claimed rows in memory (being sent or waiting for a free
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
import type { Logger } from 'pino';
import type { HttpHeaders, HttpOutcome, HttpPool } from '../../../outgoing/types.ts';
import type { OutboxRow, OutboxStore } from '../../../storage/outbox.ts';
import type { Deliverer, DeliveryRequest } from './deliverer.ts';
import type { DeliveryMetrics } from './metrics.ts';
import { backoffMs, retryAfterMs, verdictOf, type RetryPolicy, type Verdict } from './retry.ts';
import { signedHeaders, type Signer } from './signing.ts';

/** Most rows of one handler held in memory at once. */
export const MAX_PAGE = 500;
/** How often the outbox is read for due rows (retries, replays, a backlog). */
export const DEFAULT_POLL_MS = 1000;
/** Every this many polls the depth counters are re-read from the store. */
const DEPTH_SYNC_EVERY = 5;

export interface OutboxHandler {
  index: number;
  /** Stable key of the handler in the store. */
  key: string;
  url: string;
  pool: HttpPool;
  retry: RetryPolicy;
  signer?: Signer;
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

export interface OutboxEngineOptions {
  store: OutboxStore;
  logger: Logger;
  metrics: DeliveryMetrics;
  /** Rows of all handlers together beyond which new events are refused. */
  maxEvents: number;
  onAttempt(req: DeliveryRequest, outcome: HttpOutcome, r: AttemptReport): void;
  /** An event that could not be kept (outbox full, write failed, closed). */
  onDropped(req: DeliveryRequest, reason: 'outbox_full' | 'store_error' | 'closed'): void;
  pollMs?: number;
  pageSize?: number;
  now?: () => number;
}

export interface OutboxEngine {
  /** The deliverer of one handler; its enqueue resolves once the request is committed. */
  deliverer(h: OutboxHandler): Deliverer;
  /** Reads the depth, reports rows of handlers no longer configured, starts polling. */
  start(): Promise<void>;
  close(graceMs?: number): Promise<void>;
}

/** A claimed row in memory; it is also the DeliveryRequest reported to the backend. */
interface Item extends DeliveryRequest {
  id: number;
  handler: number;
  hostType: string;
  webhookId: string;
  path: string;
  headers: Array<[string, string]>;
  body: Uint8Array;
  attempts: number;
  createdAt: number;
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

function pairsOf(h: HttpHeaders): Array<[string, string]> {
  // Never changed once built: the backend's list is kept as it is.
  if (Array.isArray(h)) return h as Array<[string, string]>;
  return Object.entries(h as Record<string, string>);
}

function errorText(o: HttpOutcome): string {
  if (o.kind === 'ok' || o.kind === 'http_status') return `HTTP ${o.status}`;
  return `${o.kind}: ${o.message}`;
}

function itemOf(handler: number, r: OutboxRow): Item {
  return { id: r.id, handler, hostType: r.hostType, webhookId: r.webhookId, path: r.path, headers: r.headers, body: r.body, attempts: r.attempts, createdAt: r.createdAt };
}

export function createOutboxEngine(o: OutboxEngineOptions): OutboxEngine {
  const store = o.store;
  const log = o.logger;
  const now = o.now ?? Date.now;
  const page = Math.min(MAX_PAGE, Math.max(1, o.pageSize ?? MAX_PAGE));
  const pollMs = o.pollMs ?? DEFAULT_POLL_MS;
  const lanes = new Map<HttpPool, Lane>();
  const states: HState[] = [];
  const byKey = new Map<string, HState>();

  /** Rows in the outbox per handler key, kept up to date here and re-read now and then. */
  const depth = new Map<string, number>();
  let total = 0;
  /** Changes made since the last depth request was sent (null when none is under way). */
  let sinceSync: Map<string, number> | null = null;
  let polls = 0;
  let pollTimer: NodeJS.Timeout | null = null;
  let closing = false;
  let closed = false;
  let idle: (() => void) | null = null;
  let rejectedSinceLog = 0;
  let lastRejectLog = 0;

  const bump = (key: string, d: number) => {
    depth.set(key, (depth.get(key) ?? 0) + d);
    total += d;
    if (sinceSync !== null) sinceSync.set(key, (sinceSync.get(key) ?? 0) + d);
  };

  const syncDepth = async () => {
    if (sinceSync !== null) return;
    sinceSync = new Map();
    try {
      const fresh = await store.depth();
      const delta = sinceSync;
      depth.clear();
      total = 0;
      for (const [k, n] of fresh) depth.set(k, n);
      for (const [k, d] of delta) depth.set(k, (depth.get(k) ?? 0) + d);
      for (const n of depth.values()) total += n;
    } catch (err) {
      if (!closed) log.error({ what: 'event_pusher_outbox_read_failed', err: String(err) }, 'could not read the outbox depth');
    } finally {
      sinceSync = null;
    }
    for (const s of states) o.metrics.depth(s.h.index, depth.get(s.h.key) ?? 0);
  };

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
    o.metrics.attempt(item.hostType, s.h.index);
    s.h.pool.post(item.path, headers, item.body).then(
      (outcome) => done(s, item, attempt, outcome),
      (err) => done(s, item, attempt, { kind: 'error', message: String(err) }),
    );
  };

  const deadLetter = (s: HState, item: Item, attempt: number, error: string, reason: 'attempts' | 'max_age' | 'final') => {
    store.settle({ op: 'dead', id: item.id, attempts: attempt, error, at: now() });
    bump(s.h.key, -1);
    o.metrics.deadLettered(item.hostType, s.h.index, reason);
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
    o.metrics.response(item.hostType, s.h.index, status);
    const verdict = verdictOf(outcome);
    const report: AttemptReport = { attempt, verdict };
    const t = now();
    switch (verdict) {
      case 'delivered':
        store.settle({ op: 'delivered', id: item.id });
        bump(s.h.key, -1);
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
          o.metrics.retry(item.hostType, s.h.index);
          report.nextAttemptInMs = delay;
          wake(s, t + delay);
        }
        break;
      }
    }
    o.onAttempt(item, outcome, report);
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
    polls++;
    for (const s of states) claim(s);
    if (polls % DEPTH_SYNC_EVERY === 0) void syncDepth();
    else for (const s of states) o.metrics.depth(s.h.index, depth.get(s.h.key) ?? 0);
  };

  const inFlightTotal = () => {
    let n = 0;
    for (const l of lanes.values()) n += l.inFlight;
    return n;
  };

  const reject = (s: HState, req: DeliveryRequest) => {
    o.metrics.rejected(req.hostType, s.h.index);
    o.onDropped(req, 'outbox_full');
    // One line per second at most: at the cap, every message would log otherwise.
    rejectedSinceLog++;
    const t = now();
    if (t - lastRejectLog >= 1000) {
      log.warn({ what: 'event_pusher_outbox_full', handler: s.h.index, rejected: rejectedSinceLog, outbox_max_events: o.maxEvents },
        'the outbox is full: new events are not kept (messages are still routed)');
      rejectedSinceLog = 0;
      lastRejectLog = t;
    }
  };

  const enqueue = (s: HState, req: DeliveryRequest): Promise<void> | void => {
    if (closing) return o.onDropped(req, 'closed');
    if (total >= o.maxEvents) return reject(s, req);
    const hot = !s.disabled && s.active < page;
    if (hot) s.active++;
    bump(s.h.key, 1);
    const headers = pairsOf(req.headers);
    const body = typeof req.body === 'string' ? Buffer.from(req.body, 'utf8') : req.body;
    const createdAt = now();
    return store
      .append({ handler: s.h.key, hostType: req.hostType, webhookId: req.webhookId, path: req.path, headers, headersJson: req.headersJson, body, createdAt, claimed: hot })
      .then(
        (id) => {
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
          s.ready.push({ id, handler: s.h.index, hostType: req.hostType, webhookId: req.webhookId, path: req.path, headers, body, attempts: 0, createdAt });
          pump(s.lane);
        },
        (err: unknown) => {
          if (hot) s.active--;
          bump(s.h.key, -1);
          log.error({ what: 'event_pusher_outbox_write_failed', handler: s.h.index, webhook_id: req.webhookId, err: String(err) },
            'could not write an event to the outbox; it is lost');
          o.onDropped(req, 'store_error');
        },
      );
  };

  return {
    deliverer(h) {
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
      return {
        enqueue: (req) => enqueue(s, req),
        get size() {
          return depth.get(h.key) ?? 0;
        },
        close: async () => {},
      };
    },
    async start() {
      await syncDepth();
      const orphans = [...depth].filter(([k, n]) => n > 0 && !byKey.has(k));
      if (orphans.length > 0) {
        log.warn({ what: 'event_pusher_outbox_orphans', handlers: Object.fromEntries(orphans) },
          'the outbox holds events of handlers that are no longer configured; they stay until such a handler is configured again');
      }
      poll();
      pollTimer = setInterval(poll, pollMs);
      pollTimer.unref();
    },
    async close(graceMs = 5000) {
      if (closing) return;
      closing = true;
      if (pollTimer !== null) clearInterval(pollTimer);
      for (const s of states) if (s.wakeTimer !== null) clearTimeout(s.wakeTimer);
      if (inFlightTotal() > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          timer.unref();
          idle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      closed = true;
      // Rows still claimed (waiting, or in flight past the grace) are released by the store.
      await store.close();
    },
  };
}
