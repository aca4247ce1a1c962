// At-least-once delivery for every backend: each event is written to the
// outbox before the sender's message moves on, then sent from there by the
// backend's sender, retried with backoff, and moved to the dead-letter table
// when it runs out of attempts or of age (engine.ts).
//
// This is the server thread's half: it takes events (refusing them beyond
// outbox_max_events or outbox_max_bytes, and beyond a sender's share,
// outbox_max_events_per_user / outbox_max_bytes_per_user), keeps the depth
// per handler, writes the rows (an event that would take the outbox past
// its ceiling, outbox_high_water_bytes, waits for room first: flow.ts),
// and puts the sending half where
// sender_thread says:
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
import { logLimiter } from './log-limit.ts';
import type { FlowControl } from './flow.ts';
import type { BackendSender, BackendSenderSpec, DurableQueue, EngineHandler, EnqueueRefusal, HandlerEvents, OutboxAccess } from './types.ts';

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
  /** The PostgreSQL outbox's ownerTimeoutMs, for the sender thread's own connections. */
  pgOwnerTimeoutMs?: number;
  batch?: BatchLimits;
  logger: Logger;
  metrics: DeliveryMetrics;
  /** Rows of all handlers together beyond which new events are refused. */
  maxEvents: number;
  /** Payload bytes of all rows together beyond which new events are refused. */
  maxBytes?: number;
  /** One sender's share: rows and payload bytes of its events waiting at most (every handler together). */
  perUser?: { maxEvents: number; maxBytes: number };
  /** Slows the senders whose events wait past the high-water mark (flow.ts); needs perUser, which keeps the shares. */
  flow?: FlowControl;
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

/** What one sender has waiting in the outbox, of the events this server took. */
interface Share {
  owner: string;
  rows: number;
  bytes: number;
  /** Kept by the flow control. */
  throttled?: boolean;
}

/** An event taken but not written yet: it would have passed the outbox's ceiling (flow.ts). */
interface Waiting {
  x: Registered;
  hostType: string;
  eventId: string;
  payload: Uint8Array;
  owner: string | undefined;
  share: Share | undefined;
  /** Resolves once the event is written (or its write failed). */
  done: () => void;
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
  /** The engine when it runs on this thread. */
  let local: SendLoop | null = null;
  /** How to reach the engine in a thread. */
  let remote: Channel | null = null;
  /** PostgreSQL and a sender thread: handlers with rows committed since the last nudge. */
  let nudges: Set<string> | null = null;
  let nudgeScheduled = false;

  /** Payload bytes in the outbox, kept up to date here and re-read with the depth. */
  let totalBytes = 0;
  let bytesSinceSync: number | null = null;
  const maxBytes = o.maxBytes ?? Infinity;
  /** Each sender's waiting events, and the share of each row this server wrote (by row id) until it leaves. */
  const shares = new Map<string, Share>();
  const rowShares = new Map<number, { share: Share; bytes: number }>();
  /** Events waiting for room below the ceiling, in the order they came (from `waitHead` on), and their payload bytes. */
  let waiting: Array<Waiting | undefined> = [];
  let waitHead = 0;
  let waitingBytes = 0;
  /** Rows of handlers not configured here (re-read with the depth): nobody here sends them. */
  let orphanRows = 0;

  const bump = (key: string, d: number, bytes: number) => {
    depth.set(key, (depth.get(key) ?? 0) + d);
    total += d;
    totalBytes += bytes;
    if (sinceSync !== null) sinceSync.set(key, (sinceSync.get(key) ?? 0) + d);
    if (bytesSinceSync !== null) bytesSinceSync += bytes;
  };

  const flow = o.flow;
  flow?.bytes(() => totalBytes);

  /** Writes the events waiting for room, in order, while they fit (all of them: `force`, at close). */
  const release = (force: boolean) => {
    while (waitHead < waiting.length) {
      const w = waiting[waitHead]!;
      const size = w.payload.byteLength;
      if (!force && flow !== undefined && !flow.fits(size, totalBytes, total - orphanRows)) break;
      waiting[waitHead++] = undefined;
      waitingBytes -= size;
      void write(w.x, w.hostType, w.eventId, w.payload, w.owner, w.share).then(w.done);
    }
    if (waitHead === waiting.length) {
      waiting = [];
      waitHead = 0;
    } else if (waitHead > 1024 && waitHead * 2 > waiting.length) {
      waiting = waiting.slice(waitHead);
      waitHead = 0;
    }
  };

  const unshare = (share: Share, bytes: number) => {
    share.rows--;
    share.bytes -= bytes;
    const gone = share.rows <= 0;
    if (gone) shares.delete(share.owner);
    flow?.removed(share, bytes, gone, totalBytes, total);
  };

  const reporter: EngineReporter = {
    metrics: o.metrics,
    attempted: (gi, item, r, report) => handlers[gi]?.events.attempted(item, r, report),
    removed: (gi, id, bytes) => {
      const x = handlers[gi];
      if (x !== undefined) bump(x.h.key, -1, -bytes);
      const s = rowShares.get(id);
      if (s !== undefined) {
        rowShares.delete(id);
        unshare(s.share, s.bytes);
      } else flow?.removed(undefined, 0, false, totalBytes, total);
      if (waitHead < waiting.length) release(false);
    },
    senderReport: (backend, r) => senders.get(backend)?.onReport?.(r),
    log,
  };

  const syncDepth = async () => {
    if (sinceSync !== null || store === null) return;
    sinceSync = new Map();
    bytesSinceSync = 0;
    try {
      const [fresh, bytes] = await Promise.all([store.depth(), store.bytes?.()]);
      const delta = sinceSync;
      depth.clear();
      total = 0;
      for (const [k, n] of fresh) depth.set(k, n);
      for (const [k, d] of delta) depth.set(k, (depth.get(k) ?? 0) + d);
      orphanRows = 0;
      for (const [k, n] of depth) {
        total += n;
        if (!byKey.has(k)) orphanRows += n;
      }
      if (bytes !== undefined) {
        totalBytes = bytes + bytesSinceSync;
        flow?.synced(totalBytes, total);
      }
      if (waitHead < waiting.length) release(closing);
    } catch (err) {
      if (!closed) log.error({ what: 'event_pusher_outbox_read_failed', err: String(err) }, 'could not read the outbox depth');
    } finally {
      sinceSync = null;
      bytesSinceSync = null;
    }
    for (const x of handlers) o.metrics.depth(handlerLabel(x.h), depth.get(x.h.key) ?? 0);
  };

  const poll = () => {
    polls++;
    if (polls % DEPTH_SYNC_EVERY === 0) void syncDepth();
    else for (const x of handlers) o.metrics.depth(handlerLabel(x.h), depth.get(x.h.key) ?? 0);
  };

  // One line per second at most for each kind of refusal: at the cap, every
  // message would log otherwise; the rest of each second is counted in a
  // summary line when it ends.
  let fullLine: { backend: string; handler: number } = { backend: '', handler: 0 };
  const fullLog = logLimiter((rejected, windowMs) =>
    log.warn({ what: 'event_pusher_outbox_full', backend: fullLine.backend, handler: fullLine.handler, rejected, window_ms: windowMs, outbox_max_events: o.maxEvents, outbox_max_bytes: o.maxBytes },
      'the outbox is full: new events are not kept (messages are still routed)'),
  );
  let shareLine: { backend: string; handler: number; owner: string } = { backend: '', handler: 0, owner: '' };
  const shareLog = logLimiter((rejected, windowMs) =>
    log.warn({ what: 'event_pusher_outbox_user_full', backend: shareLine.backend, handler: shareLine.handler, user: shareLine.owner, rejected, window_ms: windowMs, ...perUserFields() },
      "a sender's share of the outbox is used up: its new events are refused"),
  );
  const perUserFields = () => ({ outbox_max_events_per_user: o.perUser?.maxEvents, outbox_max_bytes_per_user: o.perUser?.maxBytes });

  const reject = (x: Registered, hostType: string, eventId: string): EnqueueRefusal => {
    o.metrics.rejected(hostType, handlerLabel(x.h));
    x.events.dropped(hostType, eventId, 'outbox_full');
    fullLine = { backend: x.h.backend, handler: x.h.index };
    if (fullLog.admit()) {
      log.warn({ what: 'event_pusher_outbox_full', backend: x.h.backend, handler: x.h.index, rejected: 1, outbox_max_events: o.maxEvents, outbox_max_bytes: o.maxBytes, events: total, bytes: totalBytes },
        'the outbox is full: new events are not kept (messages are still routed)');
    }
    return 'outbox_full';
  };

  const rejectShare = (x: Registered, hostType: string, eventId: string, owner: string): EnqueueRefusal => {
    o.metrics.userRejected(hostType, handlerLabel(x.h));
    x.events.dropped(hostType, eventId, 'user_full');
    shareLine = { backend: x.h.backend, handler: x.h.index, owner };
    if (shareLog.admit()) {
      log.warn({ what: 'event_pusher_outbox_user_full', backend: x.h.backend, handler: x.h.index, user: owner, rejected: 1, ...perUserFields() },
        "a sender's share of the outbox is used up: its new events are refused");
    }
    return 'user_full';
  };

  const sendNudges = () => {
    nudgeScheduled = false;
    if (nudges === null || nudges.size === 0 || remote === null) return;
    const keys = [...nudges];
    nudges.clear();
    remote.request({ type: 'nudge', keys }).catch(() => {});
  };

  const enqueue = (x: Registered, hostType: string, eventId: string, payload: Uint8Array, owner: string | undefined): Promise<void> | EnqueueRefusal => {
    if (closing || store === null) {
      x.events.dropped(hostType, eventId, 'closed');
      return 'closed';
    }
    const size = payload.byteLength;
    // The events waiting for room were taken: they count against the bound.
    if (total >= o.maxEvents || (totalBytes + waitingBytes + size > maxBytes && total > 0)) return reject(x, hostType, eventId);
    let share: Share | undefined;
    if (owner !== undefined && o.perUser !== undefined) {
      share = shares.get(owner);
      // A first event larger than the byte share still goes: the share bounds what waits, not one event.
      if (share !== undefined && (share.rows >= o.perUser.maxEvents || share.bytes + size > o.perUser.maxBytes)) return rejectShare(x, hostType, eventId, owner);
      if (share === undefined) shares.set(owner, (share = { owner, rows: 0, bytes: 0 }));
      share.rows++;
      share.bytes += size;
    }
    // Behind events already waiting, or past the ceiling: the event waits for room (flow.ts).
    if (flow !== undefined && (waitHead < waiting.length || !flow.fits(size, totalBytes, total - orphanRows))) {
      waitingBytes += size;
      flow.waited();
      if (share !== undefined) flow.enqueued(share, size, totalBytes + waitingBytes, total, shares.size);
      return new Promise<void>((done) => {
        waiting.push({ x, hostType, eventId, payload, owner, share, done });
      });
    }
    const p = write(x, hostType, eventId, payload, owner, share);
    if (share !== undefined) flow?.enqueued(share, size, totalBytes, total, shares.size);
    return p;
  };

  /** Writes an event taken (and counted in `share`); resolves once it is committed, or its write failed. */
  const write = (x: Registered, hostType: string, eventId: string, payload: Uint8Array, owner: string | undefined, share: Share | undefined): Promise<void> => {
    const size = payload.byteLength;
    const key = x.h.key;
    // In the SQLite writer thread, the engine there decides whether the row is claimed.
    const loop = local;
    const hot = loop !== null && loop.admit(key, size);
    bump(key, 1, size);
    const row: NewOutboxRow = { handler: key, hostType, eventId, payload, createdAt: now(), claimed: hot, owner };
    return store!.append(row).then(
      (id) => {
        if (share !== undefined) rowShares.set(id, { share, bytes: size });
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
        loop?.writeFailed(key, hot, size);
        bump(key, -1, -size);
        if (share !== undefined) unshare(share, size);
        log.error({ what: 'event_pusher_outbox_write_failed', backend: x.h.backend, handler: x.h.index, webhook_id: eventId, err: String(err) },
          'could not write an event to the outbox; it is lost');
        x.events.dropped(hostType, eventId, 'store_error');
        if (waitHead < waiting.length) release(closing);
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
    pageBytes: o.batch?.maxBytes,
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
        enqueue: (hostType, eventId, payload, owner) => enqueue(x, hostType, eventId, payload, owner),
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
            remote = await startPgThread({ settings: o.pgSettings, init: threadInit(), maxRows: o.batch?.maxRows, maxBytes: o.batch?.maxBytes, maxRowsPerOwner: o.batch?.maxRowsPerOwner, ownerTimeoutMs: o.pgOwnerTimeoutMs }, onReport);
            nudges = new Set();
          } else throw new Error('sender_thread = "worker" needs the SQLite outbox or PostgreSQL settings');
        } else {
          const loop = createSendLoop({ store, reporter, pageSize: o.pageSize, pageBytes: o.batch?.maxBytes, pollMs: o.pollMs, now: o.now });
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
      // Taken, so written: past the ceiling if need be, rather than lost.
      release(true);
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
      flow?.close();
      fullLog.flush();
      shareLog.flush();
      // Rows still claimed (waiting, or in flight past the grace) are released by the store.
      await store?.close();
    },
  };
}
