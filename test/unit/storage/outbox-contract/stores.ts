// The two outbox stores as the contract suite sees them: how to open each
// one, reach its tables directly, inject real failures through the database
// itself (triggers, locks, slow statements) and count its transactions.
// Everything that depends on the stores' current interface lives here, so
// that the cases in outbox-contract*.test.ts speak of behaviour only.
//
// A row of the suite carries its identity in its payload (`key:filler`), so
// that it can be recognised whatever else the store keeps beside it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { OUTBOX_BUSY_TIMEOUT_MS, type NewOutboxRow, type OutboxAdmin, type OutboxRow, type SettleOp } from '../../../../src/storage/outbox/types.ts';
import { openSqliteOutbox } from '../../../../src/storage/outbox/sqlite.ts';
import { openSqliteOutboxAdmin } from '../../../../src/storage/outbox/sqlite-tables.ts';
import { openPostgresOutbox, openPostgresOutboxAdmin, type PostgresOutbox } from '../../../../src/storage/outbox/postgres.ts';
import type { PgPoolSettings } from '../../../../src/storage/postgres.ts';
import { createTestDatabase, pgReachable, PG_HOST, PG_PASSWORD, PG_PORT, PG_UNREACHABLE, PG_USER, type TestDatabase } from '../../../e2e/postgres/db.ts';

export type { SettleOp, OutboxAdmin };

/** A row as the suite appends it. */
export interface ContractRow {
  handler: string;
  /** Unique within a test; travels inside the payload. */
  key: string;
  payload: Uint8Array;
  createdAt: number;
  claimed?: boolean;
}

/** A claimed row as the suite sees it. */
export interface Claimed {
  id: number;
  handler: string;
  key: string;
  payload: Uint8Array;
  attempts: number;
  createdAt: number;
}

/** A row of the outbox table read directly. */
export interface StoredRow {
  id: number;
  handler: string;
  key: string;
  claimed: boolean;
  attempts: number;
  nextAt: number;
  lastError: string | null;
}

/** A row of the dead-letter table read directly. */
export interface StoredDead {
  handler: string;
  key: string;
  attempts: number;
  lastError: string;
}

export interface ContractStore {
  append(r: ContractRow): Promise<number>;
  settle(op: SettleOp): void;
  claim(handler: string, now: number, limit: number): Promise<Claimed[]>;
  depth(): Promise<Map<string, number>>;
  close(): Promise<void>;
  /** Claims put back in the queue when the store opened. */
  readonly releasedAtOpen: number;
}

export interface StoreOptions {
  /** Rows per batch at most. */
  maxBatch?: number;
  /** Payload bytes per batch at most, where the store has such a bound. */
  maxBatchBytes?: number;
  /**
   * For PostgreSQL, ms a statement may run (the pool's query_timeout); for
   * SQLite, ms a write waits for another connection's lock, where the store
   * lets it be chosen.
   */
  waitMs?: number;
}

/** One transaction that wrote rows, as the store's own database tells it. */
export interface Transaction {
  /** Rows inserted, when the database tells them apart (PostgreSQL). */
  rows?: number;
  /** Payload bytes (PostgreSQL) or bytes of pages written (SQLite, a bound from above on the payload). */
  bytes: number;
}

/** What holds a lock on the outbox from another connection. */
export interface HeldLock {
  /** True once a write of the store waits for this lock (undefined where the database cannot tell). */
  waited(): Promise<boolean | undefined>;
  release(): Promise<void>;
}

export interface Harness {
  readonly name: string;
  /** ms a write waits for a lock before failing, for a store opened with `waitMs`. */
  lockWait(o?: StoreOptions): number;
  open(o?: StoreOptions): Promise<ContractStore>;
  admin(): Promise<OutboxAdmin>;
  rows(): Promise<StoredRow[]>;
  dead(): Promise<StoredDead[]>;
  /** Empties both tables (between cases) and disarms every injected failure. */
  reset(): Promise<void>;
  /** Creates the control table and triggers that inject failures (the store must have created its tables). */
  installFailures(): Promise<void>;
  /** Rows whose payload holds `marker` fail to insert, until cleared with null. */
  failRowsContaining(marker: string | null): Promise<void>;
  /** While armed, every insert, settle update and delete of the outbox fails. */
  armWrites(armed: boolean): Promise<void>;
  /** The next `n` inserting statements sleep `ms` first (PostgreSQL; SQLite has no statement timeout). */
  slowNextWrites(n: number, ms: number): Promise<void>;
  /** Statements that failed or slept because of an injection so far (undefined where a rolled-back trigger leaves no trace: SQLite). */
  injected(): Promise<number | undefined>;
  /** Another connection takes the outbox's write lock, as `petrel deliveries` might. */
  lock(): Promise<HeldLock>;
  /** Transactions that inserted the rows of `keys`, in commit order. */
  transactions(keys: readonly string[], during: () => Promise<void>): Promise<Transaction[]>;
  /** Starts a process that opens the store, appends `rows` claimed and waits to be killed. Resolves with their ids once committed. */
  spawnOwner(rows: readonly ContractRow[]): Promise<{ ids: number[]; kill(): Promise<void> }>;
  /** After an owner's death: what the store does to take its claims back (SQLite: nothing more than opening; PostgreSQL: a sweep once the owner's connections are gone). */
  reclaimOrphans(s: ContractStore): Promise<void>;
  destroy(): Promise<void>;
}

export interface HarnessKind {
  name: string;
  /** false, or why the store cannot be tested here. */
  skip: false | string;
  create(): Promise<Harness>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A payload of about `size` bytes carrying `key`. */
export function payloadOf(key: string, size = 0, extra = ''): Uint8Array {
  const head = `${key}:${extra}`;
  return enc.encode(head + 'x'.repeat(Math.max(0, size - head.length)));
}

/** The key carried by a payload. */
export function keyOf(payload: Uint8Array): string {
  const s = dec.decode(payload.subarray(0, Math.min(payload.byteLength, 200)));
  const i = s.indexOf(':');
  return i < 0 ? s : s.slice(0, i);
}

function toNew(r: ContractRow): NewOutboxRow {
  return {
    handler: r.handler,
    hostType: 'localhost',
    eventId: r.key,
    payload: r.payload,
    createdAt: r.createdAt,
    claimed: r.claimed ?? false,
  };
}

function fromRow(r: OutboxRow): Claimed {
  const payload = new Uint8Array(r.payload);
  return { id: r.id, handler: r.handler, key: keyOf(payload), payload, attempts: r.attempts, createdAt: r.createdAt };
}

function wrap(s: {
  append(r: NewOutboxRow): Promise<number>;
  settle(op: SettleOp): void;
  claim(handler: string, now: number, limit: number): Promise<OutboxRow[]>;
  depth(): Promise<Map<string, number>>;
  close(): Promise<void>;
  releasedAtOpen: number;
}): ContractStore {
  const w: ContractStore = {
    releasedAtOpen: s.releasedAtOpen,
    append: (r) => s.append(toNew(r)),
    settle: (op) => s.settle(op),
    claim: async (h, now, limit) => (await s.claim(h, now, limit)).map(fromRow),
    depth: () => s.depth(),
    close: () => s.close(),
  };
  RAW.set(w, s);
  return w;
}

/** The store behind each wrapped one. */
const RAW = new WeakMap<ContractStore, object>();

/** ms before a store tries again settle ops whose write failed (short, so that cases do not wait). */
const RETRY_MS = 20;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `everyMs` until it holds; false if it still does not after `maxMs`. */
export async function until(cond: () => boolean | Promise<boolean>, maxMs: number, everyMs = 10): Promise<boolean> {
  const end = Date.now() + maxMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= end) return false;
    await sleep(everyMs);
  }
}

const CHILD = fileURLToPath(new URL('./owner-child.ts', import.meta.url));

/** Where a child process finds the store: see owner-child.ts. */
export type OwnerSpec = { kind: 'sqlite'; file: string } | { kind: 'postgres'; settings: PgPoolSettings };

/** Opens the store of `spec` as the server would (used by the owner child). */
export async function openSpec(spec: OwnerSpec): Promise<ContractStore> {
  if (spec.kind === 'sqlite') return wrap(await openSqliteOutbox(spec.file));
  return wrap(await openPostgresOutbox(spec.settings, { sweepMs: 60_000 }));
}

function spawnChild(spec: OwnerSpec, rows: readonly ContractRow[]): Promise<{ ids: number[]; kill(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [CHILD], { stdio: ['pipe', 'pipe', 'pipe'] });
  const payload = JSON.stringify({ spec, rows: rows.map((r) => ({ ...r, payload: Buffer.from(r.payload).toString('base64') })) });
  child.stdin!.end(payload);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += String(d)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += String(d);
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const ids = JSON.parse(out.slice(0, nl)) as number[];
      resolve({
        ids,
        async kill() {
          child.kill('SIGKILL');
          await exited;
        },
      });
    });
    child.once('exit', (code) => reject(new Error(`the owner process exited (code ${code}) before appending: ${err}`)));
  });
}

// ---------------------------------------------------------------- SQLite

const SQ_OUTBOX = 'event_outbox';
const SQ_DEAD = 'event_dead_letter';

/** Reads the commit frames of a WAL file: the number of frames of each commit, in order. */
function walCommits(file: string): { pageSize: number; salt: string; commits: number[] } {
  let buf: Buffer;
  try {
    if (statSync(file).size < 32) return { pageSize: 0, salt: '', commits: [] };
    buf = readFileSync(file);
  } catch {
    return { pageSize: 0, salt: '', commits: [] };
  }
  // WAL header (https://www.sqlite.org/fileformat2.html#walformat): page size at 8, salts at 16 and 20.
  const pageSize = buf.readUInt32BE(8);
  const salt1 = buf.readUInt32BE(16);
  const salt2 = buf.readUInt32BE(20);
  const commits: number[] = [];
  let frames = 0;
  for (let off = 32; off + 24 + pageSize <= buf.length; off += 24 + pageSize) {
    // A frame of this generation carries the header's salts; what follows an older one is left over.
    if (buf.readUInt32BE(off + 8) !== salt1 || buf.readUInt32BE(off + 12) !== salt2) break;
    frames++;
    // "For commit records, the size of the database file in pages after the commit. For all other records, zero."
    if (buf.readUInt32BE(off + 4) !== 0) {
      commits.push(frames);
      frames = 0;
    }
  }
  return { pageSize, salt: `${salt1}.${salt2}`, commits };
}

class SqliteHarness implements Harness {
  readonly name = 'SQLite';
  readonly dir = mkdtempSync(join(tmpdir(), 'petrel-outbox-contract-'));
  readonly file = join(this.dir, 'outbox.sqlite');
  #db: DatabaseSync | null = null;

  get db(): DatabaseSync {
    if (this.#db === null) {
      this.#db = new DatabaseSync(this.file, { timeout: 20_000 });
      this.#db.exec('PRAGMA journal_mode = WAL');
    }
    return this.#db;
  }

  lockWait(): number {
    // The store waits OUTBOX_BUSY_TIMEOUT_MS for a lock; it does not let it be chosen.
    return OUTBOX_BUSY_TIMEOUT_MS;
  }

  async open(o: StoreOptions = {}): Promise<ContractStore> {
    return wrap(await openSqliteOutbox(this.file, { maxRows: o.maxBatch, maxBytes: o.maxBatchBytes, retryMs: RETRY_MS }));
  }

  async admin(): Promise<OutboxAdmin> {
    return openSqliteOutboxAdmin(this.file);
  }

  async rows(): Promise<StoredRow[]> {
    const rs = this.db
      .prepare(`SELECT id, handler, claimed, attempts, next_attempt_at, last_error, payload FROM ${SQ_OUTBOX} ORDER BY id`)
      .all() as Array<{ id: number; handler: string; claimed: number; attempts: number; next_attempt_at: number; last_error: string | null; payload: Uint8Array }>;
    return rs.map((r) => ({
      id: Number(r.id),
      handler: r.handler,
      key: keyOf(r.payload),
      claimed: Number(r.claimed) !== 0,
      attempts: Number(r.attempts),
      nextAt: Number(r.next_attempt_at),
      lastError: r.last_error,
    }));
  }

  async dead(): Promise<StoredDead[]> {
    const rs = this.db.prepare(`SELECT handler, payload, attempts, last_error FROM ${SQ_DEAD} ORDER BY id`).all() as Array<{
      handler: string;
      payload: Uint8Array;
      attempts: number;
      last_error: string;
    }>;
    return rs.map((r) => ({ handler: r.handler, key: keyOf(r.payload), attempts: Number(r.attempts), lastError: r.last_error }));
  }

  #installed = false;

  async installFailures(): Promise<void> {
    if (this.#installed) return;
    this.#installed = true;
    // A trigger's RAISE rolls back with the transaction, so nothing it does
    // can count the failures: the control table only says what to fail.
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS contract_ctl (armed INTEGER NOT NULL, marker BLOB);
      INSERT INTO contract_ctl SELECT 0, NULL WHERE NOT EXISTS (SELECT 1 FROM contract_ctl);
      CREATE TRIGGER IF NOT EXISTS contract_fail_marked BEFORE INSERT ON ${SQ_OUTBOX}
        WHEN (SELECT marker FROM contract_ctl) IS NOT NULL AND instr(NEW.payload, (SELECT marker FROM contract_ctl)) > 0
        BEGIN SELECT RAISE(ABORT, 'injected failure: a marked row'); END;
      CREATE TRIGGER IF NOT EXISTS contract_fail_insert BEFORE INSERT ON ${SQ_OUTBOX}
        WHEN (SELECT armed FROM contract_ctl) = 1
        BEGIN SELECT RAISE(ABORT, 'injected failure: writes are failing'); END;
      CREATE TRIGGER IF NOT EXISTS contract_fail_update BEFORE UPDATE ON ${SQ_OUTBOX}
        WHEN (SELECT armed FROM contract_ctl) = 1 AND NEW.claimed = 0
        BEGIN SELECT RAISE(ABORT, 'injected failure: writes are failing'); END;
      CREATE TRIGGER IF NOT EXISTS contract_fail_delete BEFORE DELETE ON ${SQ_OUTBOX}
        WHEN (SELECT armed FROM contract_ctl) = 1
        BEGIN SELECT RAISE(ABORT, 'injected failure: writes are failing'); END;
    `);
  }

  async failRowsContaining(marker: string | null): Promise<void> {
    this.db.prepare('UPDATE contract_ctl SET marker = ?').run(marker === null ? null : enc.encode(marker));
  }

  async armWrites(armed: boolean): Promise<void> {
    this.db.prepare('UPDATE contract_ctl SET armed = ?').run(armed ? 1 : 0);
  }

  async slowNextWrites(): Promise<void> {
    throw new Error('SQLite has no statement timeout to outlast');
  }

  async injected(): Promise<number | undefined> {
    return undefined;
  }

  async reset(): Promise<void> {
    const db = this.db;
    if (this.#installed) db.exec('UPDATE contract_ctl SET armed = 0, marker = NULL');
    db.exec(`DELETE FROM ${SQ_OUTBOX}; DELETE FROM ${SQ_DEAD};`);
  }

  async lock(): Promise<HeldLock> {
    const c = new DatabaseSync(this.file, { timeout: 20_000 });
    c.exec('BEGIN IMMEDIATE');
    return {
      // A write waiting in SQLite's busy handler leaves no trace another connection can see.
      waited: async () => undefined,
      release: async () => {
        c.exec('COMMIT');
        c.close();
      },
    };
  }

  async transactions(keys: readonly string[], during: () => Promise<void>): Promise<Transaction[]> {
    // A reader holding a snapshot keeps the frames written after it from
    // being checkpointed, so the WAL cannot be started over until it ends,
    // and every commit made meanwhile is still in it afterwards, one commit
    // frame each (https://www.sqlite.org/wal.html). The WAL may be started
    // over once at the first write, if it was wholly checkpointed: its salts
    // then change, and every commit in it is new.
    const reader = new DatabaseSync(this.file);
    reader.exec('BEGIN');
    try {
      reader.prepare(`SELECT COUNT(*) FROM ${SQ_OUTBOX}`).get();
      const wal = this.file + '-wal';
      const before = walCommits(wal);
      await during();
      const after = walCommits(wal);
      void keys;
      const from = after.salt === before.salt ? before.commits.length : 0;
      return after.commits.slice(from).map((frames) => ({ bytes: frames * after.pageSize }));
    } finally {
      reader.exec('COMMIT');
      reader.close();
    }
  }

  spawnOwner(rows: readonly ContractRow[]) {
    return spawnChild({ kind: 'sqlite', file: this.file }, rows);
  }

  async reclaimOrphans(): Promise<void> {}

  async destroy(): Promise<void> {
    this.#db?.close();
    this.#db = null;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- PostgreSQL

const PG_OUTBOX = 'petrel_event_outbox';
const PG_DEAD = 'petrel_event_dead_letter';

class PostgresHarness implements Harness {
  readonly name = 'PostgreSQL';
  readonly db: TestDatabase;
  constructor(db: TestDatabase) {
    this.db = db;
  }

  #settings(o: StoreOptions): PgPoolSettings {
    const s = this.db.settings;
    return { ...s, connection: { ...s.connection, query_timeout: o.waitMs ?? s.connection.query_timeout } };
  }

  lockWait(o: StoreOptions = {}): number {
    return this.#settings(o).connection.query_timeout;
  }

  async open(o: StoreOptions = {}): Promise<ContractStore> {
    return wrap(await openPostgresOutbox(this.#settings(o), { sweepMs: 60_000, retryMs: RETRY_MS, maxRows: o.maxBatch, maxBytes: o.maxBatchBytes }));
  }

  admin(): Promise<OutboxAdmin> {
    return openPostgresOutboxAdmin(this.db.settings);
  }

  async rows(): Promise<StoredRow[]> {
    const rs = await this.db.query<{ id: string; handler: string; claimed_by: string | null; attempts: number; next_attempt_at: string; last_error: string | null; payload: Buffer }>(
      `SELECT id, handler, claimed_by, attempts, next_attempt_at, last_error, payload FROM ${PG_OUTBOX} ORDER BY id`,
    );
    return rs.map((r) => ({
      id: Number(r.id),
      handler: r.handler,
      key: keyOf(r.payload),
      claimed: r.claimed_by !== null,
      attempts: Number(r.attempts),
      nextAt: Number(r.next_attempt_at),
      lastError: r.last_error,
    }));
  }

  async dead(): Promise<StoredDead[]> {
    const rs = await this.db.query<{ handler: string; payload: Buffer; attempts: number; last_error: string }>(`SELECT handler, payload, attempts, last_error FROM ${PG_DEAD} ORDER BY id`);
    return rs.map((r) => ({ handler: r.handler, key: keyOf(r.payload), attempts: Number(r.attempts), lastError: r.last_error }));
  }

  #installed = false;

  async installFailures(): Promise<void> {
    if (this.#installed) return;
    this.#installed = true;
    // Sequences are not transactional: what a rolled-back trigger counted with nextval stays counted.
    await this.db.query(`
      CREATE TABLE contract_ctl (armed boolean NOT NULL, marker bytea, slow int NOT NULL, slow_ms int NOT NULL);
      INSERT INTO contract_ctl VALUES (false, NULL, 0, 0);
      CREATE SEQUENCE contract_injected;
      CREATE SEQUENCE contract_slow_seen;
      CREATE FUNCTION contract_fail() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE c contract_ctl;
      BEGIN
        SELECT * INTO c FROM contract_ctl;
        IF TG_OP = 'INSERT' AND c.marker IS NOT NULL AND position(c.marker IN NEW.payload) > 0 THEN
          PERFORM nextval('contract_injected');
          RAISE EXCEPTION 'injected failure: a marked row';
        END IF;
        IF c.armed AND (TG_OP <> 'UPDATE' OR NEW.claimed_by IS NULL) THEN
          PERFORM nextval('contract_injected');
          RAISE EXCEPTION 'injected failure: writes are failing';
        END IF;
        IF TG_OP = 'INSERT' AND c.slow > 0 AND nextval('contract_slow_seen') <= c.slow THEN
          PERFORM nextval('contract_injected');
          PERFORM pg_sleep(c.slow_ms / 1000.0);
        END IF;
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER contract_fail BEFORE INSERT OR UPDATE OR DELETE ON ${PG_OUTBOX} FOR EACH ROW EXECUTE FUNCTION contract_fail();
    `);
  }

  async failRowsContaining(marker: string | null): Promise<void> {
    await this.db.query('UPDATE contract_ctl SET marker = $1', [marker === null ? null : Buffer.from(marker)]);
  }

  async armWrites(armed: boolean): Promise<void> {
    await this.db.query('UPDATE contract_ctl SET armed = $1', [armed]);
  }

  async slowNextWrites(n: number, ms: number): Promise<void> {
    // One statement inserting many rows sleeps on its first row only: the others find the budget spent.
    await this.db.query(`SELECT setval('contract_slow_seen', 1, false)`);
    await this.db.query('UPDATE contract_ctl SET slow = $1, slow_ms = $2', [n, ms]);
  }

  async injected(): Promise<number | undefined> {
    const [r] = await this.db.query<{ last_value: string; is_called: boolean }>('SELECT last_value, is_called FROM contract_injected');
    return r!.is_called ? Number(r!.last_value) : 0;
  }

  async reset(): Promise<void> {
    if (this.#installed) {
      await this.db.query('UPDATE contract_ctl SET armed = false, marker = NULL, slow = 0');
      await this.db.query(`SELECT setval('contract_injected', 1, false)`);
    }
    await this.db.query(`DELETE FROM ${PG_OUTBOX}; DELETE FROM ${PG_DEAD};`);
  }

  async lock(): Promise<HeldLock> {
    const c = new pg.Client({ host: PG_HOST, port: PG_PORT, user: PG_USER, password: PG_PASSWORD, database: this.db.name, application_name: 'petrel deliveries' });
    await c.connect();
    await c.query('BEGIN');
    await c.query(`LOCK TABLE ${PG_OUTBOX} IN ACCESS EXCLUSIVE MODE`);
    const pid = Number((await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
    return {
      waited: async () => {
        const r = await this.db.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid]);
        return r[0]!.n > 0;
      },
      release: async () => {
        await c.query('COMMIT');
        await c.end();
      },
    };
  }

  async transactions(keys: readonly string[], during: () => Promise<void>): Promise<Transaction[]> {
    await during();
    // Rows written by one transaction share its xmin (nothing updates them here).
    const rs = await this.db.query<{ x: string; n: number; bytes: string; first: string }>(
      `SELECT xmin::text AS x, COUNT(*)::int AS n, SUM(octet_length(payload)) AS bytes, MIN(id) AS first
       FROM ${PG_OUTBOX} WHERE event_id = ANY($1::text[])
       GROUP BY xmin ORDER BY MIN(id)`,
      [[...keys]],
    );
    return rs.map((r) => ({ rows: r.n, bytes: Number(r.bytes) }));
  }

  spawnOwner(rows: readonly ContractRow[]) {
    return spawnChild({ kind: 'postgres', settings: this.db.settings }, rows);
  }

  async reclaimOrphans(s: ContractStore): Promise<void> {
    // The owner's connections end when its process dies; the server notices at once, pg_stat_activity a moment later.
    const o = RAW.get(s) as PostgresOutbox | undefined;
    if (o === undefined) throw new Error('not a PostgreSQL outbox of this harness');
    const ok = await until(async () => {
      await o.sweep();
      const r = await this.db.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM ${PG_OUTBOX} WHERE claimed_by IS NOT NULL AND claimed_by <> $1`, [o.owner]);
      return r[0]!.n === 0;
    }, 20_000, 50);
    if (!ok) throw new Error('the claims of a dead owner were not released by the sweep');
  }

  async destroy(): Promise<void> {
    await this.db.drop();
  }
}

const pgUp = await pgReachable();

export const HARNESSES: HarnessKind[] = [
  {
    name: 'SQLite',
    skip: false,
    create: async () => new SqliteHarness(),
  },
  {
    name: 'PostgreSQL',
    skip: pgUp ? false : PG_UNREACHABLE,
    create: async () => new PostgresHarness(await createTestDatabase()),
  },
];
