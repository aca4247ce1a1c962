// mod_roster's store: its table and migrations in both stores, and the
// interface both implementations (store-sqlite.ts, store-pg.ts) follow.
import type { Migrations } from '../../storage/migrations.ts';
import type { StoreKind } from '../../storage/types.ts';
import type { Roster, RosterItem } from '../../routing/types.ts';
import { sqliteRosterStore } from './store-sqlite.ts';
import { pgRosterStore } from './store-pg.ts';

/** The roster routing reads (routing/types.ts Roster), plus what the module itself changes. */
export interface RosterStore extends Roster {
  /** Items on the user's roster. */
  count(user: string, domain: string): Promise<number>;
  removeItem(user: string, domain: string, contact: string): Promise<void>;
  /** Deletes the user's whole roster (user_removed); the items of others that name the user stay, as in MongooseIM. */
  removeUser(user: string, domain: string): Promise<void>;
}

// Step 1 is the table of the release that kept every table under one schema
// version (SQLite's user_version, PostgreSQL's component "store"): written
// IF NOT EXISTS, it adopts such a store as it is, rows included. Later steps
// are appended, never edited.
export const ROSTER_MIGRATIONS: Migrations = {
  component: 'mod_roster',
  internal: [
    `CREATE TABLE IF NOT EXISTS roster (
      user TEXT NOT NULL,
      domain TEXT NOT NULL,
      contact TEXT NOT NULL,
      name TEXT,
      subscription TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
      ask TEXT CHECK (ask IS NULL OR ask = 'subscribe'),
      pending_in INTEGER NOT NULL DEFAULT 0,
      groups TEXT NOT NULL DEFAULT '[]',
      PRIMARY KEY (domain, user, contact)
    ) WITHOUT ROWID`,
  ],
  rdbms: [
    `CREATE TABLE IF NOT EXISTS petrel_roster (
      domain TEXT NOT NULL,
      username TEXT NOT NULL,
      contact TEXT NOT NULL,
      name TEXT,
      subscription TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
      ask TEXT CHECK (ask IS NULL OR ask = 'subscribe'),
      pending_in BOOLEAN NOT NULL DEFAULT false,
      groups TEXT[] NOT NULL DEFAULT '{}',
      PRIMARY KEY (domain, username, contact)
    )`,
  ],
};

export const ROSTER_STORE: StoreKind<RosterStore> = { migrations: ROSTER_MIGRATIONS, internal: sqliteRosterStore, rdbms: pgRosterStore };

export type { RosterItem };
