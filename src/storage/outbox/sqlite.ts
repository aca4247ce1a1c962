// The SQLite outbox as the server's thread sees it: appends and settle ops go
// through the group commit (group-commit.ts) and each batch is written by the
// writer thread (sqlite-worker.ts), one transaction per batch. Nothing here
// touches the disk on the calling thread. Two batches may be in flight at
// once: the thread writes them in order, and the second gathers while the
// first is posted.
import { Worker } from 'node:worker_threads';
import { GroupCommit } from './group-commit.ts';
import type { OutboxReply, OutboxRequest, OutboxWorkerData } from './sqlite-worker.ts';
import type { CheckpointerData } from './sqlite-checkpointer.ts';
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
  /**
   * ms between the checkpoints of the checkpointer thread
   * (sqlite-checkpointer.ts; DEFAULT_CHECKPOINT_MS); 0: none, the writer
   * thread checkpoints inside its commits as SQLite does by default.
   */
  checkpointMs?: number;
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

/** How often the checkpointer thread copies the write-ahead log back into the database. */
export const DEFAULT_CHECKPOINT_MS = 100;
/**
 * The writer's own automatic checkpoint while the checkpointer runs, in
 * pages (SQLite's default is 1,000): reached only if the checkpointer falls
 * far behind, so that the log stays bounded even then.
 */
const WRITER_AUTOCHECKPOINT_PAGES = 20_000;

/** Starts the checkpointer thread on `file`; resolves once its connection is open. */
async function startCheckpointer(file: string, intervalMs: number, warn: (message: string) => void): Promise<{ close(): Promise<void> }> {
  const w = new Worker(new URL('./sqlite-checkpointer.ts', import.meta.url), { workerData: { file, intervalMs } satisfies CheckpointerData });
  let lastError = '';
  await new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  });
  w.on('message', (m: { error?: string }) => {
    // One line per distinct error: a checkpoint that keeps failing the same way is said once.
    if (m.error !== undefined && m.error !== lastError) warn(`the outbox checkpointer could not checkpoint (the writer's own checkpoints bound the log meanwhile): ${(lastError = m.error)}`);
  });
  w.on('error', (err) => warn(`the outbox checkpointer thread failed (the writer checkpoints on its own from now on): ${String(err)}`));
  w.unref();
  return {
    async close() {
      const exited = new Promise<void>((r) => w.once('exit', () => r()));
      w.postMessage('close');
      const t = setTimeout(() => void w.terminate(), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** SQLITE_BUSY / SQLITE_LOCKED: another connection held the lock past the busy timeout; the rows are not at fault. */
const sqliteTransient = (err: Error) => /\b(locked|busy)\b/i.test(err.message);

/** Starts the writer thread on `file` (created, or its tables migrated, when needed). */
export async function openSqliteOutbox(file: string, o: SqliteOutboxOptions = {}): Promise<SqliteOutbox> {
  const checkpointMs = file === ':memory:' ? 0 : (o.checkpointMs ?? DEFAULT_CHECKPOINT_MS);
  const worker = new Worker(new URL('./sqlite-worker.ts', import.meta.url), {
    workerData: { file, synchronous: o.synchronous ?? 'NORMAL', autocheckpoint: checkpointMs > 0 ? WRITER_AUTOCHECKPOINT_PAGES : undefined } satisfies OutboxWorkerData,
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
  // After the writer's open: the file exists and is in WAL mode.
  let checkpointer: { close(): Promise<void> } | null = null;
  if (checkpointMs > 0) {
    try {
      checkpointer = await startCheckpointer(file, checkpointMs, (m) => o.onWarning?.('event_pusher_outbox_checkpoint_failed', m));
    } catch (err) {
      o.onWarning?.('event_pusher_outbox_checkpoint_failed', `the outbox checkpointer thread did not start (the writer checkpoints on its own): ${String(err)}`);
    }
  }

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
      await checkpointer?.close();
      try {
        if (broken === null) await request({ type: 'close' });
      } finally {
        await worker.terminate().catch(() => {});
      }
    },
  };
}
