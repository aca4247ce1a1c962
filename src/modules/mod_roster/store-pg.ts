// The roster in PostgreSQL (table `petrel_roster`).
import type pg from 'pg';
import { namedQuery as q } from '../../storage/postgres.ts';
import type { RosterItem } from '../../routing/types.ts';
import type { RosterStore } from './store.ts';

interface RosterRow {
  contact: string;
  name: string | null;
  subscription: string;
  ask: string | null;
  pending_in: boolean;
  groups: string[];
}

function itemOf(r: RosterRow): RosterItem {
  return {
    jid: r.contact,
    name: r.name,
    subscription: r.subscription as RosterItem['subscription'],
    ask: r.ask === 'subscribe' ? 'subscribe' : null,
    pendingIn: r.pending_in,
    groups: r.groups,
  };
}

export function pgRosterStore(pool: pg.Pool): RosterStore {
  const columns = 'contact, name, subscription, ask, pending_in, groups';
  return {
    async getRoster(user, domain, limit) {
      const r = await q<RosterRow>(pool, 'roster_get',
        `SELECT ${columns} FROM petrel_roster WHERE domain = $1 AND username = $2 ORDER BY contact LIMIT $3`, [domain, user, limit ?? null]);
      return r.rows.map(itemOf);
    },
    async count(user, domain) {
      const r = await q<{ n: string }>(pool, 'roster_count', 'SELECT count(*) AS n FROM petrel_roster WHERE domain = $1 AND username = $2', [domain, user]);
      return Number(r.rows[0]!.n);
    },
    async getItem(user, domain, contact) {
      const r = await q<RosterRow>(pool, 'roster_get_item',
        `SELECT ${columns} FROM petrel_roster WHERE domain = $1 AND username = $2 AND contact = $3`, [domain, user, contact]);
      return r.rows.length === 0 ? null : itemOf(r.rows[0]!);
    },
    async setItem(user, domain, item) {
      await q(pool, 'roster_set_item',
        `INSERT INTO petrel_roster (domain, username, contact, name, subscription, ask, pending_in, groups)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[])
         ON CONFLICT (domain, username, contact) DO UPDATE SET
           name = excluded.name, subscription = excluded.subscription, ask = excluded.ask,
           pending_in = excluded.pending_in, groups = excluded.groups`,
        [domain, user, item.jid, item.name, item.subscription, item.ask, item.pendingIn, item.groups]);
    },
    async removeItem(user, domain, contact) {
      await q(pool, 'roster_remove_item', 'DELETE FROM petrel_roster WHERE domain = $1 AND username = $2 AND contact = $3', [domain, user, contact]);
    },
    async removeUser(user, domain) {
      await q(pool, 'roster_remove_user', 'DELETE FROM petrel_roster WHERE domain = $1 AND username = $2', [domain, user]);
    },
  };
}
