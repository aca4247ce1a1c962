// Offline messages in the embedded store (table `offline`).
import type { DatabaseSync } from 'node:sqlite';
import { inTransaction } from '../../storage/sqlite.ts';
import type { OfflineMessage, OfflineStore } from './store.ts';

interface OfflineRow {
  id: number;
  from: string;
  xml: string;
  timestamp: number;
}

export function sqliteOfflineStore(db: DatabaseSync): OfflineStore {
  const insert = db.prepare('INSERT INTO offline (user, domain, "from", xml, timestamp, size) VALUES (?, ?, ?, ?, ?, ?)');
  const count = db.prepare('SELECT COUNT(*) AS n FROM offline WHERE domain = ? AND user = ?');
  const usage = db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS c FROM offline WHERE domain = ? AND user = ?');
  const list = db.prepare('SELECT id, "from", xml, timestamp FROM offline WHERE domain = ? AND user = ? ORDER BY id');
  const deleteUpTo = db.prepare('DELETE FROM offline WHERE domain = ? AND user = ? AND id <= ?');
  const deleteAll = db.prepare('DELETE FROM offline WHERE domain = ? AND user = ?');
  return {
    async store(user, domain, msg) {
      insert.run(user, domain, msg.from, msg.xml, msg.timestamp, msg.xml.length);
    },
    async count(user, domain) {
      return Number((count.get(domain, user) as { n: number }).n);
    },
    async usage(user, domain) {
      const r = usage.get(domain, user) as { n: number; c: number };
      return { count: Number(r.n), chars: Number(r.c) };
    },
    async popAll(user, domain): Promise<OfflineMessage[]> {
      // Read and delete under one lock so that a message stored by another
      // connection in between is neither lost nor delivered twice.
      return inTransaction(db, () => {
        const rows = list.all(domain, user) as unknown as OfflineRow[];
        if (rows.length === 0) return [];
        deleteUpTo.run(domain, user, rows[rows.length - 1]!.id);
        return rows.map((r) => ({ from: r.from, xml: r.xml, timestamp: Number(r.timestamp) }));
      });
    },
    async removeUser(user, domain) {
      deleteAll.run(domain, user);
    },
  };
}
