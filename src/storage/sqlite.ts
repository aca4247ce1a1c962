// The embedded database: one SQLite file per server instance, opened with
// node:sqlite. WAL mode lets the command-line tool register users while the
// server keeps the file open; busy_timeout makes either side wait for the
// other's short write transactions instead of failing at once. The file
// holds every "internal" store: the accounts and each module's tables, each
// migrated by its owner (src/storage/migrations.ts).
import { chmodSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { ensurePrivateDir, ensurePrivateFile, PRIVATE_FILE_MODE } from './data-dir.ts';

/** Milliseconds a connection waits for another one's write lock. */
export const BUSY_TIMEOUT_MS = 5000;

/**
 * Opens (creating when needed) the SQLite database at `file`: its directory
 * 0700, the file and its -wal and -shm companions 0600, WAL mode, NORMAL
 * synchronous, foreign keys on and a busy timeout. No tables: each owner
 * migrates its own.
 */
export function openSqliteDatabase(file: string): DatabaseSync {
  if (file !== ':memory:') {
    ensurePrivateDir(dirname(file));
    // Created 0600 before SQLite opens it: SQLite gives the -wal and -shm
    // files it creates the mode of the main file.
    ensurePrivateFile(file);
  }
  const db = new DatabaseSync(file, { timeout: BUSY_TIMEOUT_MS });
  try {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // Switching a new file to WAL takes an exclusive lock and, when two
    // processes open the file at once, can fail at once with SQLITE_BUSY
    // instead of waiting; retry for a while (start-up only).
    untilNotBusy(() => db.exec('PRAGMA journal_mode = WAL'));
    // NORMAL in WAL mode: a power cut may lose the last commits but never corrupts the file.
    db.exec('PRAGMA synchronous = NORMAL');
    db.exec('PRAGMA foreign_keys = ON');
    if (file !== ':memory:') {
      // Companions left by an earlier release, made under a permissive umask.
      for (const f of [`${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, PRIVATE_FILE_MODE);
    }
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** Folds the WAL back into the main file, so a stopped server leaves one file behind, and closes. */
export function closeSqliteDatabase(db: DatabaseSync): void {
  if (!db.isOpen) return;
  try {
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}

/** Runs `fn` inside a write transaction, taking the lock up front so that a concurrent writer waits (busy_timeout) rather than deadlocks. */
export function inTransaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const r = fn();
    db.exec('COMMIT');
    return r;
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

function untilNotBusy(fn: () => void, deadlineMs = BUSY_TIMEOUT_MS): void {
  const end = Date.now() + deadlineMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      fn();
      return;
    } catch (err) {
      const busy = /locked|busy/i.test((err as Error).message);
      if (!busy || Date.now() >= end) throw err;
      Atomics.wait(pause, 0, 0, 20);
    }
  }
}
