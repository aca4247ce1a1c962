// mod_muc's store: the persistent rooms (their configuration, affiliations
// and subject, as one JSON document per room) in both stores. Room history
// and occupants are kept in memory only.
import type pg from 'pg';
import type { DatabaseSync } from 'node:sqlite';
import type { Migrations } from '../../storage/migrations.ts';
import { namedQuery as q } from '../../storage/postgres.ts';
import type { StoreKind } from '../../storage/types.ts';

export interface StoredRoom {
  /** The service domain ("conference.localhost"). */
  service: string;
  /** The room's name (its JID's local part). */
  name: string;
  /** JSON of the room's state (see room.ts, PersistedRoom). */
  state: string;
}

export interface MucStore {
  all(): Promise<StoredRoom[]>;
  put(room: StoredRoom): Promise<void>;
  remove(service: string, name: string): Promise<void>;
}

export const MUC_MIGRATIONS: Migrations = {
  component: 'mod_muc',
  internal: [
    `CREATE TABLE IF NOT EXISTS muc_rooms (
      service TEXT NOT NULL,
      name TEXT NOT NULL,
      state TEXT NOT NULL,
      PRIMARY KEY (service, name)
    );`,
  ],
  rdbms: [
    `CREATE TABLE IF NOT EXISTS petrel_muc_rooms (
      service TEXT NOT NULL,
      name TEXT NOT NULL,
      state TEXT NOT NULL,
      PRIMARY KEY (service, name)
    );`,
  ],
};

function sqliteMucStore(db: DatabaseSync): MucStore {
  const all = db.prepare('SELECT service, name, state FROM muc_rooms ORDER BY service, name');
  const put = db.prepare('INSERT INTO muc_rooms (service, name, state) VALUES (?, ?, ?) ON CONFLICT (service, name) DO UPDATE SET state = excluded.state');
  const del = db.prepare('DELETE FROM muc_rooms WHERE service = ? AND name = ?');
  return {
    async all() {
      return all.all() as unknown as StoredRoom[];
    },
    async put(r) {
      put.run(r.service, r.name, r.state);
    },
    async remove(service, name) {
      del.run(service, name);
    },
  };
}

function pgMucStore(pool: pg.Pool): MucStore {
  return {
    async all() {
      const r = await q<StoredRoom>(pool, 'muc_all', 'SELECT service, name, state FROM petrel_muc_rooms ORDER BY service, name', []);
      return r.rows;
    },
    async put(room) {
      await q(pool, 'muc_put',
        'INSERT INTO petrel_muc_rooms (service, name, state) VALUES ($1, $2, $3) ON CONFLICT (service, name) DO UPDATE SET state = EXCLUDED.state',
        [room.service, room.name, room.state]);
    },
    async remove(service, name) {
      await q(pool, 'muc_remove', 'DELETE FROM petrel_muc_rooms WHERE service = $1 AND name = $2', [service, name]);
    },
  };
}

export const MUC_STORE: StoreKind<MucStore> = { migrations: MUC_MIGRATIONS, internal: sqliteMucStore, rdbms: pgMucStore };
