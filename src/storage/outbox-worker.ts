// The outbox's writer thread: its own connection to the store file, so that
// no SQLite call (each one blocking) runs on the thread that reads sockets
// and routes stanzas. It answers one message at a time, in the order they
// were posted, which keeps a batch's appends and settle ops ordered against
// later claims.
import { parentPort, workerData } from 'node:worker_threads';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { OUTBOX_BUSY_TIMEOUT_MS, OutboxTables } from './outbox.ts';
import { unpackBatch, type PackedBatch } from './outbox-packed.ts';

export type OutboxRequest =
  | ({ type: 'write'; seq: number } & PackedBatch)
  | { type: 'claim'; seq: number; handler: string; now: number; limit: number }
  | { type: 'depth'; seq: number }
  | { type: 'close'; seq: number };

export type OutboxReply = { seq: number; ok: true; value: unknown } | { seq: number; ok: false; error: string };

export interface OutboxWorkerData {
  file: string;
  /** PRAGMA synchronous for this connection. */
  synchronous: 'NORMAL' | 'FULL';
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
  tables = new OutboxTables(db);
  const released = tables.releaseAll();
  port.postMessage({ seq: 0, ok: true, value: { released } } satisfies OutboxReply);
} catch (err) {
  port.postMessage({ seq: 0, ok: false, error: String(err) } satisfies OutboxReply);
  process.exit(1);
}

port.on('message', (m: OutboxRequest) => {
  let value: unknown;
  try {
    switch (m.type) {
      case 'write': {
        const b = unpackBatch(m);
        value = tables.write(b.rows, b.ops);
        break;
      }
      case 'claim':
        value = tables.claim(m.handler, m.now, m.limit);
        break;
      case 'depth':
        value = [...tables.depth()];
        break;
      case 'close':
        tables.releaseAll();
        tables.db.close();
        port.postMessage({ seq: m.seq, ok: true, value: null } satisfies OutboxReply);
        port.close();
        return;
    }
  } catch (err) {
    port.postMessage({ seq: m.seq, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies OutboxReply);
    return;
  }
  port.postMessage({ seq: m.seq, ok: true, value } satisfies OutboxReply);
});
