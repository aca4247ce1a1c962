// The SQLite outbox's checkpointer thread: its own connection to the store
// file, copying the write-ahead log back into the database (a PASSIVE
// checkpoint, RFC-free: https://sqlite.org/wal.html#checkpointing) every
// intervalMs. A checkpoint ends with an fsync of the database file; run by
// the writer thread itself (SQLite's automatic checkpoint, inside the commit
// that crosses wal_autocheckpoint pages) it stalled that commit, and every
// message and delivery queued behind it, by several milliseconds a few times
// a second under a steady load. Here it runs beside the writer: in WAL mode a
// passive checkpoint never blocks a writer, and a writer never waits for it.
// The writer keeps a much higher automatic threshold as a safety net, should
// this thread fall behind.
import { parentPort, workerData } from 'node:worker_threads';
import { DatabaseSync } from 'node:sqlite';
import { OUTBOX_BUSY_TIMEOUT_MS } from './types.ts';

export interface CheckpointerData {
  file: string;
  intervalMs: number;
}

const port = parentPort!;
const data = workerData as CheckpointerData;
const db = new DatabaseSync(data.file, { timeout: OUTBOX_BUSY_TIMEOUT_MS });
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

const timer = setInterval(() => {
  try {
    checkpoint.get();
  } catch (err) {
    port.postMessage({ error: String(err) });
  }
}, data.intervalMs);

port.on('message', (m: unknown) => {
  if (m !== 'close') return;
  clearInterval(timer);
  try {
    db.close();
  } finally {
    port.postMessage({ closed: true });
    port.close();
  }
});
port.postMessage({ ready: true });
