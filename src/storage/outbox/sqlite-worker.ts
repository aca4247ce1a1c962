// The SQLite outbox's writer thread: its own connection to the store file, so
// that no SQLite call (each one blocking) runs on the thread that reads
// sockets and routes stanzas. It answers the store's messages one at a time,
// in the order they were posted, which keeps a batch's appends and settle
// ops ordered against later claims.
//
// A caller may attach an extension (a module URL, loaded here) that works on
// the rows where they already are: mod_event_pusher runs its delivery engine
// here (sender_thread = "worker"). The storage layer knows nothing of what
// the extension does; it gives it the tables, through the same group commit
// and failure policy as the server's thread (group-commit.ts), and a channel.
import { parentPort, workerData } from 'node:worker_threads';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { GroupCommit } from './group-commit.ts';
import { OutboxTables } from './sqlite-tables.ts';
import { OUTBOX_BUSY_TIMEOUT_MS, type NewOutboxRow, type OutboxRow, type SettleOp } from './types.ts';
import { unpackBatch, type PackedBatch } from './packed.ts';

export type OutboxRequest =
  | ({ type: 'write'; seq: number } & PackedBatch)
  | { type: 'claim'; seq: number; handler: string; now: number; limit: number; maxBytes?: number }
  | { type: 'depth'; seq: number }
  | { type: 'bytes'; seq: number }
  | { type: 'attach'; seq: number; url: string; init: unknown }
  | { type: 'ext'; seq: number; body: unknown }
  | { type: 'close'; seq: number };

/** Answers carry the request's seq; what an extension posts on its own carries `ext`. */
export type OutboxReply = { seq: number; ok: true; value: unknown } | { seq: number; ok: false; error: string } | { ext: unknown };

export interface OutboxWorkerData {
  file: string;
  /** PRAGMA synchronous for this connection. */
  synchronous: 'NORMAL' | 'FULL';
  /** PRAGMA wal_autocheckpoint for this connection (pages); absent: SQLite's default. */
  autocheckpoint?: number;
}

/** What an outbox thread offers an extension: claims and settles on the store, and a channel to the server's thread. */
export interface OutboxHost {
  /** Queued; written within SETTLE_DELAY_MS, kept and retried when a write fails. */
  settle(op: SettleOp): void;
  /** Writes the queued settle ops, then claims (see OutboxStore.claim). */
  claim(handler: string, now: number, limit: number, maxBytes?: number): Promise<OutboxRow[]>;
  depth(): Promise<Map<string, number>>;
  /** Sends a message to the server thread (the `onMessage` given to attach). */
  post(message: unknown): void;
}

/** What an extension module's `attachOutboxExtension(host, init)` returns. */
export interface OutboxExtension {
  /** Before a batch of new rows is written: may set their `claimed`. */
  beforeWrite(rows: NewOutboxRow[]): void;
  /** The batch is committed; `ids` in the order of `rows`. */
  afterWrite(rows: NewOutboxRow[], ids: number[]): void;
  /** The batch could not be written (the server's thread retries or refuses its rows). */
  writeFailed(rows: NewOutboxRow[]): void;
  /** A request from the server thread; its answer goes back to it. */
  request(body: unknown): unknown;
}

const port = parentPort!;
const data = workerData as OutboxWorkerData;

let tables: OutboxTables;
try {
  if (data.file !== ':memory:') mkdirSync(dirname(data.file), { recursive: true });
  const db = new DatabaseSync(data.file, { timeout: OUTBOX_BUSY_TIMEOUT_MS });
  db.exec(`PRAGMA busy_timeout = ${OUTBOX_BUSY_TIMEOUT_MS}`);
  db.exec('PRAGMA journal_mode = WAL');
  db.exec(`PRAGMA synchronous = ${data.synchronous}`);
  // The checkpoints are sqlite-checkpointer.ts's; this one is only a safety net.
  if (data.autocheckpoint !== undefined) db.exec(`PRAGMA wal_autocheckpoint = ${Math.max(0, Math.floor(data.autocheckpoint))}`);
  tables = new OutboxTables(db);
  const released = tables.releaseAll();
  port.postMessage({ seq: 0, ok: true, value: { released } } satisfies OutboxReply);
} catch (err) {
  port.postMessage({ seq: 0, ok: false, error: String(err) } satisfies OutboxReply);
  process.exit(1);
}

let ext: OutboxExtension | null = null;
let closed = false;

// The extension's settle ops: the same queue and policy as the server thread's.
const extQueue = new GroupCommit<never, SettleOp>(
  async (_rows, ops) => {
    if (!closed) tables.write([], ops);
    return [];
  },
  () => 0,
  {
    onWriteFailed: (err) => port.postMessage({ ext: { type: 'store_error', error: err.message } } satisfies OutboxReply),
  },
);

const host: OutboxHost = {
  settle: (op) => extQueue.settle(op),
  async claim(handler, now, limit, maxBytes) {
    await extQueue.settled();
    return tables.claim(handler, now, limit, maxBytes);
  },
  async depth() {
    await extQueue.settled();
    return tables.depth();
  },
  post(message) {
    port.postMessage({ ext: message } satisfies OutboxReply);
  },
};

const reply = (seq: number, value: unknown) => port.postMessage({ seq, ok: true, value } satisfies OutboxReply);
const replyError = (seq: number, err: unknown) =>
  port.postMessage({ seq, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies OutboxReply);

/** Answers once `value` settles (an extension's answers may take time). */
const replyLater = (seq: number, value: unknown) => {
  if (value instanceof Promise) value.then((v) => reply(seq, v), (e) => replyError(seq, e));
  else reply(seq, value);
};

port.on('message', (m: OutboxRequest) => {
  let value: unknown;
  try {
    switch (m.type) {
      case 'write': {
        const b = unpackBatch(m);
        if (ext !== null && b.rows.length > 0) {
          ext.beforeWrite(b.rows);
          let ids: number[];
          try {
            ids = tables.write(b.rows, b.ops);
          } catch (err) {
            ext.writeFailed(b.rows);
            throw err;
          }
          // Committed: whatever the extension does next, the rows are kept.
          // The server's thread is answered first: it routes the batch's
          // messages on this answer, and they do not wait for the sends the
          // extension starts with the rows.
          reply(m.seq, ids);
          try {
            ext.afterWrite(b.rows, ids);
          } catch (err) {
            host.post({ type: 'error', error: String(err) });
          }
          return;
        }
        value = tables.write(b.rows, b.ops);
        break;
      }
      case 'claim':
        replyLater(m.seq, host.claim(m.handler, m.now, m.limit, m.maxBytes));
        return;
      case 'depth':
        replyLater(m.seq, host.depth().then((d) => [...d]));
        return;
      case 'bytes':
        replyLater(m.seq, extQueue.settled().then(() => tables.bytes()));
        return;
      case 'attach': {
        const seq = m.seq;
        import(m.url).then(
          async (mod: { attachOutboxExtension(h: OutboxHost, init: unknown): OutboxExtension | Promise<OutboxExtension> }) => {
            ext = await mod.attachOutboxExtension(host, m.init);
            reply(seq, null);
          },
          (err) => replyError(seq, err),
        );
        return;
      }
      case 'ext':
        if (ext === null) throw new Error('no extension attached');
        replyLater(m.seq, ext.request(m.body));
        return;
      case 'close': {
        const seq = m.seq;
        extQueue.drain().then(() => {
          closed = true;
          extQueue.close();
          try {
            tables.releaseAll();
            tables.db.close();
            reply(seq, null);
          } catch (err) {
            replyError(seq, err);
          }
          port.close();
        });
        return;
      }
    }
  } catch (err) {
    replyError(m.seq, err);
    return;
  }
  reply(m.seq, value);
});
