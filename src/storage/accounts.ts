// The accounts: the core's own data (what auth checks), so they stay in the
// storage layer rather than in a module: the c2s session (a higher layer)
// reads them through UserStore, and the command-line tool creates them
// without a server. `auth.methods` chooses the store, as in MongooseIM
// ("internal" or "rdbms").
import type { DatabaseSync } from 'node:sqlite';
import type pg from 'pg';
import { fail } from '../config/schema.ts';
import type { PetrelConfig } from '../config/types.ts';
import type { Migrations } from './migrations.ts';
import { namedQuery as q } from './postgres.ts';
import { hasRdbmsPool, NEEDS_POOL } from './select.ts';
import type { StoreBackend, StoreKind, StoredCredentials, UserStore } from './types.ts';

// Step 1 is the table of the release that kept every table under one schema
// version (SQLite's user_version, PostgreSQL's component "store"): written
// IF NOT EXISTS, it adopts such a store as it is, rows included.
export const ACCOUNTS_MIGRATIONS: Migrations = {
  component: 'accounts',
  internal: [
    `CREATE TABLE IF NOT EXISTS users (
      user TEXT NOT NULL,
      domain TEXT NOT NULL,
      credentials TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      PRIMARY KEY (domain, user)
    ) WITHOUT ROWID`,
  ],
  rdbms: [
    `CREATE TABLE IF NOT EXISTS petrel_users (
      domain TEXT NOT NULL,
      username TEXT NOT NULL,
      credentials JSONB NOT NULL,
      created_at BIGINT NOT NULL,
      PRIMARY KEY (domain, username)
    )`,
  ],
};

/** Where the accounts live, and the option that says so (named in errors). */
export function accountsBackend(config: PetrelConfig): { backend: StoreBackend; optionPath: string } {
  const backend: StoreBackend = config.auth.methods[0] === 'rdbms' ? 'rdbms' : 'internal';
  return { backend, optionPath: config.auth.rdbms !== undefined ? 'auth.rdbms' : 'auth.methods[0]' };
}

function sqliteUsers(db: DatabaseSync): UserStore {
  const create = db.prepare('INSERT INTO users (user, domain, credentials, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (domain, user) DO NOTHING');
  const remove = db.prepare('DELETE FROM users WHERE domain = ? AND user = ?');
  const credentials = db.prepare('SELECT credentials FROM users WHERE domain = ? AND user = ?');
  const exists = db.prepare('SELECT 1 AS found FROM users WHERE domain = ? AND user = ?');
  const count = db.prepare('SELECT COUNT(*) AS n FROM users WHERE domain = ?');
  return {
    async createUser(user, domain, creds) {
      return Number(create.run(user, domain, JSON.stringify(creds), Date.now()).changes) === 1;
    },
    async createUsers(accounts) {
      const now = Date.now();
      db.exec('BEGIN IMMEDIATE');
      try {
        for (let i = 0; i < accounts.length; i++) {
          const a = accounts[i]!;
          if (Number(create.run(a.user, a.domain, JSON.stringify(a.creds), now).changes) !== 1) {
            db.exec('ROLLBACK');
            return i;
          }
        }
        db.exec('COMMIT');
        return -1;
      } catch (err) {
        if (db.isTransaction) db.exec('ROLLBACK');
        throw err;
      }
    },
    async removeUser(user, domain) {
      return Number(remove.run(domain, user).changes) > 0;
    },
    async getCredentials(user, domain) {
      const row = credentials.get(domain, user) as { credentials: string } | undefined;
      return row === undefined ? null : (JSON.parse(row.credentials) as StoredCredentials);
    },
    async userExists(user, domain) {
      return exists.get(domain, user) !== undefined;
    },
    async countUsers(domain) {
      return Number((count.get(domain) as { n: number }).n);
    },
  };
}

function pgUsers(pool: pg.Pool): UserStore {
  return {
    async createUser(user, domain, creds) {
      const r = await q(pool, 'create_user',
        `INSERT INTO petrel_users (domain, username, credentials, created_at) VALUES ($1, $2, $3::jsonb, $4)
         ON CONFLICT (domain, username) DO NOTHING`,
        [domain, user, JSON.stringify(creds), Date.now()]);
      return r.rowCount === 1;
    },
    async createUsers(accounts) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const now = Date.now();
        for (let i = 0; i < accounts.length; i++) {
          const a = accounts[i]!;
          const r = await client.query(
            `INSERT INTO petrel_users (domain, username, credentials, created_at) VALUES ($1, $2, $3::jsonb, $4)
             ON CONFLICT (domain, username) DO NOTHING`,
            [a.domain, a.user, JSON.stringify(a.creds), now],
          );
          if (r.rowCount !== 1) {
            await client.query('ROLLBACK');
            return i;
          }
        }
        await client.query('COMMIT');
        return -1;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    async removeUser(user, domain) {
      const r = await q(pool, 'remove_user', 'DELETE FROM petrel_users WHERE domain = $1 AND username = $2', [domain, user]);
      return (r.rowCount ?? 0) > 0;
    },
    async getCredentials(user, domain) {
      const r = await q<{ credentials: StoredCredentials }>(pool, 'get_credentials',
        'SELECT credentials FROM petrel_users WHERE domain = $1 AND username = $2', [domain, user]);
      return r.rows[0]?.credentials ?? null;
    },
    async userExists(user, domain) {
      const r = await q(pool, 'user_exists', 'SELECT 1 FROM petrel_users WHERE domain = $1 AND username = $2', [domain, user]);
      return r.rows.length > 0;
    },
    async countUsers(domain) {
      const r = await q<{ n: string }>(pool, 'count_users', 'SELECT COUNT(*) AS n FROM petrel_users WHERE domain = $1', [domain]);
      return Number(r.rows[0]!.n);
    },
  };
}

export const ACCOUNTS: StoreKind<UserStore> = { migrations: ACCOUNTS_MIGRATIONS, internal: sqliteUsers, rdbms: pgUsers };

/** Fails naming the auth option when accounts are set to "rdbms" without a pool (checked when the configuration loads). */
export function checkAccountsBackend(config: PetrelConfig): void {
  const { backend, optionPath } = accountsBackend(config);
  if (backend === 'rdbms' && !hasRdbmsPool(config)) fail(optionPath, `the rdbms auth method ${NEEDS_POOL}`);
}
