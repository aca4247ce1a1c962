// The roster in the embedded store (table `roster`).
import type { DatabaseSync } from 'node:sqlite';
import type { RosterItem } from '../../routing/types.ts';
import type { RosterStore } from './store.ts';

interface RosterRow {
  contact: string;
  name: string | null;
  subscription: string;
  ask: string | null;
  pending_in: number;
  groups: string;
}

function itemOf(row: RosterRow): RosterItem {
  return {
    jid: row.contact,
    name: row.name,
    subscription: row.subscription as RosterItem['subscription'],
    ask: row.ask === 'subscribe' ? 'subscribe' : null,
    pendingIn: row.pending_in !== 0,
    groups: JSON.parse(row.groups) as string[],
  };
}

export function sqliteRosterStore(db: DatabaseSync): RosterStore {
  const columns = 'contact, name, subscription, ask, pending_in, groups';
  const list = db.prepare(`SELECT ${columns} FROM roster WHERE domain = ? AND user = ? ORDER BY contact`);
  const one = db.prepare(`SELECT ${columns} FROM roster WHERE domain = ? AND user = ? AND contact = ?`);
  const set = db.prepare(
    `INSERT INTO roster (user, domain, contact, name, subscription, ask, pending_in, groups)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (domain, user, contact) DO UPDATE SET
       name = excluded.name, subscription = excluded.subscription, ask = excluded.ask,
       pending_in = excluded.pending_in, groups = excluded.groups`,
  );
  const removeOne = db.prepare('DELETE FROM roster WHERE domain = ? AND user = ? AND contact = ?');
  const removeAll = db.prepare('DELETE FROM roster WHERE domain = ? AND user = ?');
  return {
    async getRoster(user, domain) {
      return (list.all(domain, user) as unknown as RosterRow[]).map(itemOf);
    },
    async getItem(user, domain, contact) {
      const row = one.get(domain, user, contact) as RosterRow | undefined;
      return row === undefined ? null : itemOf(row);
    },
    async setItem(user, domain, item) {
      set.run(user, domain, item.jid, item.name, item.subscription, item.ask, item.pendingIn ? 1 : 0, JSON.stringify(item.groups));
    },
    async removeItem(user, domain, contact) {
      removeOne.run(domain, user, contact);
    },
    async removeUser(user, domain) {
      removeAll.run(domain, user);
    },
  };
}
