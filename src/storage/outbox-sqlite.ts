// The SQLite outbox as the server's thread sees it: appends are gathered into
// batches and committed by the writer thread (outbox-worker.ts), one
// transaction per batch; every append of the batch resolves when that
// transaction is committed. Settle ops ride along with the next batch.
// Nothing here touches the disk on the calling thread.
//
// Group commit: one batch is being written at a time. What arrives while it
// is written waits and goes, all of it, in the next one, sent as soon as the
// first is committed. So when the load is light a row is sent at the next
// tick, and under heavy load the batches grow instead of the transactions
// (each costing a commit) multiplying. A batch of `maxBatch` rows is sent at
// once, whatever is in flight.
//
// Settle ops alone do not make a batch at once: they wait for the next rows,
// or SETTLE_DELAY_MS. Nobody waits for them, and should the process die
// meanwhile, the events they settle are sent again, as at-least-once allows
// (same webhook-id).
import { Worker } from 'node:worker_threads';
import type { NewOutboxRow, OutboxRow, OutboxStore, SettleOp } from './outbox.ts';
import type { OutboxReply, OutboxRequest, OutboxWorkerData } from './outbox-worker.ts';
import { packBatch, packOp } from './outbox-packed.ts';

export interface SqliteOutboxOptions {
  /** Rows that make a batch commit at once rather than at the next tick. */
  maxBatch?: number;
  /**
   * NORMAL (the default, as the rest of the store): a commit survives the
   * process being killed; a power cut may lose the last ones. FULL also
   * survives a power cut, at the price of one fsync per batch.
   */
  synchronous?: 'NORMAL' | 'FULL';
}

export interface SqliteOutbox extends OutboxStore {
  /** Claims found at start-up, left by a server that did not stop cleanly. */
  readonly releasedAtOpen: number;
  /**
   * Loads the module at `url` in the writer thread and calls its
   * `attachOutboxExtension(host, init)` (see OutboxExtension); what it posts
   * arrives at `onMessage`. Returns how to send it requests.
   */
  attach(url: string, init: unknown, onMessage: (m: unknown) => void): Promise<OutboxExtensionChannel>;
}

export interface OutboxExtensionChannel {
  request<T>(body: unknown): Promise<T>;
}

export const DEFAULT_MAX_BATCH = 512;
/** Longest a settle op waits for rows to ride with. */
export const SETTLE_DELAY_MS = 50;
/** Flattened settle ops that make a batch on their own at once. */
const MAX_OPS = 8192;

type Unsequenced<T> = T extends unknown ? Omit<T, 'seq'> : never;

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

/** Starts the writer thread on `file` (created with its tables when missing). */
export async function openSqliteOutbox(file: string, o: SqliteOutboxOptions = {}): Promise<SqliteOutbox> {
  const maxBatch = o.maxBatch ?? DEFAULT_MAX_BATCH;
  const worker = new Worker(new URL('./outbox-worker.ts', import.meta.url), {
    workerData: { file, synchronous: o.synchronous ?? 'NORMAL' } satisfies OutboxWorkerData,
  });
  const pending = new Map<number, Pending>();
  let seq = 0;
  let broken: Error | null = null;
  let closed = false;

  const fatal = (err: Error) => {
    if (broken !== null) return;
    broken = err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };

  const ready = new Promise<{ released: number }>((resolve, reject) => {
    pending.set(0, { resolve: resolve as (v: unknown) => void, reject });
  });
  // The thread keeps the process alive only while an answer is awaited.
  let onExt: ((m: unknown) => void) | null = null;
  worker.on('message', (r: OutboxReply) => {
    if ('ext' in r) {
      onExt?.(r.ext);
      return;
    }
    const p = pending.get(r.seq);
    if (p === undefined) return;
    pending.delete(r.seq);
    if (pending.size === 0) worker.unref();
    if (r.ok) p.resolve(r.value);
    else p.reject(new Error(r.error));
  });
  worker.on('error', (err) => fatal(err instanceof Error ? err : new Error(String(err))));
  worker.on('exit', (code) => {
    if (!closed || pending.size > 0) fatal(new Error(`outbox writer thread exited (code ${code})`));
  });
  const { released } = await ready;

  const request = <T>(m: Unsequenced<OutboxRequest>, transfer?: ArrayBuffer[]): Promise<T> => {
    if (broken !== null) return Promise.reject(broken);
    const s = ++seq;
    return new Promise<T>((resolve, reject) => {
      if (pending.size === 0) worker.ref();
      pending.set(s, { resolve: resolve as (v: unknown) => void, reject });
      (m as OutboxRequest).seq = s;
      worker.postMessage(m, transfer);
    });
  };

  let rows: NewOutboxRow[] = [];
  let waiters: Array<{ resolve(id: number): void; reject(e: Error): void }> = [];
  let ops: Array<number | string> = [];
  let scheduled = false;
  /** Write batches posted and not yet answered. */
  let writing = 0;
  let opsTimer: NodeJS.Timeout | null = null;
  /** Settle ops have waited SETTLE_DELAY_MS: the next chance to send them is taken. */
  let opsDue = false;
  const worth = () => rows.length > 0 || (ops.length > 0 && (opsDue || ops.length >= MAX_OPS));

  /** Sends what is gathered now, whatever is in flight (claims and close need their ops ahead of them). */
  const flush = () => {
    scheduled = false;
    opsDue = false;
    if (rows.length === 0 && ops.length === 0) return;
    const batchRows = rows;
    const batchWaiters = waiters;
    const packed = packBatch(batchRows, ops);
    rows = [];
    waiters = [];
    ops = [];
    writing++;
    request<number[]>({ type: 'write', ...packed }, [packed.bodies]).then(
      (ids) => {
        writing--;
        for (let i = 0; i < batchWaiters.length; i++) batchWaiters[i]!.resolve(ids[i]!);
        if (writing === 0 && worth()) flush();
      },
      (err: Error) => {
        writing--;
        for (const w of batchWaiters) w.reject(err);
        if (writing === 0 && worth()) flush();
      },
    );
  };

  /** Sends the gathered rows at the next tick, or when the batch in flight is committed. */
  const tick = () => {
    scheduled = false;
    if (writing === 0 && worth()) flush();
  };

  const opsWaited = () => {
    opsTimer = null;
    if (ops.length === 0) return;
    opsDue = true;
    if (writing === 0) flush();
  };

  const schedule = () => {
    if (!scheduled && writing === 0) {
      scheduled = true;
      setImmediate(tick);
    }
  };

  return {
    releasedAtOpen: released,
    append(row) {
      if (closed) return Promise.reject(new Error('outbox is closed'));
      return new Promise<number>((resolve, reject) => {
        rows.push(row);
        waiters.push({ resolve, reject });
        if (rows.length >= maxBatch) flush();
        else schedule();
      });
    },
    settle(op) {
      if (closed) return;
      packOp(ops, op);
      if (ops.length >= MAX_OPS) schedule();
      else if (opsTimer === null) {
        opsTimer = setTimeout(opsWaited, SETTLE_DELAY_MS);
        opsTimer.unref();
      }
    },
    claim(handler, now, limit) {
      // Pending settle ops go first, so a row just rescheduled is seen as such.
      flush();
      return request<OutboxRow[]>({ type: 'claim', handler, now, limit });
    },
    async depth() {
      flush();
      return new Map(await request<Array<[string, number]>>({ type: 'depth' }));
    },
    async attach(url, init, onMessage) {
      onExt = onMessage;
      await request({ type: 'attach', url, init });
      return { request: <T>(body: unknown) => request<T>({ type: 'ext', body }) };
    },
    async close() {
      if (closed) return;
      if (opsTimer !== null) clearTimeout(opsTimer);
      flush();
      closed = true;
      try {
        if (broken === null) await request({ type: 'close' });
      } finally {
        await worker.terminate().catch(() => {});
      }
    },
  };
}
