// Push registrations in the embedded store (table `event_pusher_push_subscription`).
import type { DatabaseSync } from 'node:sqlite';
import { inTransaction } from '../../../storage/sqlite.ts';
import { parseStoredForm, type PushStore, type Registration } from './store.ts';

interface Row {
  pubsub_jid: string;
  node: string;
  form: string;
}

export function sqlitePushStore(db: DatabaseSync): PushStore {
  const T = 'event_pusher_push_subscription';
  const exists = db.prepare(`SELECT 1 AS x FROM ${T} WHERE domain = ? AND user = ? AND pubsub_jid = ? AND node = ?`);
  const count = db.prepare(`SELECT COUNT(*) AS n FROM ${T} WHERE domain = ? AND user = ?`);
  const update = db.prepare(`UPDATE ${T} SET form = ? WHERE domain = ? AND user = ? AND pubsub_jid = ? AND node = ?`);
  const insert = db.prepare(`INSERT INTO ${T} (domain, user, pubsub_jid, node, form, created_at) VALUES (?, ?, ?, ?, ?, ?)`);
  const delNode = db.prepare(`DELETE FROM ${T} WHERE domain = ? AND user = ? AND pubsub_jid = ? AND node = ?`);
  const delService = db.prepare(`DELETE FROM ${T} WHERE domain = ? AND user = ? AND pubsub_jid = ?`);
  const delUser = db.prepare(`DELETE FROM ${T} WHERE domain = ? AND user = ?`);
  const list = db.prepare(`SELECT pubsub_jid, node, form FROM ${T} WHERE domain = ? AND user = ? ORDER BY created_at, rowid`);
  return {
    async enable(user, domain, reg, max) {
      const form = JSON.stringify(reg.form);
      return inTransaction(db, () => {
        if (exists.get(domain, user, reg.pubsub, reg.node) !== undefined) {
          update.run(form, domain, user, reg.pubsub, reg.node);
          return 'ok';
        }
        if (Number((count.get(domain, user) as { n: number }).n) >= max) return 'limit';
        insert.run(domain, user, reg.pubsub, reg.node, form, Date.now());
        return 'ok';
      });
    },
    async disable(user, domain, pubsub, node) {
      const r = node === undefined ? delService.run(domain, user, pubsub) : delNode.run(domain, user, pubsub, node);
      return Number(r.changes);
    },
    async list(user, domain): Promise<Registration[]> {
      const rows = list.all(domain, user) as unknown as Row[];
      return rows.map((r) => ({ pubsub: r.pubsub_jid, node: r.node, form: parseStoredForm(r.form) }));
    },
    async removeUser(user, domain) {
      delUser.run(domain, user);
    },
  };
}
