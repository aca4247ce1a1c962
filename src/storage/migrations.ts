// One migration style for every table, whoever owns it (the core's accounts,
// a module's roster or offline messages, the event pusher's outbox): a
// component names its steps for the embedded store ("internal", SQLite) and
// for PostgreSQL ("rdbms"); step i moves the component's stored version from
// i to i + 1. Steps are only ever appended once released, so an old store is
// brought up to date. Both stores keep the versions in one table,
// `petrel_schema_version (component, version)`, and run a start-up's steps
// in one transaction under a lock, so that a server and the command-line
// tool opening the store together do not race.
import type { DatabaseSync } from 'node:sqlite';
import type pg from 'pg';

/** The tables of one component, for each store. */
export interface Migrations {
  /** Key in petrel_schema_version: unique across the server ("accounts", "mod_roster", "outbox", ...). */
  readonly component: string;
  /** SQLite steps. */
  readonly internal: readonly string[];
  /** PostgreSQL steps. */
  readonly rdbms: readonly string[];
}

const VERSION_TABLE = 'CREATE TABLE IF NOT EXISTS petrel_schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)';

/** Advisory lock key taken while a schema is created or migrated ("petrel" in ASCII). */
export const SCHEMA_LOCK_KEY = 0x706574726c;

/** Brings `component`'s SQLite tables to the last of `steps`, under the write lock. */
export function migrateSqlite(db: DatabaseSync, component: string, steps: readonly string[]): void {
  const read = (): number => {
    const r = db.prepare('SELECT version FROM petrel_schema_version WHERE component = ?').get(component) as { version: number } | undefined;
    return r === undefined ? 0 : Number(r.version);
  };
  // BEGIN IMMEDIATE takes the write lock first; the version is read under it,
  // since another process may have migrated meanwhile.
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(VERSION_TABLE);
    const from = read();
    for (let v = from; v < steps.length; v++) db.exec(steps[v]!);
    if (from < steps.length) {
      db.prepare('INSERT INTO petrel_schema_version (component, version) VALUES (?, ?) ON CONFLICT (component) DO UPDATE SET version = excluded.version').run(
        component,
        steps.length,
      );
    }
    db.exec('COMMIT');
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

/** Brings `component`'s PostgreSQL tables to the last of `steps`, in one transaction under an advisory lock. */
export async function migratePg(pool: pg.Pool, component: string, steps: readonly string[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // Taken first: two processes creating the same table at once can otherwise fail.
    await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK_KEY]);
    await client.query(VERSION_TABLE);
    const r = await client.query<{ version: number }>('SELECT version FROM petrel_schema_version WHERE component = $1', [component]);
    const from = r.rows[0]?.version ?? 0;
    for (let v = from; v < steps.length; v++) await client.query(steps[v]!);
    if (from < steps.length) {
      await client.query(
        `INSERT INTO petrel_schema_version (component, version) VALUES ($1, $2)
         ON CONFLICT (component) DO UPDATE SET version = excluded.version`,
        [component, steps.length],
      );
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
