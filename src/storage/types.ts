// Storage interfaces. Every store is asynchronous so that the embedded SQLite
// store and a networked one (PostgreSQL) share one contract. The storage
// layer knows the core's accounts and nothing of modules: a module brings its
// own tables (a StoreKind) and asks StoreAccess for the store its own
// `backend` option names.
import type { DatabaseSync } from 'node:sqlite';
import type pg from 'pg';
import type { StoredCredentials } from '../xmpp/sasl/types.ts';
import type { Migrations } from './migrations.ts';

/** The credentials are defined by the SASL layer that checks them. */
export type { ScramCredentials, StoredCredentials } from '../xmpp/sasl/types.ts';

/** "internal": the embedded SQLite file under general.data_dir; "rdbms": PostgreSQL through [outgoing_pools.rdbms.default]. */
export type StoreBackend = 'internal' | 'rdbms';

/** The accounts (the core's auth data). */
/** One account for UserStore.createUsers. */
export interface NewAccount {
  user: string;
  domain: string;
  creds: StoredCredentials;
}

export interface UserStore {
  /** False when the user already exists. */
  createUser(user: string, domain: string, creds: StoredCredentials): Promise<boolean>;
  /**
   * Creates every account in one transaction, or none: -1 when all were
   * created, else the index of the first that exists already (nothing is
   * created then).
   */
  createUsers(accounts: ReadonlyArray<NewAccount>): Promise<number>;
  /**
   * False when there was no such user. Removes the account alone: the data
   * modules keep about the user goes through the user_removed hook.
   */
  removeUser(user: string, domain: string): Promise<boolean>;
  getCredentials(user: string, domain: string): Promise<StoredCredentials | null>;
  userExists(user: string, domain: string): Promise<boolean>;
  countUsers(domain: string): Promise<number>;
}

/**
 * One kind of store, as its owner (the core or a module) declares it: its
 * tables and their versioned migrations in both backends, and how to build
 * the store over each once the tables are up to date.
 */
export interface StoreKind<S> {
  readonly migrations: Migrations;
  /** The store over the embedded database; its statements may be prepared at once. */
  internal(db: DatabaseSync): S;
  /** The store over the PostgreSQL pool. */
  rdbms(pool: pg.Pool): S;
}

/**
 * What the storage layer offers whoever keeps data: the two databases,
 * opened on first use only, and opening a store kind in one of them.
 */
export interface StoreAccess {
  /** The embedded database `<data_dir>/petrel.sqlite` (one connection, WAL, busy timeout), opened on first use. */
  sqlite(): DatabaseSync;
  /**
   * The pool [outgoing_pools.rdbms.default], opened on first use. Throws a
   * ConfigError naming `optionPath` (the option that asked for "rdbms") when
   * no such pool is configured.
   */
  rdbms(optionPath: string): Promise<pg.Pool>;
  /**
   * Brings `kind`'s tables up to date in the store `backend` names and builds
   * the store there. `optionPath` is the option that chose `backend`, named
   * in the error when "rdbms" has no pool.
   */
  open<S>(kind: StoreKind<S>, backend: StoreBackend, optionPath: string): Promise<S>;
}
