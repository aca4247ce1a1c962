// PostgreSQL as a store: accounts, rosters and offline messages in tables of
// Petrel's own (prefixed `petrel_`, so they can sit beside MongooseIM's in one
// database without clashing), reached through a pool of `workers`
// connections. Every call is a network round trip handled by node-postgres;
// nothing here blocks the event loop. The schema is created, or brought up
// to date, when the store opens, under an advisory lock so that a server and
// the command-line tool starting together do not race.
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { migratePg } from './migrations.ts';
import type {
  OfflineMessage,
  OfflineStore,
  RosterItem,
  RosterStore,
  Storage,
  StoredCredentials,
  UserStore,
} from './types.ts';

export { migratePg } from './migrations.ts';

/** What opening a pool needs: the shape of an [outgoing_pools.rdbms.TAG] table. */
export interface PgPoolSettings {
  workers: number;
  /** ms a query waits for a connection, opening one included. */
  call_timeout: number;
  connection: {
    host: string;
    port: number;
    database: string;
    username: string;
    password: string;
    /** ms a statement may run before the server cancels it. */
    query_timeout: number;
    /** Seconds of idleness before TCP keep-alive probes start. */
    keepalive_interval?: number;
    tls?: {
      /** true: TLS or no connection; false: TLS when the server offers it, plaintext otherwise. */
      required: boolean;
      /** "peer" and "selfsigned_peer" check the server's certificate against `cacertfile` (or the system CAs); "none" does not. */
      verify_mode: 'peer' | 'selfsigned_peer' | 'none';
      cacertfile?: string;
    };
  };
}

export interface PgPoolOptions {
  /** Connections at most; `workers` when not given. */
  max?: number;
  /** Shown in pg_stat_activity; the outbox uses it to tell live owners of claims from dead ones. */
  applicationName?: string;
  /** Keep idle connections open (the outbox's liveness marker). */
  keepIdle?: boolean;
  /** Told about things worth logging (a TLS fallback, a dropped idle connection). */
  onWarning?: (what: string, message: string) => void;
}

/** A pool that has answered one query; TLS falls back to plaintext only when the pool's tls table does not require it. */
export async function openPgPool(s: PgPoolSettings, o: PgPoolOptions = {}): Promise<pg.Pool> {
  const c = s.connection;
  let ssl: pg.PoolConfig['ssl'] = false;
  if (c.tls !== undefined) {
    const verify = c.tls.verify_mode !== 'none';
    ssl = { rejectUnauthorized: verify };
    // "peer" and "selfsigned_peer" both check the chain against `cacertfile`
    // (which may hold the self-signed certificate itself) and the host name.
    if (c.tls.cacertfile !== undefined) ssl.ca = await readFile(c.tls.cacertfile, 'utf8');
  }
  const make = (withSsl: pg.PoolConfig['ssl']) => {
    const pool = new pg.Pool({
      host: c.host,
      port: c.port,
      database: c.database,
      user: c.username,
      password: c.password,
      ssl: withSsl,
      max: o.max ?? s.workers,
      connectionTimeoutMillis: s.call_timeout,
      statement_timeout: c.query_timeout,
      // The server cancels a slow statement; this catches a connection that went silent.
      query_timeout: c.query_timeout + 2000,
      keepAlive: c.keepalive_interval !== undefined,
      keepAliveInitialDelayMillis: (c.keepalive_interval ?? 0) * 1000,
      application_name: o.applicationName ?? 'petrel',
      idleTimeoutMillis: o.keepIdle ? 0 : 30_000,
      allowExitOnIdle: true,
    });
    // An idle connection that breaks is dropped by the pool; without a listener it would end the process.
    pool.on('error', (err) => o.onWarning?.('rdbms_connection_lost', `an idle PostgreSQL connection failed: ${err.message}`));
    return pool;
  };
  let pool = make(ssl);
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => {});
    const noTls = /does not support SSL/i.test((err as Error).message);
    if (!(noTls && c.tls !== undefined && !c.tls.required)) throw connectError(s, err);
    o.onWarning?.('rdbms_tls_unavailable', `PostgreSQL at ${c.host}:${c.port} does not offer TLS; connecting without it (set tls.required = true to refuse)`);
    pool = make(false);
    try {
      await pool.query('SELECT 1');
    } catch (err2) {
      await pool.end().catch(() => {});
      throw connectError(s, err2);
    }
  }
  return pool;
}

function connectError(s: PgPoolSettings, err: unknown): Error {
  const c = s.connection;
  const e = new Error(`cannot use PostgreSQL database "${c.database}" at ${c.host}:${c.port} as "${c.username}": ${(err as Error).message}`);
  (e as Error & { cause: unknown }).cause = err;
  return e;
}

const STORE_STEPS: readonly string[] = [
  `
  CREATE TABLE IF NOT EXISTS petrel_users (
    domain TEXT NOT NULL,
    username TEXT NOT NULL,
    credentials JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (domain, username)
  );
  CREATE TABLE IF NOT EXISTS petrel_roster (
    domain TEXT NOT NULL,
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask TEXT CHECK (ask IS NULL OR ask = 'subscribe'),
    pending_in BOOLEAN NOT NULL DEFAULT false,
    groups TEXT[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (domain, username, contact)
  );
  CREATE TABLE IF NOT EXISTS petrel_offline (
    id BIGSERIAL PRIMARY KEY,
    domain TEXT NOT NULL,
    username TEXT NOT NULL,
    sender TEXT NOT NULL,
    xml TEXT NOT NULL,
    stored_at BIGINT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS petrel_offline_by_user ON petrel_offline (domain, username, id);
  `,
];

interface RosterRow {
  contact: string;
  name: string | null;
  subscription: string;
  ask: string | null;
  pending_in: boolean;
  groups: string[];
}

function rosterItemOf(r: RosterRow): RosterItem {
  return {
    jid: r.contact,
    name: r.name,
    subscription: r.subscription as RosterItem['subscription'],
    ask: r.ask === 'subscribe' ? 'subscribe' : null,
    pendingIn: r.pending_in,
    groups: r.groups,
  };
}

export interface PostgresStorage extends Storage {
  readonly pool: pg.Pool;
}

/** Opens the pool, checks the server answers, creates or migrates the tables. */
export async function openPostgresStorage(s: PgPoolSettings, o: PgPoolOptions = {}): Promise<PostgresStorage> {
  const pool = await openPgPool(s, o);
  try {
    await migratePg(pool, 'store', STORE_STEPS);
  } catch (err) {
    await pool.end().catch(() => {});
    throw err;
  }
  return new PgStore(pool);
}

/** The hot queries are named, so each connection parses them once. */
function q<R extends pg.QueryResultRow>(pool: pg.Pool, name: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
  return pool.query<R>({ name: `petrel_${name}`, text, values });
}

class PgStore implements PostgresStorage {
  readonly pool: pg.Pool;
  readonly users: UserStore;
  readonly roster: RosterStore;
  readonly offline: OfflineStore;
  #closed = false;

  constructor(pool: pg.Pool) {
    this.pool = pool;
    const self = this;
    const db = () => {
      if (self.#closed) throw new Error('the PostgreSQL store is closed');
      return pool;
    };

    this.users = {
      async createUser(user: string, domain: string, creds: StoredCredentials): Promise<boolean> {
        const r = await q(db(), 'create_user',
          `INSERT INTO petrel_users (domain, username, credentials, created_at) VALUES ($1, $2, $3::jsonb, $4)
           ON CONFLICT (domain, username) DO NOTHING`,
          [domain, user, JSON.stringify(creds), Date.now()]);
        return r.rowCount === 1;
      },
      async removeUser(user: string, domain: string): Promise<boolean> {
        // One statement, so one transaction: the account goes with its roster and offline messages.
        const r = await q(db(), 'remove_user',
          `WITH ro AS (DELETE FROM petrel_roster WHERE domain = $1 AND username = $2),
                ol AS (DELETE FROM petrel_offline WHERE domain = $1 AND username = $2)
           DELETE FROM petrel_users WHERE domain = $1 AND username = $2`,
          [domain, user]);
        return (r.rowCount ?? 0) > 0;
      },
      async getCredentials(user: string, domain: string): Promise<StoredCredentials | null> {
        const r = await q<{ credentials: StoredCredentials }>(db(), 'get_credentials',
          'SELECT credentials FROM petrel_users WHERE domain = $1 AND username = $2', [domain, user]);
        return r.rows[0]?.credentials ?? null;
      },
      async userExists(user: string, domain: string): Promise<boolean> {
        const r = await q(db(), 'user_exists', 'SELECT 1 FROM petrel_users WHERE domain = $1 AND username = $2', [domain, user]);
        return r.rows.length > 0;
      },
      async countUsers(domain: string): Promise<number> {
        const r = await q<{ n: string }>(db(), 'count_users', 'SELECT COUNT(*) AS n FROM petrel_users WHERE domain = $1', [domain]);
        return Number(r.rows[0]!.n);
      },
    };

    const rosterColumns = 'contact, name, subscription, ask, pending_in, groups';
    this.roster = {
      async getRoster(user: string, domain: string): Promise<RosterItem[]> {
        const r = await q<RosterRow>(db(), 'get_roster',
          `SELECT ${rosterColumns} FROM petrel_roster WHERE domain = $1 AND username = $2 ORDER BY contact`, [domain, user]);
        return r.rows.map(rosterItemOf);
      },
      async getItem(user: string, domain: string, contact: string): Promise<RosterItem | null> {
        const r = await q<RosterRow>(db(), 'get_roster_item',
          `SELECT ${rosterColumns} FROM petrel_roster WHERE domain = $1 AND username = $2 AND contact = $3`, [domain, user, contact]);
        return r.rows.length === 0 ? null : rosterItemOf(r.rows[0]!);
      },
      async setItem(user: string, domain: string, item: RosterItem): Promise<void> {
        await q(db(), 'set_roster_item',
          `INSERT INTO petrel_roster (domain, username, contact, name, subscription, ask, pending_in, groups)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[])
           ON CONFLICT (domain, username, contact) DO UPDATE SET
             name = excluded.name, subscription = excluded.subscription, ask = excluded.ask,
             pending_in = excluded.pending_in, groups = excluded.groups`,
          [domain, user, item.jid, item.name, item.subscription, item.ask, item.pendingIn, item.groups]);
      },
      async removeItem(user: string, domain: string, contact: string): Promise<void> {
        await q(db(), 'remove_roster_item', 'DELETE FROM petrel_roster WHERE domain = $1 AND username = $2 AND contact = $3', [domain, user, contact]);
      },
    };

    this.offline = {
      async store(user: string, domain: string, msg: OfflineMessage): Promise<void> {
        await q(db(), 'store_offline',
          'INSERT INTO petrel_offline (domain, username, sender, xml, stored_at) VALUES ($1, $2, $3, $4, $5)',
          [domain, user, msg.from, msg.xml, msg.timestamp]);
      },
      async count(user: string, domain: string): Promise<number> {
        const r = await q<{ n: string }>(db(), 'count_offline', 'SELECT COUNT(*) AS n FROM petrel_offline WHERE domain = $1 AND username = $2', [domain, user]);
        return Number(r.rows[0]!.n);
      },
      async popAll(user: string, domain: string): Promise<OfflineMessage[]> {
        // Read and delete in one statement: a message stored meanwhile by
        // another connection is not in this statement's snapshot, so it is
        // neither deleted unseen nor handed over twice.
        const r = await q<{ id: string; sender: string; xml: string; stored_at: string }>(db(), 'pop_offline',
          'DELETE FROM petrel_offline WHERE domain = $1 AND username = $2 RETURNING id, sender, xml, stored_at', [domain, user]);
        return r.rows
          .map((row) => ({ id: BigInt(row.id), msg: { from: row.sender, xml: row.xml, timestamp: Number(row.stored_at) } }))
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
          .map((x) => x.msg);
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.pool.end();
  }
}
