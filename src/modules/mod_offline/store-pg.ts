// Offline messages in PostgreSQL (table `petrel_offline`).
import type pg from 'pg';
import { namedQuery as q } from '../../storage/postgres.ts';
import type { OfflineMessage, OfflineStore } from './store.ts';

export function pgOfflineStore(pool: pg.Pool): OfflineStore {
  return {
    async store(user, domain, msg) {
      await q(pool, 'offline_store',
        'INSERT INTO petrel_offline (domain, username, sender, xml, stored_at, size) VALUES ($1, $2, $3, $4, $5, $6)',
        [domain, user, msg.from, msg.xml, msg.timestamp, msg.xml.length]);
    },
    async count(user, domain) {
      const r = await q<{ n: string }>(pool, 'offline_count', 'SELECT COUNT(*) AS n FROM petrel_offline WHERE domain = $1 AND username = $2', [domain, user]);
      return Number(r.rows[0]!.n);
    },
    async usage(user, domain) {
      const r = await q<{ n: string; c: string }>(pool, 'offline_usage',
        'SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS c FROM petrel_offline WHERE domain = $1 AND username = $2', [domain, user]);
      return { count: Number(r.rows[0]!.n), chars: Number(r.rows[0]!.c) };
    },
    async popAll(user, domain): Promise<OfflineMessage[]> {
      // Read and delete in one statement: a message stored meanwhile by
      // another connection is not in this statement's snapshot, so it is
      // neither deleted unseen nor handed over twice.
      const r = await q<{ id: string; sender: string; xml: string; stored_at: string }>(pool, 'offline_pop',
        'DELETE FROM petrel_offline WHERE domain = $1 AND username = $2 RETURNING id, sender, xml, stored_at', [domain, user]);
      return r.rows
        .map((row) => ({ id: BigInt(row.id), msg: { from: row.sender, xml: row.xml, timestamp: Number(row.stored_at) } }))
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        .map((x) => x.msg);
    },
    async removeUser(user, domain) {
      await q(pool, 'offline_remove_user', 'DELETE FROM petrel_offline WHERE domain = $1 AND username = $2', [domain, user]);
    },
  };
}
