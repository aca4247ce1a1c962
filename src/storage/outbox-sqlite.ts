// The SQLite outbox as the server's thread sees it: appends are gathered into
// one batch per tick (or per `maxBatch` rows) and committed by the writer
// thread (outbox-worker.ts) in one transaction; every append of the batch
// resolves when that transaction is committed. Settle ops ride along with
// the next batch. Nothing here touches the disk on the calling thread.
import { Worker } from 'node:worker_threads';
import type { NewOutboxRow, OutboxRow, OutboxStore, SettleOp } from './outbox.ts';
import type { OutboxReply, OutboxRequest, OutboxWorkerData } from './outbox-worker.ts';

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
}

export const DEFAULT_MAX_BATCH = 512;

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
  worker.on('message', (r: OutboxReply) => {
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

  const request = <T>(m: Unsequenced<OutboxRequest>): Promise<T> => {
    if (broken !== null) return Promise.reject(broken);
    const s = ++seq;
    return new Promise<T>((resolve, reject) => {
      if (pending.size === 0) worker.ref();
      pending.set(s, { resolve: resolve as (v: unknown) => void, reject });
      worker.postMessage({ ...m, seq: s } as OutboxRequest);
    });
  };

  let rows: NewOutboxRow[] = [];
  let waiters: Array<{ resolve(id: number): void; reject(e: Error): void }> = [];
  let ops: SettleOp[] = [];
  let scheduled = false;

  const flush = () => {
    scheduled = false;
    if (rows.length === 0 && ops.length === 0) return;
    const batchRows = rows;
    const batchWaiters = waiters;
    const batchOps = ops;
    rows = [];
    waiters = [];
    ops = [];
    request<number[]>({ type: 'write', rows: batchRows, ops: batchOps }).then(
      (ids) => {
        for (let i = 0; i < batchWaiters.length; i++) batchWaiters[i]!.resolve(ids[i]!);
      },
      (err: Error) => {
        for (const w of batchWaiters) w.reject(err);
      },
    );
  };

  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
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
      ops.push(op);
      schedule();
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
    async close() {
      if (closed) return;
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
