// The outbox's tables in the embedded SQLite store, and the synchronous SQL
// on one connection. The writer thread (sqlite-worker.ts) and `petrel
// deliveries` both use it on their own connection to the same file (WAL lets
// them run side by side).
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { migrateSqlite } from '../migrations.ts';
import { inTransaction } from '../sqlite.ts';
import { OUTBOX_BUSY_TIMEOUT_MS, outboxRowOf, type DeadLetter, type DeadLetterSelector, type HandlerCounts, type NewOutboxRow, type OutboxAdmin, type OutboxRow, type SettleOp } from './types.ts';

/**
 * Steps of the "outbox" component (see migrations.ts). The first adopts the
 * tables of servers that created them before versions were kept (the same
 * statements, all IF NOT EXISTS); the second moves rows to the opaque shape.
 */
export const SQLITE_OUTBOX_STEPS: readonly string[] = [
  `
  CREATE TABLE IF NOT EXISTS event_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handler TEXT NOT NULL,
    host_type TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    path TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
  );
  CREATE INDEX IF NOT EXISTS event_outbox_due ON event_outbox (handler, claimed, next_attempt_at);
  -- No index on the outbox's event id: nothing looks rows up by it, and its
  -- keys are hashes, so each insert and delete dirtied a page of its own.
  DROP INDEX IF EXISTS event_outbox_webhook_id;
  CREATE TABLE IF NOT EXISTS event_dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handler TEXT NOT NULL,
    host_type TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    path TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    dead_at INTEGER NOT NULL,
    last_error TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS event_dead_letter_webhook_id ON event_dead_letter (webhook_id);
  `,
  // Opaque payloads: the rows of the HTTP-shaped tables keep their ids,
  // attempts and times; path, headers and body become one payload in the
  // legacy layout the HTTP backend reads (0x00 path 0x00 headers-JSON 0x00 body).
  `
  ALTER TABLE event_outbox RENAME TO event_outbox_v1;
  ALTER TABLE event_dead_letter RENAME TO event_dead_letter_v1;
  DROP INDEX IF EXISTS event_outbox_due;
  DROP INDEX IF EXISTS event_dead_letter_webhook_id;
  CREATE TABLE event_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handler TEXT NOT NULL,
    host_type TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
  );
  CREATE INDEX event_outbox_due ON event_outbox (handler, claimed, next_attempt_at);
  CREATE TABLE event_dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handler TEXT NOT NULL,
    host_type TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    dead_at INTEGER NOT NULL,
    last_error TEXT NOT NULL
  );
  CREATE INDEX event_dead_letter_event_id ON event_dead_letter (event_id);
  INSERT INTO event_outbox (id, handler, host_type, event_id, payload, attempts, created_at, next_attempt_at, claimed, last_error)
    SELECT id, handler, host_type, webhook_id, CAST(CAST(X'00' || path || X'00' || headers || X'00' AS BLOB) || body AS BLOB),
           attempts, created_at, next_attempt_at, claimed, last_error
    FROM event_outbox_v1 ORDER BY id;
  INSERT INTO event_dead_letter (id, handler, host_type, event_id, payload, attempts, created_at, dead_at, last_error)
    SELECT id, handler, host_type, webhook_id, CAST(CAST(X'00' || path || X'00' || headers || X'00' AS BLOB) || body AS BLOB),
           attempts, created_at, dead_at, last_error
    FROM event_dead_letter_v1 ORDER BY id;
  DROP TABLE event_outbox_v1;
  DROP TABLE event_dead_letter_v1;
  `,
];

interface RawRow {
  id: number;
  handler: string;
  host_type: string;
  event_id: string;
  payload: Uint8Array;
  attempts: number;
  created_at: number;
}


/** Synchronous operations on the outbox tables of one connection; creates or migrates them first. */
export class OutboxTables {
  readonly db: DatabaseSync;
  readonly #q: Record<string, StatementSync>;

  constructor(db: DatabaseSync) {
    this.db = db;
    migrateSqlite(db, 'outbox', SQLITE_OUTBOX_STEPS);
    this.#q = {
      insert: db.prepare(
        `INSERT INTO event_outbox (handler, host_type, event_id, payload, attempts, created_at, next_attempt_at, claimed)
         VALUES (?, ?, ?, ?, 0, ?, ?, ?)`,
      ),
      due: db.prepare(
        `SELECT id, handler, host_type, event_id, payload, attempts, created_at FROM event_outbox
         WHERE handler = ? AND claimed = 0 AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`,
      ),
      claimOne: db.prepare('UPDATE event_outbox SET claimed = 1 WHERE id = ?'),
      // The sizes first (length() reads no payload), so that a claim bounded by bytes loads only what it takes.
      dueSizes: db.prepare(
        `SELECT id, length(payload) AS len FROM event_outbox
         WHERE handler = ? AND claimed = 0 AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`,
      ),
      byId: db.prepare('SELECT id, handler, host_type, event_id, payload, attempts, created_at FROM event_outbox WHERE id = ?'),
      delete: db.prepare('DELETE FROM event_outbox WHERE id = ?'),
      retry: db.prepare('UPDATE event_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, claimed = 0 WHERE id = ?'),
      release: db.prepare('UPDATE event_outbox SET claimed = 0 WHERE id = ?'),
      toDead: db.prepare(
        `INSERT INTO event_dead_letter (handler, host_type, event_id, payload, attempts, created_at, dead_at, last_error)
         SELECT handler, host_type, event_id, payload, ?, created_at, ?, ? FROM event_outbox WHERE id = ?`,
      ),
      releaseAll: db.prepare('UPDATE event_outbox SET claimed = 0 WHERE claimed = 1'),
      depth: db.prepare('SELECT handler, COUNT(*) AS n FROM event_outbox GROUP BY handler'),
      // length() of a BLOB reads its size from the record, not its content.
      bytes: db.prepare('SELECT COALESCE(SUM(length(payload)), 0) AS b FROM event_outbox'),
      counts: db.prepare(
        `SELECT handler, COUNT(*) AS queued, SUM(claimed) AS in_flight,
                SUM(CASE WHEN claimed = 0 AND attempts > 0 THEN 1 ELSE 0 END) AS retrying
         FROM event_outbox GROUP BY handler`,
      ),
      deadCounts: db.prepare('SELECT handler, COUNT(*) AS n FROM event_dead_letter GROUP BY handler'),
      deadList: db.prepare('SELECT event_id, handler, attempts, last_error, dead_at, created_at FROM event_dead_letter ORDER BY dead_at, id'),
    };
  }

  #tx<T>(fn: () => T): T {
    return inTransaction(this.db, fn);
  }

  /** Appends rows and applies settle ops in one transaction; returns the new rows' ids in order. */
  write(rows: readonly NewOutboxRow[], ops: readonly SettleOp[]): number[] {
    const q = this.#q;
    return this.#tx(() => {
      const ids: number[] = [];
      for (const r of rows) {
        const res = q.insert!.run(r.handler, r.hostType, r.eventId, r.payload, r.createdAt, r.createdAt, r.claimed ? 1 : 0);
        ids.push(Number(res.lastInsertRowid));
      }
      for (const o of ops) {
        switch (o.op) {
          case 'delivered':
            q.delete!.run(o.id);
            break;
          case 'retry':
            q.retry!.run(o.attempts, o.nextAt, o.error, o.id);
            break;
          case 'release':
            q.release!.run(o.id);
            break;
          case 'dead':
            q.toDead!.run(o.attempts, o.at, o.error, o.id);
            q.delete!.run(o.id);
            break;
        }
      }
      return ids;
    });
  }

  claim(handler: string, now: number, limit: number, maxBytes = Infinity): OutboxRow[] {
    const q = this.#q;
    return this.#tx(() => {
      let rows: OutboxRow[];
      if (maxBytes === Infinity) rows = (q.due!.all(handler, now, limit) as unknown as RawRow[]).map(outboxRowOf);
      else {
        rows = [];
        let bytes = 0;
        for (const s of q.dueSizes!.all(handler, now, limit) as Array<{ id: number; len: number }>) {
          if (bytes >= maxBytes) break;
          bytes += Number(s.len);
          rows.push(outboxRowOf(q.byId!.get(s.id) as unknown as RawRow));
        }
      }
      for (const r of rows) q.claimOne!.run(r.id);
      return rows;
    });
  }

  /** Claims left by a server that stopped or crashed go back to the queue. */
  releaseAll(): number {
    return Number(this.#tx(() => this.#q.releaseAll!.run()).changes);
  }

  depth(): Map<string, number> {
    const out = new Map<string, number>();
    for (const r of this.#q.depth!.all() as Array<{ handler: string; n: number }>) out.set(r.handler, Number(r.n));
    return out;
  }

  /** Payload bytes of every row. */
  bytes(): number {
    return Number((this.#q.bytes!.get() as { b: number }).b);
  }

  counts(): Map<string, HandlerCounts> {
    const out = new Map<string, HandlerCounts>();
    const get = (h: string) => {
      let c = out.get(h);
      if (c === undefined) out.set(h, (c = { queued: 0, inFlight: 0, retrying: 0, deadLettered: 0 }));
      return c;
    };
    // One read transaction, so the two tables are counted at the same instant.
    this.db.exec('BEGIN');
    try {
      for (const r of this.#q.counts!.all() as Array<{ handler: string; queued: number; in_flight: number; retrying: number }>) {
        const c = get(r.handler);
        c.queued = Number(r.queued);
        c.inFlight = Number(r.in_flight ?? 0);
        c.retrying = Number(r.retrying ?? 0);
      }
      for (const r of this.#q.deadCounts!.all() as Array<{ handler: string; n: number }>) get(r.handler).deadLettered = Number(r.n);
    } finally {
      this.db.exec('COMMIT');
    }
    return out;
  }

  deadLetters(): DeadLetter[] {
    return (this.#q.deadList!.all() as Array<{ event_id: string; handler: string; attempts: number; last_error: string; dead_at: number; created_at: number }>).map(
      (r) => ({
        eventId: r.event_id,
        handler: r.handler,
        attempts: Number(r.attempts),
        lastError: r.last_error,
        deadAt: Number(r.dead_at),
        createdAt: Number(r.created_at),
      }),
    );
  }

  #where(sel: DeadLetterSelector): { sql: string; args: string[] } {
    if ('all' in sel) return { sql: '', args: [] };
    return { sql: ` WHERE event_id IN (${sel.ids.map(() => '?').join(', ')})`, args: [...sel.ids] };
  }

  /**
   * Moves dead letters back to the outbox, due now with their attempts reset;
   * returns the event ids moved. A running server picks them up at its next poll.
   */
  replay(sel: DeadLetterSelector, now: number): string[] {
    if ('ids' in sel && sel.ids.length === 0) return [];
    const w = this.#where(sel);
    return this.#tx(() => {
      const ids = (this.db.prepare(`SELECT DISTINCT event_id FROM event_dead_letter${w.sql}`).all(...w.args) as Array<{ event_id: string }>).map((r) => r.event_id);
      this.db
        .prepare(
          `INSERT INTO event_outbox (handler, host_type, event_id, payload, attempts, created_at, next_attempt_at, claimed)
           SELECT handler, host_type, event_id, payload, 0, ?, ?, 0 FROM event_dead_letter${w.sql} ORDER BY id`,
        )
        .run(now, now, ...w.args);
      this.db.prepare(`DELETE FROM event_dead_letter${w.sql}`).run(...w.args);
      return ids;
    });
  }

  /** Deletes dead letters; returns the event ids deleted. */
  purge(sel: DeadLetterSelector): string[] {
    if ('ids' in sel && sel.ids.length === 0) return [];
    const w = this.#where(sel);
    return this.#tx(() => {
      const ids = (this.db.prepare(`SELECT DISTINCT event_id FROM event_dead_letter${w.sql}`).all(...w.args) as Array<{ event_id: string }>).map((r) => r.event_id);
      this.db.prepare(`DELETE FROM event_dead_letter${w.sql}`).run(...w.args);
      return ids;
    });
  }
}

/** `petrel deliveries` on the SQLite outbox: its own connection to `file`, beside a running server. */
export function openSqliteOutboxAdmin(file: string): OutboxAdmin {
  mkdirSync(dirname(file), { recursive: true });
  const db = new DatabaseSync(file, { timeout: OUTBOX_BUSY_TIMEOUT_MS });
  db.exec(`PRAGMA busy_timeout = ${OUTBOX_BUSY_TIMEOUT_MS}`);
  db.exec('PRAGMA journal_mode = WAL');
  const t = new OutboxTables(db);
  return {
    counts: async () => t.counts(),
    deadLetters: async () => t.deadLetters(),
    replay: async (sel, now) => t.replay(sel, now),
    purge: async (sel) => t.purge(sel),
    close: async () => t.db.close(),
  };
}
