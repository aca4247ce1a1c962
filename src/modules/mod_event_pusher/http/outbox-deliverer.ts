// At-least-once delivery: every request is written to the outbox before the
// sender's message moves on, then sent from there, retried with backoff until
// a 2xx answer, and moved to the dead-letter table when it runs out of
// attempts or of age.
//
// This is the server thread's half: it takes events (refusing them beyond
// outbox_max_events), keeps the depth per handler, and writes the rows. The
// sending half (outbox-sender.ts) claims, sends and settles them. With the
// SQLite outbox and pools from the configuration, it runs in the outbox's
// writer thread (outbox-delivery-worker.ts): the rows are there already, and
// the HTTP work (dispatch, socket writes, signing) leaves the thread that
// routes stanzas. It reports back once per tick, and the metrics and logs
// are updated here as if the requests had been sent from this thread.
// Otherwise (PostgreSQL, pools made by a test) it runs here.
import type { Logger } from 'pino';
import type { HttpOutcome } from '../../../outgoing/types.ts';
import { httpPoolOrigin } from '../../../outgoing/http.ts';
import type { OutboxStore } from '../../../storage/outbox.ts';
import type { SqliteOutbox } from '../../../storage/outbox-sqlite.ts';
import type { Deliverer, DeliveryRequest } from './deliverer.ts';
import type { DeliveryMetrics } from './metrics.ts';
import { createSender, DEFAULT_POLL_MS, type AttemptReport, type DeliveryReporter, type OutboxHandler, type Sender } from './outbox-sender.ts';
import { applyReports, type SenderInit } from './outbox-delivery-worker.ts';

export { MAX_PAGE, DEFAULT_POLL_MS, type AttemptReport, type OutboxHandler } from './outbox-sender.ts';

/** Every this many polls the depth counters are re-read from the store. */
const DEPTH_SYNC_EVERY = 5;

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
  /** Reads the depth, reports rows of handlers no longer configured, starts sending and polling. */
  start(): Promise<void>;
  close(graceMs?: number): Promise<void>;
}

function pairsOf(h: DeliveryRequest['headers']): Array<[string, string]> {
  // Never changed once built: the backend's list is kept as it is.
  if (Array.isArray(h)) return h as Array<[string, string]>;
  return Object.entries(h as Record<string, string>);
}

/** The writer thread can send for these handlers: the store is SQLite's and every pool comes from the configuration. */
function canSendFromWriter(store: OutboxStore, hs: readonly OutboxHandler[], o: OutboxEngineOptions): store is SqliteOutbox {
  return typeof (store as Partial<SqliteOutbox>).attach === 'function' && o.now === undefined && hs.every((h) => httpPoolOrigin(h.pool) !== undefined);
}

export function createOutboxEngine(o: OutboxEngineOptions): OutboxEngine {
  const store = o.store;
  const log = o.logger;
  const now = o.now ?? Date.now;
  const pollMs = o.pollMs ?? DEFAULT_POLL_MS;
  const handlers: OutboxHandler[] = [];
  const byKey = new Set<string>();

  /** Rows in the outbox per handler key, kept up to date here and re-read now and then. */
  const depth = new Map<string, number>();
  let total = 0;
  /** Changes made since the last depth request was sent (null when none is under way). */
  let sinceSync: Map<string, number> | null = null;
  let polls = 0;
  let pollTimer: NodeJS.Timeout | null = null;
  let closing = false;
  let closed = false;
  let rejectedSinceLog = 0;
  let lastRejectLog = 0;
  /** The sender when it runs on this thread. */
  let local: Sender | null = null;
  /** How to reach the sender in the writer thread. */
  let remote: { request<T>(body: unknown): Promise<T> } | null = null;

  const bump = (key: string, d: number) => {
    depth.set(key, (depth.get(key) ?? 0) + d);
    total += d;
    if (sinceSync !== null) sinceSync.set(key, (sinceSync.get(key) ?? 0) + d);
  };

  const reporter: DeliveryReporter = {
    metrics: o.metrics,
    onAttempt: o.onAttempt,
    removed: (key) => bump(key, -1),
    log,
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
    for (const h of handlers) o.metrics.depth(h.index, depth.get(h.key) ?? 0);
  };

  const poll = () => {
    polls++;
    if (polls % DEPTH_SYNC_EVERY === 0) void syncDepth();
    else for (const h of handlers) o.metrics.depth(h.index, depth.get(h.key) ?? 0);
  };

  const reject = (h: OutboxHandler, req: DeliveryRequest) => {
    o.metrics.rejected(req.hostType, h.index);
    o.onDropped(req, 'outbox_full');
    // One line per second at most: at the cap, every message would log otherwise.
    rejectedSinceLog++;
    const t = now();
    if (t - lastRejectLog >= 1000) {
      log.warn({ what: 'event_pusher_outbox_full', handler: h.index, rejected: rejectedSinceLog, outbox_max_events: o.maxEvents },
        'the outbox is full: new events are not kept (messages are still routed)');
      rejectedSinceLog = 0;
      lastRejectLog = t;
    }
  };

  const enqueue = (h: OutboxHandler, req: DeliveryRequest): Promise<void> | void => {
    if (closing) return o.onDropped(req, 'closed');
    if (total >= o.maxEvents) return reject(h, req);
    const key = h.key;
    // In the writer thread, the sender decides when the row gets there.
    const sender = local;
    const hot = sender !== null && sender.admit(key);
    bump(key, 1);
    const body = typeof req.body === 'string' ? Buffer.from(req.body, 'utf8') : req.body;
    const row = { handler: key, hostType: req.hostType, webhookId: req.webhookId, path: req.path, headers: pairsOf(req.headers), headersJson: req.headersJson, body, createdAt: now(), claimed: hot };
    return store.append(row).then(
      (id) => {
        sender?.written(key, row, id, hot);
      },
      (err: unknown) => {
        sender?.writeFailed(key, hot);
        bump(key, -1);
        log.error({ what: 'event_pusher_outbox_write_failed', handler: h.index, webhook_id: req.webhookId, err: String(err) },
          'could not write an event to the outbox; it is lost');
        o.onDropped(req, 'store_error');
      },
    );
  };

  return {
    deliverer(h) {
      handlers.push(h);
      byKey.add(h.key);
      return {
        enqueue: (req) => enqueue(h, req),
        get size() {
          return depth.get(h.key) ?? 0;
        },
        close: async () => {},
      };
    },
    async start() {
      if (canSendFromWriter(store, handlers, o)) {
        const init: SenderInit = {
          handlers: handlers.map((h) => {
            const origin = httpPoolOrigin(h.pool)!;
            return { index: h.index, key: h.key, url: h.url, poolTag: origin.tag, poolConfig: origin.cfg, retry: h.retry, signingKeys: h.signingKeys };
          }),
          pageSize: o.pageSize,
          pollMs: o.pollMs,
        };
        remote = await store.attach(new URL('./outbox-delivery-worker.ts', import.meta.url).href, init, (m) => {
          if (!closed) applyReports(m, reporter);
        });
      } else {
        local = createSender({ store, reporter, pageSize: o.pageSize, pollMs: o.pollMs, now: o.now });
        for (const h of handlers) local.add(h);
      }
      await syncDepth();
      const orphans = [...depth].filter(([k, n]) => n > 0 && !byKey.has(k));
      if (orphans.length > 0) {
        log.warn({ what: 'event_pusher_outbox_orphans', handlers: Object.fromEntries(orphans) },
          'the outbox holds events of handlers that are no longer configured; they stay until such a handler is configured again');
      }
      if (local !== null) local.start();
      else await remote!.request({ type: 'start' });
      poll();
      pollTimer = setInterval(poll, pollMs);
      pollTimer.unref();
    },
    async close(graceMs = 5000) {
      if (closing) return;
      closing = true;
      if (pollTimer !== null) clearInterval(pollTimer);
      try {
        if (local !== null) await local.close(graceMs);
        else if (remote !== null) await remote.request({ type: 'close', graceMs });
      } catch (err) {
        log.error({ what: 'event_pusher_outbox_close_failed', err: String(err) }, 'the outbox sender did not stop cleanly');
      }
      closed = true;
      // Rows still claimed (waiting, or in flight past the grace) are released by the store.
      await store.close();
    },
  };
}
