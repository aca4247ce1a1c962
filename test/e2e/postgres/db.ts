// A throw-away PostgreSQL database for tests: created from the `postgres`
// database under a random name, dropped afterwards. Tests that need
// PostgreSQL check first that it answers and skip with a message if not.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { PgPoolSettings } from '../../../src/storage/postgres.ts';

export const PG_HOST = '127.0.0.1';
export const PG_PORT = 5432;
export const PG_USER = 'postgres';
/** The machine's PostgreSQL trusts local connections; this stands in for a real password. */
export const PG_PASSWORD = 'not-a-real-password';
export const PG_UNREACHABLE = `PostgreSQL is not reachable at ${PG_HOST}:${PG_PORT}`;

function admin(database = 'postgres'): pg.Client {
  return new pg.Client({ host: PG_HOST, port: PG_PORT, user: PG_USER, password: PG_PASSWORD, database, connectionTimeoutMillis: 2000 });
}

/** False unless PostgreSQL answers within 2 s. */
export async function pgReachable(): Promise<boolean> {
  const c = admin();
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}

export interface TestDatabase {
  name: string;
  /** Pool settings as [outgoing_pools.rdbms.default] would give them. */
  settings: PgPoolSettings;
  /** The TOML of an [outgoing_pools.rdbms.default] pool on this database. */
  toml: string;
  query<R extends pg.QueryResultRow = any>(sql: string, values?: unknown[]): Promise<R[]>;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `petrel_test_${randomBytes(6).toString('hex')}`;
  const c = admin();
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const pool = new pg.Pool({ host: PG_HOST, port: PG_PORT, user: PG_USER, password: PG_PASSWORD, database: name, max: 2 });
  pool.on('error', () => {});
  return {
    name,
    settings: {
      workers: 4,
      call_timeout: 5000,
      connection: { host: PG_HOST, port: PG_PORT, database: name, username: PG_USER, password: PG_PASSWORD, query_timeout: 5000 },
    },
    toml:
      `[outgoing_pools.rdbms.default]\n  workers = 4\n  [outgoing_pools.rdbms.default.connection]\n    driver = "pgsql"\n` +
      `    host = "${PG_HOST}"\n    port = ${PG_PORT}\n    database = "${name}"\n    username = "${PG_USER}"\n    password = "${PG_PASSWORD}"\n`,
    async query(sql, values) {
      return (await pool.query(sql, values)).rows;
    },
    async drop() {
      await pool.end().catch(() => {});
      const d = admin();
      await d.connect();
      try {
        await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await d.end();
      }
    },
  };
}
