// The event pusher's durable outbox: requests waiting to be delivered to a
// webhook, and the dead-letter table of those that never were.
//
// `OutboxStore` is what the delivery engine codes against: the embedded
// SQLite store (outbox-sqlite.ts, writing from a worker thread) or
// PostgreSQL (outbox-postgres.ts), both with the same group commit of
// `append`. `OutboxAdmin` is what `petrel deliveries` uses on either.
//
// `OutboxTables` holds the synchronous SQL on one DatabaseSync; the worker
// thread and the `petrel deliveries` command both use it on their own
// connection to the same file (WAL lets them run side by side).
import type { DatabaseSync, StatementSync } from 'node:sqlite';

/** A request to store: everything needed to send it again after a restart. */
export interface NewOutboxRow {
  /** Stable key of the handler (see handlerKey in the event pusher). */
  handler: string;
  hostType: string;
  /** Standard Webhooks `webhook-id`, the same on every attempt. */
  webhookId: string;
  /** The handler's path; the pool adds its prefix. */
  path: string;
  /** Headers as name/value pairs, `webhook-id` included, signature headers not. */
  headers: Array<[string, string]>;
  /** `headers` as JSON, when the caller already has it (a store may use it instead of serialising them again). */
  headersJson?: string;
  body: Uint8Array;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** Taken by the running server at once (it sends it right after the commit). */
  claimed: boolean;
}

export interface OutboxRow {
  id: number;
  handler: string;
  hostType: string;
  webhookId: string;
  path: string;
  headers: Array<[string, string]>;
  body: Uint8Array;
  /** Attempts made so far. */
  attempts: number;
  createdAt: number;
}

/** What became of a claimed row. Applied in order, in one transaction with the appends of the same batch. */
export type SettleOp =
  | { op: 'delivered'; id: number }
  | { op: 'retry'; id: number; attempts: number; nextAt: number; error: string }
  | { op: 'dead'; id: number; attempts: number; error: string; at: number }
  | { op: 'release'; id: number };

export interface HandlerCounts {
  /** Rows in the outbox (waiting, retrying and in flight). */
  queued: number;
  /** Rows the running server has claimed: being sent, or about to be. */
  inFlight: number;
  /** Rows that failed at least once and wait for their next attempt. */
  retrying: number;
  deadLettered: number;
}

export interface DeadLetter {
  webhookId: string;
  handler: string;
  attempts: number;
  lastError: string;
  /** When it was dead-lettered (ms since the epoch). */
  deadAt: number;
  createdAt: number;
}

export interface OutboxStore {
  /**
   * Adds a row to the current batch; resolves with its id once the batch is
   * committed (group commit: one transaction per tick or per batch of rows).
   */
  append(row: NewOutboxRow): Promise<number>;
  /** Queues what became of claimed rows; written with the next batch. */
  settle(op: SettleOp): void;
  /** Claims up to `limit` unclaimed rows of `handler` due at `now`, oldest due first. */
  claim(handler: string, now: number, limit: number): Promise<OutboxRow[]>;
  /** Rows in the outbox per handler key. */
  depth(): Promise<Map<string, number>>;
  /** Commits what is pending, releases every claim and closes. */
  close(): Promise<void>;
}

/** What `petrel deliveries` reads and changes, whichever store holds the outbox. */
export interface OutboxAdmin {
  counts(): Promise<Map<string, HandlerCounts>>;
  deadLetters(): Promise<DeadLetter[]>;
  /** Moves dead letters back to the outbox, due at `now`, attempts reset; returns the webhook-ids moved. */
  replay(sel: DeadLetterSelector, now: number): Promise<string[]>;
  /** Deletes dead letters; returns the webhook-ids deleted. */
  purge(sel: DeadLetterSelector): Promise<string[]>;
  close(): Promise<void>;
}

/** Milliseconds a connection waits for another one's write lock. */
export const OUTBOX_BUSY_TIMEOUT_MS = 5000;

const SCHEMA = `
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
  -- No index on the outbox's webhook_id: nothing looks rows up by it, and
  -- its keys are hashes, so each insert and delete dirtied a page of its own
  -- (five times the cost of a write once a backlog builds up).
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
`;

/** Creates the outbox tables when missing, under the write lock so two processes cannot race. */
export function ensureOutboxSchema(db: DatabaseSync): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(SCHEMA);
    db.exec('COMMIT');
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

interface RawRow {
  id: number;
  handler: string;
  host_type: string;
  webhook_id: string;
  path: string;
  headers: string;
  body: Uint8Array;
  attempts: number;
  created_at: number;
}

function rowOf(r: RawRow): OutboxRow {
  return {
    id: Number(r.id),
    handler: r.handler,
    hostType: r.host_type,
    webhookId: r.webhook_id,
    path: r.path,
    headers: JSON.parse(r.headers) as Array<[string, string]>,
    body: r.body,
    attempts: Number(r.attempts),
    createdAt: Number(r.created_at),
  };
}

/** Selects dead letters by webhook-id, or all of them. */
export type DeadLetterSelector = { all: true } | { ids: readonly string[] };

/** Synchronous operations on the outbox tables of one connection. */
export class OutboxTables {
  readonly db: DatabaseSync;
  readonly #q: Record<string, StatementSync>;

  constructor(db: DatabaseSync) {
    this.db = db;
    ensureOutboxSchema(db);
    this.#q = {
      insert: db.prepare(
        `INSERT INTO event_outbox (handler, host_type, webhook_id, path, headers, body, attempts, created_at, next_attempt_at, claimed)
         VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)`,
      ),
      due: db.prepare(
        `SELECT id, handler, host_type, webhook_id, path, headers, body, attempts, created_at FROM event_outbox
         WHERE handler = ? AND claimed = 0 AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`,
      ),
      claimOne: db.prepare('UPDATE event_outbox SET claimed = 1 WHERE id = ?'),
      delete: db.prepare('DELETE FROM event_outbox WHERE id = ?'),
      retry: db.prepare('UPDATE event_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, claimed = 0 WHERE id = ?'),
      release: db.prepare('UPDATE event_outbox SET claimed = 0 WHERE id = ?'),
      toDead: db.prepare(
        `INSERT INTO event_dead_letter (handler, host_type, webhook_id, path, headers, body, attempts, created_at, dead_at, last_error)
         SELECT handler, host_type, webhook_id, path, headers, body, ?, created_at, ?, ? FROM event_outbox WHERE id = ?`,
      ),
      releaseAll: db.prepare('UPDATE event_outbox SET claimed = 0 WHERE claimed = 1'),
      depth: db.prepare('SELECT handler, COUNT(*) AS n FROM event_outbox GROUP BY handler'),
      counts: db.prepare(
        `SELECT handler, COUNT(*) AS queued, SUM(claimed) AS in_flight,
                SUM(CASE WHEN claimed = 0 AND attempts > 0 THEN 1 ELSE 0 END) AS retrying
         FROM event_outbox GROUP BY handler`,
      ),
      deadCounts: db.prepare('SELECT handler, COUNT(*) AS n FROM event_dead_letter GROUP BY handler'),
      deadList: db.prepare('SELECT webhook_id, handler, attempts, last_error, dead_at, created_at FROM event_dead_letter ORDER BY dead_at, id'),
    };
  }

  #tx<T>(fn: () => T): T {
    const db = this.db;
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

  /** Appends rows and applies settle ops in one transaction; returns the new rows' ids in order. */
  write(rows: readonly NewOutboxRow[], ops: readonly SettleOp[]): number[] {
    const q = this.#q;
    return this.#tx(() => {
      const ids: number[] = [];
      for (const r of rows) {
        const res = q.insert!.run(r.handler, r.hostType, r.webhookId, r.path, r.headersJson ?? JSON.stringify(r.headers), r.body, r.createdAt, r.createdAt, r.claimed ? 1 : 0);
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

  claim(handler: string, now: number, limit: number): OutboxRow[] {
    const q = this.#q;
    return this.#tx(() => {
      const rows = (q.due!.all(handler, now, limit) as unknown as RawRow[]).map(rowOf);
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
    return (this.#q.deadList!.all() as Array<{ webhook_id: string; handler: string; attempts: number; last_error: string; dead_at: number; created_at: number }>).map(
      (r) => ({
        webhookId: r.webhook_id,
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
    return { sql: ` WHERE webhook_id IN (${sel.ids.map(() => '?').join(', ')})`, args: [...sel.ids] };
  }

  /**
   * Moves dead letters back to the outbox, due now with their attempts reset;
   * returns the webhook-ids moved. A running server picks them up at its next poll.
   */
  replay(sel: DeadLetterSelector, now: number): string[] {
    if ('ids' in sel && sel.ids.length === 0) return [];
    const w = this.#where(sel);
    return this.#tx(() => {
      const ids = (this.db.prepare(`SELECT DISTINCT webhook_id FROM event_dead_letter${w.sql}`).all(...w.args) as Array<{ webhook_id: string }>).map((r) => r.webhook_id);
      this.db
        .prepare(
          `INSERT INTO event_outbox (handler, host_type, webhook_id, path, headers, body, attempts, created_at, next_attempt_at, claimed)
           SELECT handler, host_type, webhook_id, path, headers, body, 0, ?, ?, 0 FROM event_dead_letter${w.sql} ORDER BY id`,
        )
        .run(now, now, ...w.args);
      this.db.prepare(`DELETE FROM event_dead_letter${w.sql}`).run(...w.args);
      return ids;
    });
  }

  /** Deletes dead letters; returns the webhook-ids deleted. */
  purge(sel: DeadLetterSelector): string[] {
    if ('ids' in sel && sel.ids.length === 0) return [];
    const w = this.#where(sel);
    return this.#tx(() => {
      const ids = (this.db.prepare(`SELECT DISTINCT webhook_id FROM event_dead_letter${w.sql}`).all(...w.args) as Array<{ webhook_id: string }>).map((r) => r.webhook_id);
      this.db.prepare(`DELETE FROM event_dead_letter${w.sql}`).run(...w.args);
      return ids;
    });
  }
}
