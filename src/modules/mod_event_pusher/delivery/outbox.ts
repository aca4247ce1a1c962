// At-least-once delivery for every backend: each event is written to the
// outbox before the sender's message moves on, then sent from there by the
// backend's sender, retried with backoff, and moved to the dead-letter table
// when it runs out of attempts or of age (engine.ts).
//
// This is the server thread's half: it takes events (refusing them beyond
// outbox_max_events), keeps the depth per handler, writes the rows, and puts
// the sending half where sender_thread says:
// - "worker" with the SQLite outbox: in the outbox's writer thread, where the
//   rows already are; new rows are claimed as they are written, and the
//   sending work (dispatch, sockets, signing) leaves the routing thread;
// - "worker" with PostgreSQL: in a thread of its own (pg-thread.ts) with its
//   own outbox connections, told after each commit which handlers have rows;
// - "main": here, on the store this thread writes to.
// A sender in a thread reports back once per tick (thread.ts), and metrics
// and logs are updated here as if it ran on this thread.
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { PgPoolSettings } from '../../../storage/postgres.ts';
import type { SqliteOutbox } from '../../../storage/outbox/sqlite.ts';
import type { BatchLimits, NewOutboxRow, OutboxStore } from '../../../storage/outbox/types.ts';
import { createSendLoop, DEFAULT_POLL_MS, type EngineReporter, type SendLoop } from './engine.ts';
import { handlerLabel, type DeliveryMetrics } from './metrics.ts';
import type { PgThreadData } from './pg-thread.ts';
import { applyReports, type ThreadInit, type ThreadRequest } from './thread.ts';
import type { BackendSender, BackendSenderSpec, DurableQueue, EngineHandler, HandlerEvents, OutboxAccess } from './types.ts';

export { MAX_PAGE, DEFAULT_POLL_MS } from './engine.ts';

export type SenderThread = 'worker' | 'main';

/** Every this many polls the depth counters are re-read from the store. */
const DEPTH_SYNC_EVERY = 5;

export interface DeliveryEngineOptions {
  /** Opens the store this thread appends to (called at start, when a handler is registered). */
  open(): Promise<OutboxStore>;
  /** Where the senders run (mod_event_pusher's sender_thread). */
  senderThread: SenderThread;
  /** PostgreSQL's settings, for the sender thread's own connections (outbox_backend = "rdbms"). */
  pgSettings?: PgPoolSettings;
  batch?: BatchLimits;
  logger: Logger;
  metrics: DeliveryMetrics;
  /** Rows of all handlers together beyond which new events are refused. */
  maxEvents: number;
  pollMs?: number;
  pageSize?: number;
  now?: () => number;
}

export interface DeliveryEngine extends OutboxAccess {
  /** Whether any handler was registered. */
  readonly used: boolean;
  /** Opens the store, reads the depth, reports rows of handlers no longer configured, starts sending and polling. */
  start(): Promise<void>;
  close(graceMs?: number): Promise<void>;
}

interface Registered {
  h: EngineHandler;
  events: HandlerEvents;
}

interface Channel {
  request<T>(body: ThreadRequest): Promise<T>;
  close(): Promise<void>;
}

/** Starts pg-thread.ts; its answers and reports come back on the same port. */
async function startPgThread(data: PgThreadData, onReport: (m: unknown) => void): Promise<Channel> {
  const worker = new Worker(new URL('./pg-thread.ts', import.meta.url), { workerData: data });
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let seq = 0;
  const ready = new Promise<void>((resolve, reject) => pending.set(0, { resolve: () => resolve(), reject }));
  worker.on('message', (m: { seq: number; ok: boolean; value?: unknown; error?: string } | { ext: unknown }) => {
    if ('ext' in m) return onReport(m.ext);
    const p = pending.get(m.seq);
    if (p === undefined) return;
    pending.delete(m.seq);
    if (pending.size === 0) worker.unref();
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.error));
  });
  const fail = (err: Error) => {
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  worker.on('error', (e) => fail(e instanceof Error ? e : new Error(String(e))));
  worker.on('exit', (code) => fail(new Error(`the sender thread exited (code ${code})`)));
  try {
    await ready;
  } catch (err) {
    await worker.terminate().catch(() => {});
    throw err;
  }
  return {
    request<T>(body: ThreadRequest) {
      const s = ++seq;
      return new Promise<T>((resolve, reject) => {
        if (pending.size === 0) worker.ref();
        pending.set(s, { resolve: resolve as (v: unknown) => void, reject });
        worker.postMessage({ seq: s, body });
      });
    },
    async close() {
      await worker.terminate().catch(() => {});
    },
  };
}

export function createDeliveryEngine(o: DeliveryEngineOptions): DeliveryEngine {
  const log = o.logger;
  const now = o.now ?? Date.now;
  const pollMs = o.pollMs ?? DEFAULT_POLL_MS;
  const handlers: Registered[] = [];
  const byKey = new Set<string>();
  const senders = new Map<string, BackendSenderSpec>();
  let store: OutboxStore | null = null;

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
  /** The engine when it runs on this thread. */
  let local: SendLoop | null = null;
  /** How to reach the engine in a thread. */
  let remote: Channel | null = null;
  /** PostgreSQL and a sender thread: handlers with rows committed since the last nudge. */
  let nudges: Set<string> | null = null;
  let nudgeScheduled = false;

  const bump = (key: string, d: number) => {
    depth.set(key, (depth.get(key) ?? 0) + d);
    total += d;
    if (sinceSync !== null) sinceSync.set(key, (sinceSync.get(key) ?? 0) + d);
  };

  const reporter: EngineReporter = {
    metrics: o.metrics,
    attempted: (gi, item, r, report) => handlers[gi]?.events.attempted(item, r, report),
    removed: (gi) => {
      const x = handlers[gi];
      if (x !== undefined) bump(x.h.key, -1);
    },
    senderReport: (backend, r) => senders.get(backend)?.onReport?.(r),
    log,
  };

  const syncDepth = async () => {
    if (sinceSync !== null || store === null) return;
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
    for (const x of handlers) o.metrics.depth(handlerLabel(x.h), depth.get(x.h.key) ?? 0);
  };

  const poll = () => {
    polls++;
    if (polls % DEPTH_SYNC_EVERY === 0) void syncDepth();
    else for (const x of handlers) o.metrics.depth(handlerLabel(x.h), depth.get(x.h.key) ?? 0);
  };

  const reject = (x: Registered, hostType: string, eventId: string) => {
    o.metrics.rejected(hostType, handlerLabel(x.h));
    x.events.dropped(hostType, eventId, 'outbox_full');
    // One line per second at most: at the cap, every message would log otherwise.
    rejectedSinceLog++;
    const t = now();
    if (t - lastRejectLog >= 1000) {
      log.warn({ what: 'event_pusher_outbox_full', backend: x.h.backend, handler: x.h.index, rejected: rejectedSinceLog, outbox_max_events: o.maxEvents },
        'the outbox is full: new events are not kept (messages are still routed)');
      rejectedSinceLog = 0;
      lastRejectLog = t;
    }
  };

  const sendNudges = () => {
    nudgeScheduled = false;
    if (nudges === null || nudges.size === 0 || remote === null) return;
    const keys = [...nudges];
    nudges.clear();
    remote.request({ type: 'nudge', keys }).catch(() => {});
  };

  const enqueue = (x: Registered, hostType: string, eventId: string, payload: Uint8Array): Promise<void> | void => {
    if (closing || store === null) return x.events.dropped(hostType, eventId, 'closed');
    if (total >= o.maxEvents) return reject(x, hostType, eventId);
    const key = x.h.key;
    // In the SQLite writer thread, the engine there decides whether the row is claimed.
    const loop = local;
    const hot = loop !== null && loop.admit(key);
    bump(key, 1);
    const row: NewOutboxRow = { handler: key, hostType, eventId, payload, createdAt: now(), claimed: hot };
    return store.append(row).then(
      (id) => {
        if (loop !== null) loop.written(key, row, id, hot);
        else if (nudges !== null) {
          nudges.add(key);
          if (!nudgeScheduled) {
            nudgeScheduled = true;
            setImmediate(sendNudges);
          }
        }
      },
      (err: unknown) => {
        loop?.writeFailed(key, hot);
        bump(key, -1);
        log.error({ what: 'event_pusher_outbox_write_failed', backend: x.h.backend, handler: x.h.index, webhook_id: eventId, err: String(err) },
          'could not write an event to the outbox; it is lost');
        x.events.dropped(hostType, eventId, 'store_error');
      },
    );
  };

  const threadInit = (): ThreadInit => ({
    backends: [...senders].map(([name, s]) => {
      if (s.thread === undefined) throw new Error(`the ${name} backend cannot send from the sender thread (a pool not made from the configuration); use sender_thread = "main"`);
      return { name, url: s.thread.url, init: s.thread.init };
    }),
    handlers: handlers.map((x) => x.h),
    pageSize: o.pageSize,
    pollMs: o.pollMs,
  });

  return {
    get used() {
      return handlers.length > 0;
    },
    handler(h, events) {
      if (byKey.has(h.key)) throw new Error(`two handlers store their events under ${JSON.stringify(h.key)}`);
      const x: Registered = { h, events };
      handlers.push(x);
      byKey.add(h.key);
      const q: DurableQueue = {
        enqueue: (hostType, eventId, payload) => enqueue(x, hostType, eventId, payload),
        get size() {
          return depth.get(h.key) ?? 0;
        },
      };
      return q;
    },
    sender(backend, spec) {
      senders.set(backend, spec);
    },
    async start() {
      if (handlers.length === 0) return;
      for (const x of handlers) if (!senders.has(x.h.backend)) throw new Error(`the ${x.h.backend} backend gave no sender`);
      store = await o.open();
      const onReport = (m: unknown) => {
        if (!closed) applyReports(m, reporter);
      };
      try {
        if (o.senderThread === 'worker') {
          const sqlite = store as Partial<SqliteOutbox>;
          if (typeof sqlite.attach === 'function') {
            const ch = await sqlite.attach(new URL('./thread.ts', import.meta.url).href, threadInit(), onReport);
            remote = { request: (b) => ch.request(b), close: async () => {} };
          } else if (o.pgSettings !== undefined) {
            remote = await startPgThread({ settings: o.pgSettings, init: threadInit(), maxRows: o.batch?.maxRows, maxBytes: o.batch?.maxBytes }, onReport);
            nudges = new Set();
          } else throw new Error('sender_thread = "worker" needs the SQLite outbox or PostgreSQL settings');
        } else {
          const loop = createSendLoop({ store, reporter, pageSize: o.pageSize, pollMs: o.pollMs, now: o.now });
          const built = new Map<string, BackendSender>();
          for (const x of handlers) {
            const spec = senders.get(x.h.backend)!;
            let sender = built.get(x.h.backend);
            if (sender === undefined) built.set(x.h.backend, (sender = spec.local((r) => spec.onReport?.(r))));
            loop.add(x.h, sender);
          }
          local = loop;
        }
        await syncDepth();
        const orphans = [...depth].filter(([k, n]) => n > 0 && !byKey.has(k));
        if (orphans.length > 0) {
          log.warn({ what: 'event_pusher_outbox_orphans', handlers: Object.fromEntries(orphans) },
            'the outbox holds events of handlers that are no longer configured; they stay until such a handler is configured again');
        }
        if (local !== null) local.start();
        else await remote!.request({ type: 'start' });
      } catch (err) {
        await remote?.close();
        await store.close().catch(() => {});
        store = null;
        throw err;
      }
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
        else if (remote !== null) {
          await remote.request({ type: 'close', graceMs });
          await remote.close();
        }
      } catch (err) {
        log.error({ what: 'event_pusher_outbox_close_failed', err: String(err) }, 'the outbox sender did not stop cleanly');
      }
      closed = true;
      // Rows still claimed (waiting, or in flight past the grace) are released by the store.
      await store?.close();
    },
  };
}
