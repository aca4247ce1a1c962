// Opening the stores of a configuration. The embedded SQLite file is opened
// only when a store asks for it, the PostgreSQL pool
// [outgoing_pools.rdbms.default] likewise; whoever keeps data (the accounts
// here, each module for itself) says which one with its own option.
import { dirname, join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import type pg from 'pg';
import type { Logger } from 'pino';
import { fail } from '../config/schema.ts';
import type { PetrelConfig } from '../config/types.ts';
import { ACCOUNTS, accountsBackend } from './accounts.ts';
import { ensurePrivateDir } from './data-dir.ts';
import { SQLITE_FILE } from './index.ts';
import { migratePg, migrateSqlite } from './migrations.ts';
import { openPgPool, type PgPoolSettings } from './postgres.ts';
import { NEEDS_POOL, RDBMS_POOL_TAG } from './select.ts';
import { closeSqliteDatabase, openSqliteDatabase } from './sqlite.ts';
import type { StoreAccess, StoreBackend, StoreKind, UserStore } from './types.ts';

export interface StoreAccessOptions {
  /** The embedded database's file (`<data_dir>/petrel.sqlite` for a server). */
  sqliteFile: string;
  /** The settings of [outgoing_pools.rdbms.default]; absent when there is no such pool. */
  rdbms?: PgPoolSettings;
  /** Told about things worth logging (a TLS fallback, a dropped idle connection). */
  onWarning?: (what: string, message: string) => void;
}

export interface OpenStoreAccess extends StoreAccess {
  /** Closes the database and the pool, if they were opened; stores built over them stop working. */
  close(): Promise<void>;
}

/** Access to both stores, each opened on first use. */
export function openStoreAccess(o: StoreAccessOptions): OpenStoreAccess {
  let db: DatabaseSync | undefined;
  let pool: Promise<pg.Pool> | undefined;
  let closed = false;
  const check = () => {
    if (closed) throw new Error('the stores are closed');
  };
  const access: OpenStoreAccess = {
    sqlite() {
      check();
      if (db === undefined) {
        if (o.sqliteFile !== ':memory:' && ensurePrivateDir(dirname(o.sqliteFile)) === 'tightened') {
          o.onWarning?.('data_dir_permissions_tightened', `${dirname(o.sqliteFile)} was open to other users; it is now 0700`);
        }
        db = openSqliteDatabase(o.sqliteFile);
      }
      return db;
    },
    async rdbms(optionPath) {
      check();
      if (o.rdbms === undefined) fail(optionPath, `"rdbms" ${NEEDS_POOL}`);
      pool ??= openPgPool(o.rdbms, { onWarning: o.onWarning });
      return pool;
    },
    async open<S>(kind: StoreKind<S>, backend: StoreBackend, optionPath: string): Promise<S> {
      const m = kind.migrations;
      if (backend === 'internal') {
        const d = access.sqlite();
        migrateSqlite(d, m.component, m.internal);
        return kind.internal(d);
      }
      const p = await access.rdbms(optionPath);
      await migratePg(p, m.component, m.rdbms);
      return kind.rdbms(p);
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        if (db !== undefined) closeSqliteDatabase(db);
      } finally {
        const p = await pool?.catch(() => undefined);
        await p?.end();
      }
    },
  };
  return access;
}

export interface Stores extends OpenStoreAccess {
  /** The accounts, in the store auth.methods names. */
  readonly users: UserStore;
}

export interface OpenStoresOptions {
  logger?: Logger;
}

/** Opens the accounts and gives access to both stores; throws a ConfigError when auth needs a pool that is not configured. */
export async function openStores(config: PetrelConfig, o: OpenStoresOptions = {}): Promise<Stores> {
  const onWarning = (what: string, message: string) => o.logger?.warn({ what }, message);
  const file = join(config.general.data_dir, SQLITE_FILE);
  const rdbms = config.outgoing_pools.rdbms?.[RDBMS_POOL_TAG];
  const access = openStoreAccess({ sqliteFile: file, rdbms, onWarning });
  const accounts = accountsBackend(config);
  let users: UserStore;
  try {
    users = await access.open(ACCOUNTS, accounts.backend, accounts.optionPath);
  } catch (err) {
    await access.close();
    throw err;
  }
  return {
    ...access,
    users,
  };
}
