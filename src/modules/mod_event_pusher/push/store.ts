// The push backend's registrations (XEP-0357 §5): for each account, the
// (pubsub service, node) pairs it enabled, with the publish-options form it
// gave. Tables and migrations in both stores, and the interface both
// implementations (store-sqlite.ts, store-pg.ts) follow. MongooseIM keeps
// the same record (mod_event_pusher_push_mnesia / _rdbms).
import type { Migrations } from '../../../storage/migrations.ts';
import type { StoreKind } from '../../../storage/types.ts';
import { sqlitePushStore } from './store-sqlite.ts';
import { pgPushStore } from './store-pg.ts';

export interface Registration {
  /** Bare JID of the pubsub service. */
  pubsub: string;
  node: string;
  /** The publish-options fields (FORM_TYPE left out). */
  form: Readonly<Record<string, string>>;
}

export type EnableResult = 'ok' | 'limit';

export interface PushStore {
  /**
   * Adds or replaces the registration of (pubsub, node); a new one is
   * refused ('limit') when the account already has `max`.
   */
  enable(user: string, domain: string, reg: Registration, max: number): Promise<EnableResult>;
  /** Removes the registration of `node` at `pubsub`, or every node of `pubsub` when `node` is undefined; returns how many went. */
  disable(user: string, domain: string, pubsub: string, node: string | undefined): Promise<number>;
  /** The account's registrations, oldest first. */
  list(user: string, domain: string): Promise<Registration[]>;
  /** Every registration of the account (user_removed). */
  removeUser(user: string, domain: string): Promise<void>;
}

export const PUSH_MIGRATIONS: Migrations = {
  component: 'mod_event_pusher_push',
  internal: [
    `CREATE TABLE IF NOT EXISTS event_pusher_push_subscription (
      domain TEXT NOT NULL,
      user TEXT NOT NULL,
      pubsub_jid TEXT NOT NULL,
      node TEXT NOT NULL,
      form TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      PRIMARY KEY (domain, user, pubsub_jid, node)
    );`,
  ],
  rdbms: [
    `CREATE TABLE IF NOT EXISTS petrel_event_pusher_push_subscription (
      domain TEXT NOT NULL,
      username TEXT NOT NULL,
      pubsub_jid TEXT NOT NULL,
      node TEXT NOT NULL,
      form TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      PRIMARY KEY (domain, username, pubsub_jid, node)
    );`,
  ],
};

export const PUSH_STORE: StoreKind<PushStore> = { migrations: PUSH_MIGRATIONS, internal: sqlitePushStore, rdbms: pgPushStore };

/** The stored form: a JSON object of strings; anything else reads as no options. */
export function parseStoredForm(text: string): Record<string, string> {
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return {};
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
    return out;
  } catch {
    return {};
  }
}
