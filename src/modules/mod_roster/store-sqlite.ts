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
    groups: groupsOf(row.groups),
  };
}

/** The stored groups; a value that is not a JSON list of strings (written by hand) reads as none. */
function groupsOf(json: string): string[] {
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v.filter((g): g is string => typeof g === 'string') : [];
  } catch {
    return [];
  }
}

export function sqliteRosterStore(db: DatabaseSync): RosterStore {
  const columns = 'contact, name, subscription, ask, pending_in, groups';
  const list = db.prepare(`SELECT ${columns} FROM roster WHERE domain = ? AND user = ? ORDER BY contact LIMIT ?`);
  const size = db.prepare('SELECT count(*) AS n FROM roster WHERE domain = ? AND user = ?');
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
    async getRoster(user, domain, limit) {
      return (list.all(domain, user, limit ?? -1) as unknown as RosterRow[]).map(itemOf);
    },
    async count(user, domain) {
      return Number((size.get(domain, user) as { n: number }).n);
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
