// PostgreSQL as a store: pools of `workers` connections opened from an
// [outgoing_pools.rdbms.TAG] table. Tables are Petrel's own (prefixed
// `petrel_`, so they can sit beside MongooseIM's in one database without
// clashing); each owner (the accounts, a module, the outbox) declares and
// migrates its own (src/storage/migrations.ts). Every call is a network
// round trip handled by node-postgres; nothing here blocks the event loop.
import { readFile } from 'node:fs/promises';
import pg from 'pg';

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
  /** Settings of the server's side of each connection, sent at connect (e.g. `{ tcp_keepalives_idle: 10 }`). */
  serverSettings?: Readonly<Record<string, number>>;
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
      options: o.serverSettings === undefined ? undefined : Object.entries(o.serverSettings).map(([k, v]) => `-c ${k}=${v}`).join(' '),
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

/**
 * A named query: each connection parses it once. `name` must be unique
 * across the server for one text; owners prefix theirs ("roster_get", ...).
 */
export function namedQuery<R extends pg.QueryResultRow = any>(pool: pg.Pool, name: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
  return pool.query<R>({ name: `petrel_${name}`, text, values });
}
