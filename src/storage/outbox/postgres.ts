// The outbox in PostgreSQL: the same contract as the SQLite one (types.ts).
// The group commit (group-commit.ts) hands each batch to `write`: its rows
// as one multi-row INSERT, in one transaction with its settle ops. Claims
// take due rows with FOR UPDATE SKIP LOCKED, so several servers may share
// the tables without taking the same row twice.
//
// A claim is marked with its owner: the application_name of this outbox's
// own connections. A server that dies leaves its claims behind; they go back
// to the queue once no connection with that name is left in
// pg_stat_activity, checked when an outbox opens and every few seconds.
// A process killed on a live host is gone from there at once (the kernel
// closes its sockets and PostgreSQL ends their backends). A host that is
// lost whole (power, network) closes nothing: PostgreSQL would keep its
// idle backends until the system's TCP keep-alive gives up (over two hours
// by default). So the outbox's connections ask PostgreSQL for keep-alive
// probes and a TCP user timeout of their own, ending a silent owner's
// connections after `ownerTimeoutMs`.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { migratePg, openPgPool, type PgPoolOptions, type PgPoolSettings } from '../postgres.ts';
import { GroupCommit } from './group-commit.ts';
import { DEFAULT_OWNER_TIMEOUT_MS, outboxRowOf } from './types.ts';
import type { BatchLimits, DeadLetter, DeadLetterSelector, HandlerCounts, NewOutboxRow, OutboxAdmin, OutboxStore, SettleOp } from './types.ts';

export interface PostgresOutboxOptions extends BatchLimits {
  /** ms between two looks for claims left by servers that are gone. */
  sweepMs?: number;
  /** ms before settle ops whose write failed are tried again. */
  retryMs?: number;
  onWarning?: PgPoolOptions['onWarning'];
  /** ms a silent owner's connections are kept by PostgreSQL before it ends them (and its claims can be swept). */
  ownerTimeoutMs?: number;
}

export interface PostgresOutbox extends OutboxStore {
  /** Claims found at start-up whose owner is gone, put back in the queue. */
  readonly releasedAtOpen: number;
  /** The application_name this outbox's connections carry; its claims are marked with it. */
  readonly owner: string;
  /** Puts back in the queue the claims of owners that are gone; returns how many. */
  sweep(): Promise<number>;
}

const DEFAULT_SWEEP_MS = 10_000;

/**
 * PostgreSQL's settings for a connection whose peer must be found dead
 * within `ms`: keep-alive probes from a third of it, four of them a sixth
 * apart (seconds, at least 1), and the same bound on unacknowledged data.
 */
export function ownerTimeoutSettings(ms: number): Record<string, number> {
  return {
    tcp_keepalives_idle: Math.max(1, Math.floor(ms / 3000)),
    tcp_keepalives_interval: Math.max(1, Math.floor(ms / 6000)),
    tcp_keepalives_count: 4,
    tcp_user_timeout: ms,
  };
}
/** Prefix of the application_name of every outbox connection. */
const OWNER_PREFIX = 'petrel-outbox ';

/** Steps of the "outbox" component (migrations.ts); released steps are never changed. */
export const PG_OUTBOX_STEPS: readonly string[] = [
  `
  CREATE TABLE IF NOT EXISTS petrel_event_outbox (
    id BIGSERIAL PRIMARY KEY,
    handler TEXT NOT NULL,
    host_type TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    path TEXT NOT NULL,
    headers JSONB NOT NULL,
    body BYTEA NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_by TEXT,
    last_error TEXT
  );
  CREATE INDEX IF NOT EXISTS petrel_event_outbox_due ON petrel_event_outbox (handler, next_attempt_at, id) WHERE claimed_by IS NULL;
  CREATE INDEX IF NOT EXISTS petrel_event_outbox_claimed ON petrel_event_outbox (claimed_by) WHERE claimed_by IS NOT NULL;
  CREATE INDEX IF NOT EXISTS petrel_event_outbox_webhook_id ON petrel_event_outbox (webhook_id);

  CREATE TABLE IF NOT EXISTS petrel_event_dead_letter (
    id BIGSERIAL PRIMARY KEY,
    handler TEXT NOT NULL,
    host_type TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    path TEXT NOT NULL,
    headers JSONB NOT NULL,
    body BYTEA NOT NULL,
    attempts INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    dead_at BIGINT NOT NULL,
    last_error TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS petrel_event_dead_letter_webhook_id ON petrel_event_dead_letter (webhook_id);
  `,
  // Nothing looks rows of the outbox up by webhook_id (only dead letters are),
  // and the index made every insert and delete touch one more page.
  `DROP INDEX IF EXISTS petrel_event_outbox_webhook_id;`,
  // Opaque payloads: path, headers and body become one payload in the legacy
  // layout the HTTP backend reads (0x00 path 0x00 headers-JSON 0x00 body);
  // ids, attempts, times and claims are kept.
  `
  ALTER TABLE petrel_event_outbox ADD COLUMN payload BYTEA;
  UPDATE petrel_event_outbox SET payload =
    '\\x00'::bytea || convert_to(path, 'UTF8') || '\\x00'::bytea || convert_to(headers::text, 'UTF8') || '\\x00'::bytea || body;
  ALTER TABLE petrel_event_outbox ALTER COLUMN payload SET NOT NULL;
  ALTER TABLE petrel_event_outbox DROP COLUMN path, DROP COLUMN headers, DROP COLUMN body;
  ALTER TABLE petrel_event_outbox RENAME COLUMN webhook_id TO event_id;

  ALTER TABLE petrel_event_dead_letter ADD COLUMN payload BYTEA;
  UPDATE petrel_event_dead_letter SET payload =
    '\\x00'::bytea || convert_to(path, 'UTF8') || '\\x00'::bytea || convert_to(headers::text, 'UTF8') || '\\x00'::bytea || body;
  ALTER TABLE petrel_event_dead_letter ALTER COLUMN payload SET NOT NULL;
  ALTER TABLE petrel_event_dead_letter DROP COLUMN path, DROP COLUMN headers, DROP COLUMN body;
  ALTER TABLE petrel_event_dead_letter RENAME COLUMN webhook_id TO event_id;
  ALTER INDEX IF EXISTS petrel_event_dead_letter_webhook_id RENAME TO petrel_event_dead_letter_event_id;
  `,
];

/** Creates or migrates the outbox tables. */
export function migrateOutbox(pool: pg.Pool): Promise<void> {
  return migratePg(pool, 'outbox', PG_OUTBOX_STEPS);
}

const INSERT = `
  INSERT INTO petrel_event_outbox (handler, host_type, event_id, payload, created_at, next_attempt_at, claimed_by)
  SELECT t.h, t.ht, t.e, t.p, t.c, t.c, CASE WHEN t.cl THEN $7 END
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int8[], $6::bool[]) AS t(h, ht, e, p, c, cl)
  RETURNING id`;

const DELIVERED = 'DELETE FROM petrel_event_outbox WHERE id = ANY($1::int8[])';
const RELEASE = 'UPDATE petrel_event_outbox SET claimed_by = NULL WHERE id = ANY($1::int8[])';
const RETRY = `
  UPDATE petrel_event_outbox o SET attempts = u.a, next_attempt_at = u.n, last_error = u.e, claimed_by = NULL
  FROM unnest($1::int8[], $2::int4[], $3::int8[], $4::text[]) AS u(id, a, n, e)
  WHERE o.id = u.id`;
const DEAD = `
  WITH d AS (
    DELETE FROM petrel_event_outbox o USING unnest($1::int8[], $2::int4[], $3::int8[], $4::text[]) AS u(id, a, t, e)
    WHERE o.id = u.id
    RETURNING o.id, o.handler, o.host_type, o.event_id, o.payload, o.created_at, u.a, u.t, u.e)
  INSERT INTO petrel_event_dead_letter (handler, host_type, event_id, payload, attempts, created_at, dead_at, last_error)
  SELECT handler, host_type, event_id, payload, a, created_at, t, e FROM d ORDER BY id`;

// The rows are taken in order while the bytes before them are under $5
// (octet_length reads a stored value's size, not the value).
const CLAIM = `
  UPDATE petrel_event_outbox o SET claimed_by = $4
  FROM (SELECT id FROM (
          SELECT id, SUM(octet_length(payload)) OVER (ORDER BY next_attempt_at, id) - octet_length(payload) AS before
          FROM (SELECT id, payload, next_attempt_at FROM petrel_event_outbox
                WHERE handler = $1 AND claimed_by IS NULL AND next_attempt_at <= $2
                ORDER BY next_attempt_at, id LIMIT $3
                FOR UPDATE SKIP LOCKED) c) w
        WHERE before < $5) d
  WHERE o.id = d.id
  RETURNING o.id, o.handler, o.host_type, o.event_id, o.payload, o.attempts, o.created_at, o.next_attempt_at`;

const SWEEP = `
  UPDATE petrel_event_outbox SET claimed_by = NULL
  WHERE claimed_by IS NOT NULL AND claimed_by <> $1
    AND claimed_by NOT IN (SELECT application_name FROM pg_stat_activity WHERE application_name LIKE '${OWNER_PREFIX}%')`;

interface ClaimedRow {
  id: string;
  handler: string;
  host_type: string;
  event_id: string;
  payload: Buffer;
  attempts: number;
  created_at: string;
  next_attempt_at: string;
}

/** The statements that apply `ops`, in an order that gives the same result as applying them one by one. */
function settleStatements(ops: readonly SettleOp[]): pg.QueryConfig[] {
  const ids = new Set(ops.map((o) => o.id));
  if (ids.size !== ops.length) {
    // A row settled twice in one batch (rare): keep the order, one statement per op.
    return ops.flatMap((o) => settleStatements([o]));
  }
  // Every op touches its own row, so the order between kinds does not matter.
  const out: pg.QueryConfig[] = [];
  const delivered = ops.filter((o) => o.op === 'delivered').map((o) => o.id);
  const release = ops.filter((o) => o.op === 'release').map((o) => o.id);
  const retry = ops.filter((o): o is Extract<SettleOp, { op: 'retry' }> => o.op === 'retry');
  const dead = ops.filter((o): o is Extract<SettleOp, { op: 'dead' }> => o.op === 'dead');
  if (delivered.length > 0) out.push({ name: 'petrel_outbox_delivered', text: DELIVERED, values: [delivered] });
  if (release.length > 0) out.push({ name: 'petrel_outbox_release', text: RELEASE, values: [release] });
  if (retry.length > 0) {
    out.push({ name: 'petrel_outbox_retry', text: RETRY, values: [retry.map((o) => o.id), retry.map((o) => o.attempts), retry.map((o) => o.nextAt), retry.map((o) => o.error)] });
  }
  if (dead.length > 0) {
    out.push({ name: 'petrel_outbox_dead', text: DEAD, values: [dead.map((o) => o.id), dead.map((o) => o.attempts), dead.map((o) => o.at), dead.map((o) => o.error)] });
  }
  return out;
}


/** Runs `statements` in one transaction (or alone, when there is one); returns the first one's result. */
async function inTransaction(pool: pg.Pool, all: pg.QueryConfig[]): Promise<pg.QueryResult | undefined> {
  if (all.length === 0) return undefined;
  if (all.length === 1) return pool.query(all[0]!);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    let first: pg.QueryResult | undefined;
    for (let i = 0; i < all.length; i++) {
      const r = await client.query(all[i]!);
      if (i === 0) first = r;
    }
    await client.query('COMMIT');
    return first;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

const payloadBytes = (r: NewOutboxRow) => r.payload.byteLength;
const rowOwner = (r: NewOutboxRow) => r.owner;

/**
 * Whether a failed write says nothing about its rows: no answer at all (a
 * client-side timeout, a lost connection: no SQLSTATE, or an errno code), or
 * a SQLSTATE of connection trouble (08), a rolled-back transaction (40, e.g.
 * a deadlock), too few resources (53), an operator's or the statement
 * timeout's cancel (57), a system error (58), or a lock not available.
 */
export function pgTransient(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || code.length !== 5 || code.startsWith('E')) return true;
  return /^(08|40|53|57|58)/.test(code) || code === '55P03';
}

/** Opens the outbox's own pool (a few connections named after their owner) and creates or migrates the tables. */
export async function openPostgresOutbox(s: PgPoolSettings, o: PostgresOutboxOptions = {}): Promise<PostgresOutbox> {
  const owner = OWNER_PREFIX + randomBytes(8).toString('hex');
  // One connection writes batches, the others claim; they stay open as the mark that the owner lives.
  const pool = await openPgPool(s, {
    max: Math.max(2, Math.min(4, s.workers)),
    applicationName: owner,
    keepIdle: true,
    onWarning: o.onWarning,
    serverSettings: ownerTimeoutSettings(o.ownerTimeoutMs ?? DEFAULT_OWNER_TIMEOUT_MS),
  });
  try {
    await migrateOutbox(pool);
  } catch (err) {
    await pool.end().catch(() => {});
    throw err;
  }

  const sweep = async () => (await pool.query({ name: 'petrel_outbox_sweep', text: SWEEP, values: [owner] })).rowCount ?? 0;
  const releasedAtOpen = await sweep();

  const write = async (batch: NewOutboxRow[], ops: SettleOp[]): Promise<number[]> => {
    const statements: pg.QueryConfig[] = [];
    if (batch.length > 0) {
      statements.push({
        name: 'petrel_outbox_insert',
        text: INSERT,
        values: [
          batch.map((r) => r.handler),
          batch.map((r) => r.hostType),
          batch.map((r) => r.eventId),
          batch.map((r) => r.payload),
          batch.map((r) => r.createdAt),
          batch.map((r) => r.claimed),
          owner,
        ],
      });
    }
    for (const st of settleStatements(ops)) statements.push(st);
    const res = await inTransaction(pool, statements);
    if (batch.length === 0) return [];
    // Rows come out of unnest in array order and take their ids from the
    // sequence in that order, so the ids sorted ascending are the rows' ids in order.
    return res!.rows.map((r: { id: string }) => Number(r.id)).sort((a, b) => a - b);
  };

  const queue = new GroupCommit<NewOutboxRow, SettleOp>(write, payloadBytes, {
    maxRows: o.maxRows,
    maxBytes: o.maxBytes,
    maxRowsPerOwner: o.maxRowsPerOwner,
    ownerOf: rowOwner,
    maxInFlight: 1,
    retryMs: o.retryMs,
    transient: pgTransient,
    onWriteFailed: (err, rows, ops) =>
      o.onWarning?.('event_pusher_outbox_write_failed', `could not write to the PostgreSQL outbox (${rows} event(s), ${ops} settle op(s); kept or tried again): ${err.message}`),
  });

  const sweepTimer = setInterval(() => {
    sweep().then(
      (n) => {
        if (n > 0) o.onWarning?.('event_pusher_outbox_claims_released', `${n} event(s) claimed by a server that is gone are back in the queue`);
      },
      () => {},
    );
  }, o.sweepMs ?? DEFAULT_SWEEP_MS);
  sweepTimer.unref();
  let closed = false;

  return {
    releasedAtOpen,
    owner,
    sweep,
    append: (row) => queue.append(row),
    settle: (op) => queue.settle(op),
    async claim(handler, now, limit, maxBytes) {
      // Pending settle ops go first, so a row just rescheduled is seen as such.
      await queue.settled();
      const bound = maxBytes === undefined || maxBytes === Infinity ? Number.MAX_SAFE_INTEGER : maxBytes;
      const r = await pool.query<ClaimedRow>({ name: 'petrel_outbox_claim_bounded', text: CLAIM, values: [handler, now, limit, owner, bound] });
      return r.rows
        .sort((a, b) => Number(a.next_attempt_at) - Number(b.next_attempt_at) || Number(a.id) - Number(b.id))
        .map(outboxRowOf);
    },
    async depth() {
      await queue.settled();
      const r = await pool.query<{ handler: string; n: string }>('SELECT handler, COUNT(*) AS n FROM petrel_event_outbox GROUP BY handler');
      return new Map(r.rows.map((x) => [x.handler, Number(x.n)]));
    },
    async bytes() {
      await queue.settled();
      const r = await pool.query<{ b: string }>('SELECT COALESCE(SUM(octet_length(payload)), 0) AS b FROM petrel_event_outbox');
      return Number(r.rows[0]!.b);
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweepTimer);
      await queue.drain();
      queue.close();
      try {
        await pool.query('UPDATE petrel_event_outbox SET claimed_by = NULL WHERE claimed_by = $1', [owner]);
      } finally {
        await pool.end().catch(() => {});
      }
    },
  };
}

type RawDead = { event_id: string; handler: string; attempts: number; last_error: string; dead_at: string; created_at: string };

/** `petrel deliveries` on the PostgreSQL outbox: one short-lived connection. */
export async function openPostgresOutboxAdmin(s: PgPoolSettings, o: PgPoolOptions = {}): Promise<OutboxAdmin> {
  const pool = await openPgPool(s, { ...o, max: 1, applicationName: o.applicationName ?? 'petrel deliveries' });
  try {
    await migrateOutbox(pool);
  } catch (err) {
    await pool.end().catch(() => {});
    throw err;
  }
  const where = (sel: DeadLetterSelector): { sql: string; values: unknown[] } =>
    'all' in sel ? { sql: '', values: [] } : { sql: ' WHERE event_id = ANY($1::text[])', values: [[...sel.ids]] };
  const distinct = (r: pg.QueryResult<{ event_id: string }>) => [...new Set(r.rows.map((x) => x.event_id))];

  return {
    async counts() {
      // One statement, so both tables are counted in one snapshot.
      const r = await pool.query<{ handler: string; queued: string; in_flight: string; retrying: string; dead: string }>(
        `SELECT handler, COUNT(*) AS queued, COUNT(claimed_by) AS in_flight,
                COUNT(*) FILTER (WHERE claimed_by IS NULL AND attempts > 0) AS retrying, 0 AS dead
         FROM petrel_event_outbox GROUP BY handler
         UNION ALL
         SELECT handler, 0, 0, 0, COUNT(*) FROM petrel_event_dead_letter GROUP BY handler`,
      );
      const out = new Map<string, HandlerCounts>();
      for (const x of r.rows) {
        const c = out.get(x.handler) ?? { queued: 0, inFlight: 0, retrying: 0, deadLettered: 0 };
        c.queued += Number(x.queued);
        c.inFlight += Number(x.in_flight);
        c.retrying += Number(x.retrying);
        c.deadLettered += Number(x.dead);
        out.set(x.handler, c);
      }
      return out;
    },
    async deadLetters(): Promise<DeadLetter[]> {
      const r = await pool.query<RawDead>('SELECT event_id, handler, attempts, last_error, dead_at, created_at FROM petrel_event_dead_letter ORDER BY dead_at, id');
      return r.rows.map((x) => ({
        eventId: x.event_id,
        handler: x.handler,
        attempts: Number(x.attempts),
        lastError: x.last_error,
        deadAt: Number(x.dead_at),
        createdAt: Number(x.created_at),
      }));
    },
    async replay(sel, now) {
      if ('ids' in sel && sel.ids.length === 0) return [];
      const w = where(sel);
      const n = w.values.length + 1;
      // Moved in one statement: a dead letter is either still there or back in the outbox.
      const r = await pool.query<{ event_id: string }>(
        `WITH moved AS (DELETE FROM petrel_event_dead_letter${w.sql} RETURNING *)
         INSERT INTO petrel_event_outbox (handler, host_type, event_id, payload, attempts, created_at, next_attempt_at, claimed_by)
         SELECT handler, host_type, event_id, payload, 0, $${n}, $${n}, NULL FROM moved ORDER BY id
         RETURNING event_id`,
        [...w.values, now],
      );
      return distinct(r);
    },
    async purge(sel) {
      if ('ids' in sel && sel.ids.length === 0) return [];
      const w = where(sel);
      return distinct(await pool.query<{ event_id: string }>(`DELETE FROM petrel_event_dead_letter${w.sql} RETURNING event_id`, w.values));
    },
    async close() {
      await pool.end();
    },
  };
}
