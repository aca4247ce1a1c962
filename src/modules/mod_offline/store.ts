// mod_offline's store: its table and migrations in both stores, and the
// interface both implementations (store-sqlite.ts, store-pg.ts) follow.
import type { Migrations } from '../../storage/migrations.ts';
import type { StoreKind } from '../../storage/types.ts';
import { sqliteOfflineStore } from './store-sqlite.ts';
import { pgOfflineStore } from './store-pg.ts';

export interface OfflineMessage {
  /** Serialised stanza. */
  xml: string;
  from: string;
  /** Milliseconds since the epoch when the server stored it. */
  timestamp: number;
}

export interface OfflineStore {
  store(user: string, domain: string, msg: OfflineMessage): Promise<void>;
  count(user: string, domain: string): Promise<number>;
  /** Messages stored for the user and their characters (as stored; rows written before sizes were kept count 0). */
  usage(user: string, domain: string): Promise<{ count: number; chars: number }>;
  /** Returns and deletes every stored message, oldest first. */
  popAll(user: string, domain: string): Promise<OfflineMessage[]>;
  /** Deletes every stored message of the user (user_removed). */
  removeUser(user: string, domain: string): Promise<void>;
}

// Step 1 is the table of the release that kept every table under one schema
// version (SQLite's user_version, PostgreSQL's component "store"): written
// IF NOT EXISTS, it adopts such a store as it is, rows included. Later steps
// are appended, never edited.
export const OFFLINE_MIGRATIONS: Migrations = {
  component: 'mod_offline',
  internal: [
    `CREATE TABLE IF NOT EXISTS offline (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      user TEXT NOT NULL,
      domain TEXT NOT NULL,
      "from" TEXT NOT NULL,
      xml TEXT NOT NULL,
      timestamp INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS offline_by_user ON offline (domain, user, id);`,
    // The size of each message, and an index that holds it, so that a user's
    // usage (checked before each store) is read from the index alone, as
    // the count was.
    `ALTER TABLE offline ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS offline_usage ON offline (domain, user, size);`,
  ],
  rdbms: [
    `CREATE TABLE IF NOT EXISTS petrel_offline (
      id BIGSERIAL PRIMARY KEY,
      domain TEXT NOT NULL,
      username TEXT NOT NULL,
      sender TEXT NOT NULL,
      xml TEXT NOT NULL,
      stored_at BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS petrel_offline_by_user ON petrel_offline (domain, username, id);`,
    `ALTER TABLE petrel_offline ADD COLUMN IF NOT EXISTS size BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS petrel_offline_usage ON petrel_offline (domain, username, size);`,
  ],
};

export const OFFLINE_STORE: StoreKind<OfflineStore> = { migrations: OFFLINE_MIGRATIONS, internal: sqliteOfflineStore, rdbms: pgOfflineStore };
