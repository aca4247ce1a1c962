// Push registrations in PostgreSQL (table `petrel_event_pusher_push_subscription`).
import type pg from 'pg';
import { namedQuery as q } from '../../../storage/postgres.ts';
import { parseStoredForm, type PushStore, type Registration } from './store.ts';

const T = 'petrel_event_pusher_push_subscription';

export function pgPushStore(pool: pg.Pool): PushStore {
  return {
    async enable(user, domain, reg, max) {
      const form = JSON.stringify(reg.form);
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        // One account's enables run one at a time, so two at once cannot both pass the limit.
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${T}/${domain}/${user}`]);
        const upd = await c.query(`UPDATE ${T} SET form = $1 WHERE domain = $2 AND username = $3 AND pubsub_jid = $4 AND node = $5`,
          [form, domain, user, reg.pubsub, reg.node]);
        if ((upd.rowCount ?? 0) > 0) {
          await c.query('COMMIT');
          return 'ok';
        }
        const n = await c.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${T} WHERE domain = $1 AND username = $2`, [domain, user]);
        if (Number(n.rows[0]!.n) >= max) {
          await c.query('ROLLBACK');
          return 'limit';
        }
        await c.query(`INSERT INTO ${T} (domain, username, pubsub_jid, node, form, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
          [domain, user, reg.pubsub, reg.node, form, Date.now()]);
        await c.query('COMMIT');
        return 'ok';
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        c.release();
      }
    },
    async disable(user, domain, pubsub, node) {
      const r = node === undefined
        ? await q(pool, 'push_disable_service', `DELETE FROM ${T} WHERE domain = $1 AND username = $2 AND pubsub_jid = $3`, [domain, user, pubsub])
        : await q(pool, 'push_disable_node', `DELETE FROM ${T} WHERE domain = $1 AND username = $2 AND pubsub_jid = $3 AND node = $4`, [domain, user, pubsub, node]);
      return r.rowCount ?? 0;
    },
    async list(user, domain): Promise<Registration[]> {
      const r = await q<{ pubsub_jid: string; node: string; form: string }>(pool, 'push_list',
        `SELECT pubsub_jid, node, form FROM ${T} WHERE domain = $1 AND username = $2 ORDER BY created_at, pubsub_jid, node`, [domain, user]);
      return r.rows.map((row) => ({ pubsub: row.pubsub_jid, node: row.node, form: parseStoredForm(row.form) }));
    },
    async removeUser(user, domain) {
      await q(pool, 'push_remove_user', `DELETE FROM ${T} WHERE domain = $1 AND username = $2`, [domain, user]);
    },
  };
}
