// The embedded store: one SQLite file per server instance, opened with
// node:sqlite. WAL mode lets the command-line tool register users while the
// server keeps the file open; busy_timeout makes either side wait for the
// other's short write transactions instead of failing at once.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type {
  Ask,
  OfflineMessage,
  OfflineStore,
  RosterItem,
  RosterStore,
  Storage,
  StoredCredentials,
  UserStore,
} from './types.ts';

export interface SqliteStorage extends Storage {
  /** The open database, for further stores that keep their tables in the same file. */
  readonly db: DatabaseSync;
  readonly file: string;
}

/** Milliseconds a connection waits for another one's write lock. */
const BUSY_TIMEOUT_MS = 5000;

/**
 * Schema steps; step i moves user_version from i to i + 1. Steps are never
 * edited once released, only appended, so an old file can be brought up to date.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE users (
    user TEXT NOT NULL,
    domain TEXT NOT NULL,
    credentials TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (domain, user)
  ) WITHOUT ROWID;

  CREATE TABLE roster (
    user TEXT NOT NULL,
    domain TEXT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask TEXT CHECK (ask IS NULL OR ask = 'subscribe'),
    pending_in INTEGER NOT NULL DEFAULT 0,
    groups TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (domain, user, contact)
  ) WITHOUT ROWID;

  CREATE TABLE offline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    domain TEXT NOT NULL,
    "from" TEXT NOT NULL,
    xml TEXT NOT NULL,
    timestamp INTEGER NOT NULL
  );
  CREATE INDEX offline_by_user ON offline (domain, user, id);
  `,
];

interface RosterRow {
  contact: string;
  name: string | null;
  subscription: string;
  ask: string | null;
  pending_in: number;
  groups: string;
}

interface OfflineRow {
  id: number;
  from: string;
  xml: string;
  timestamp: number;
}

function rosterItemOf(row: RosterRow): RosterItem {
  return {
    jid: row.contact,
    name: row.name,
    subscription: row.subscription as RosterItem['subscription'],
    ask: (row.ask === 'subscribe' ? 'subscribe' : null) satisfies Ask,
    pendingIn: row.pending_in !== 0,
    groups: JSON.parse(row.groups) as string[],
  };
}

/** Runs `fn` inside a write transaction, taking the lock up front so that a concurrent writer waits (busy_timeout) rather than deadlocks. */
function inTransaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const r = fn();
    db.exec('COMMIT');
    return r;
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

function migrate(db: DatabaseSync): void {
  const current = () => Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
  if (current() >= MIGRATIONS.length) return;
  // Re-read the version under the lock: another process may have migrated meanwhile.
  inTransaction(db, () => {
    for (let v = current(); v < MIGRATIONS.length; v++) {
      db.exec(MIGRATIONS[v]!);
      db.exec(`PRAGMA user_version = ${v + 1}`);
    }
  });
}

class SqliteStore implements SqliteStorage {
  readonly db: DatabaseSync;
  readonly file: string;
  readonly users: UserStore;
  readonly roster: RosterStore;
  readonly offline: OfflineStore;
  #closed = false;

  constructor(file: string) {
    this.file = file;
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    const db = new DatabaseSync(file, { timeout: BUSY_TIMEOUT_MS });
    this.db = db;
    try {
      db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      // Switching a new file to WAL takes an exclusive lock and, when two
      // processes open the file at once, can fail at once with SQLITE_BUSY
      // instead of waiting; retry for a while (start-up only).
      untilNotBusy(() => db.exec('PRAGMA journal_mode = WAL'));
      // NORMAL in WAL mode: a power cut may lose the last commits but never corrupts the file.
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec('PRAGMA foreign_keys = ON');
      migrate(db);
    } catch (err) {
      db.close();
      throw err;
    }

    const q = {
      createUser: db.prepare(
        'INSERT INTO users (user, domain, credentials, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (domain, user) DO NOTHING',
      ),
      deleteUser: db.prepare('DELETE FROM users WHERE domain = ? AND user = ?'),
      deleteUserRoster: db.prepare('DELETE FROM roster WHERE domain = ? AND user = ?'),
      deleteUserOffline: db.prepare('DELETE FROM offline WHERE domain = ? AND user = ?'),
      getCredentials: db.prepare('SELECT credentials FROM users WHERE domain = ? AND user = ?'),
      userExists: db.prepare('SELECT 1 AS found FROM users WHERE domain = ? AND user = ?'),
      countUsers: db.prepare('SELECT COUNT(*) AS n FROM users WHERE domain = ?'),

      getRoster: db.prepare(
        'SELECT contact, name, subscription, ask, pending_in, groups FROM roster WHERE domain = ? AND user = ? ORDER BY contact',
      ),
      getItem: db.prepare(
        'SELECT contact, name, subscription, ask, pending_in, groups FROM roster WHERE domain = ? AND user = ? AND contact = ?',
      ),
      setItem: db.prepare(
        `INSERT INTO roster (user, domain, contact, name, subscription, ask, pending_in, groups)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (domain, user, contact) DO UPDATE SET
           name = excluded.name, subscription = excluded.subscription, ask = excluded.ask,
           pending_in = excluded.pending_in, groups = excluded.groups`,
      ),
      removeItem: db.prepare('DELETE FROM roster WHERE domain = ? AND user = ? AND contact = ?'),

      storeOffline: db.prepare('INSERT INTO offline (user, domain, "from", xml, timestamp) VALUES (?, ?, ?, ?, ?)'),
      countOffline: db.prepare('SELECT COUNT(*) AS n FROM offline WHERE domain = ? AND user = ?'),
      listOffline: db.prepare('SELECT id, "from", xml, timestamp FROM offline WHERE domain = ? AND user = ? ORDER BY id'),
      deleteOfflineUpTo: db.prepare('DELETE FROM offline WHERE domain = ? AND user = ? AND id <= ?'),
    } satisfies Record<string, StatementSync>;

    const self = this;

    this.users = {
      async createUser(user: string, domain: string, creds: StoredCredentials): Promise<boolean> {
        self.#check();
        const r = q.createUser.run(user, domain, JSON.stringify(creds), Date.now());
        return Number(r.changes) === 1;
      },
      async removeUser(user: string, domain: string): Promise<boolean> {
        self.#check();
        return inTransaction(db, () => {
          const r = q.deleteUser.run(domain, user);
          q.deleteUserRoster.run(domain, user);
          q.deleteUserOffline.run(domain, user);
          return Number(r.changes) > 0;
        });
      },
      async getCredentials(user: string, domain: string): Promise<StoredCredentials | null> {
        self.#check();
        const row = q.getCredentials.get(domain, user) as { credentials: string } | undefined;
        return row === undefined ? null : (JSON.parse(row.credentials) as StoredCredentials);
      },
      async userExists(user: string, domain: string): Promise<boolean> {
        self.#check();
        return q.userExists.get(domain, user) !== undefined;
      },
      async countUsers(domain: string): Promise<number> {
        self.#check();
        return Number((q.countUsers.get(domain) as { n: number }).n);
      },
    };

    this.roster = {
      async getRoster(user: string, domain: string): Promise<RosterItem[]> {
        self.#check();
        return (q.getRoster.all(domain, user) as unknown as RosterRow[]).map(rosterItemOf);
      },
      async getItem(user: string, domain: string, contact: string): Promise<RosterItem | null> {
        self.#check();
        const row = q.getItem.get(domain, user, contact) as RosterRow | undefined;
        return row === undefined ? null : rosterItemOf(row);
      },
      async setItem(user: string, domain: string, item: RosterItem): Promise<void> {
        self.#check();
        q.setItem.run(
          user,
          domain,
          item.jid,
          item.name,
          item.subscription,
          item.ask,
          item.pendingIn ? 1 : 0,
          JSON.stringify(item.groups),
        );
      },
      async removeItem(user: string, domain: string, contact: string): Promise<void> {
        self.#check();
        q.removeItem.run(domain, user, contact);
      },
    };

    this.offline = {
      async store(user: string, domain: string, msg: OfflineMessage): Promise<void> {
        self.#check();
        q.storeOffline.run(user, domain, msg.from, msg.xml, msg.timestamp);
      },
      async count(user: string, domain: string): Promise<number> {
        self.#check();
        return Number((q.countOffline.get(domain, user) as { n: number }).n);
      },
      async popAll(user: string, domain: string): Promise<OfflineMessage[]> {
        self.#check();
        // Read and delete under one lock so that a message stored by another
        // connection in between is neither lost nor delivered twice.
        return inTransaction(db, () => {
          const rows = q.listOffline.all(domain, user) as unknown as OfflineRow[];
          if (rows.length === 0) return [];
          q.deleteOfflineUpTo.run(domain, user, rows[rows.length - 1]!.id);
          return rows.map((r) => ({ from: r.from, xml: r.xml, timestamp: Number(r.timestamp) }));
        });
      },
    };
  }

  #check(): void {
    if (this.#closed) throw new Error(`storage ${this.file} is closed`);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      // Fold the WAL back into the main file so a stopped server leaves one file behind.
      this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } finally {
      this.db.close();
    }
  }
}

/** Opens (creating when needed) the SQLite store at `file` and brings its schema up to date. */
export function openSqliteStorage(file: string): SqliteStorage {
  return new SqliteStore(file);
}

function untilNotBusy(fn: () => void, deadlineMs = BUSY_TIMEOUT_MS): void {
  const end = Date.now() + deadlineMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      fn();
      return;
    } catch (err) {
      const busy = /locked|busy/i.test((err as Error).message);
      if (!busy || Date.now() >= end) throw err;
      Atomics.wait(pause, 0, 0, 20);
    }
  }
}
