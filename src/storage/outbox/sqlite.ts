// The SQLite outbox as the server's thread sees it: appends and settle ops go
// through the group commit (group-commit.ts) and each batch is written by the
// writer thread (sqlite-worker.ts), one transaction per batch. Nothing here
// touches the disk on the calling thread. Two batches may be in flight at
// once: the thread writes them in order, and the second gathers while the
// first is posted.
import { Worker } from 'node:worker_threads';
import { GroupCommit } from './group-commit.ts';
import type { OutboxReply, OutboxRequest, OutboxWorkerData } from './sqlite-worker.ts';
import { packBatch } from './packed.ts';
import type { BatchLimits, NewOutboxRow, OutboxRow, OutboxStore, SettleOp } from './types.ts';

export interface SqliteOutboxOptions extends BatchLimits {
  /**
   * NORMAL (the default, as the rest of the store): a commit survives the
   * process being killed; a power cut may lose the last ones. FULL also
   * survives a power cut, at the price of one fsync per batch.
   */
  synchronous?: 'NORMAL' | 'FULL';
  /** ms before settle ops whose write failed are tried again. */
  retryMs?: number;
  /** A write failed, or the thread reported a problem. */
  onWarning?(what: string, message: string): void;
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

type Unsequenced<T> = T extends unknown ? Omit<T, 'seq'> : never;

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

const payloadBytes = (r: NewOutboxRow) => r.payload.byteLength;
const rowOwner = (r: NewOutboxRow) => r.owner;

/** SQLITE_BUSY / SQLITE_LOCKED: another connection held the lock past the busy timeout; the rows are not at fault. */
const sqliteTransient = (err: Error) => /\b(locked|busy)\b/i.test(err.message);

/** Starts the writer thread on `file` (created, or its tables migrated, when needed). */
export async function openSqliteOutbox(file: string, o: SqliteOutboxOptions = {}): Promise<SqliteOutbox> {
  const worker = new Worker(new URL('./sqlite-worker.ts', import.meta.url), {
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

  const queue = new GroupCommit<NewOutboxRow, SettleOp>(
    (rows, ops) => {
      const packed = packBatch(rows, ops);
      return request<number[]>({ type: 'write', ...packed }, [packed.payloads]);
    },
    payloadBytes,
    {
      maxRows: o.maxRows,
      maxBytes: o.maxBytes,
      maxRowsPerOwner: o.maxRowsPerOwner,
      ownerOf: rowOwner,
      maxInFlight: 2,
      retryMs: o.retryMs,
      transient: sqliteTransient,
      onWriteFailed: (err, rows, ops) =>
        o.onWarning?.('event_pusher_outbox_write_failed', `could not write to the outbox (${rows} event(s), ${ops} settle op(s); kept or tried again): ${err.message}`),
    },
  );

  return {
    releasedAtOpen: released,
    append: (row) => queue.append(row),
    settle: (op) => queue.settle(op),
    async claim(handler, now, limit, maxBytes) {
      // Pending settle ops go first, so a row just rescheduled is seen as such.
      await queue.settled();
      return request<OutboxRow[]>({ type: 'claim', handler, now, limit, maxBytes });
    },
    async depth() {
      await queue.settled();
      return new Map(await request<Array<[string, number]>>({ type: 'depth' }));
    },
    async bytes() {
      await queue.settled();
      return request<number>({ type: 'bytes' });
    },
    async attach(url, init, onMessage) {
      onExt = onMessage;
      await request({ type: 'attach', url, init });
      return { request: <T>(body: unknown) => request<T>({ type: 'ext', body }) };
    },
    async close() {
      if (closed) return;
      await queue.drain();
      queue.close();
      closed = true;
      try {
        if (broken === null) await request({ type: 'close' });
      } finally {
        await worker.terminate().catch(() => {});
      }
    },
  };
}
