// mod_muc_light's store: every room (its configuration, affiliations and
// version, as one JSON document) and every user's blocking list, in both
// stores. MUC Light rooms live until their last occupant leaves, so all of
// them are kept.
import type pg from 'pg';
import type { DatabaseSync } from 'node:sqlite';
import type { Migrations } from '../../storage/migrations.ts';
import { namedQuery as q } from '../../storage/postgres.ts';
import type { StoreKind } from '../../storage/types.ts';

export interface StoredLightRoom {
  service: string;
  name: string;
  /** JSON of { config, affiliations, version }. */
  state: string;
}

export interface StoredBlocking {
  service: string;
  /** The blocking user's bare JID. */
  user: string;
  /** JSON of { rooms: string[], users: string[] }. */
  list: string;
}

export interface MucLightStore {
  rooms(): Promise<StoredLightRoom[]>;
  putRoom(r: StoredLightRoom): Promise<void>;
  removeRoom(service: string, name: string): Promise<void>;
  blocking(): Promise<StoredBlocking[]>;
  putBlocking(b: StoredBlocking): Promise<void>;
  removeBlocking(service: string, user: string): Promise<void>;
}

export const MUC_LIGHT_MIGRATIONS: Migrations = {
  component: 'mod_muc_light',
  internal: [
    `CREATE TABLE IF NOT EXISTS muc_light_rooms (
      service TEXT NOT NULL,
      name TEXT NOT NULL,
      state TEXT NOT NULL,
      PRIMARY KEY (service, name)
    );
    CREATE TABLE IF NOT EXISTS muc_light_blocking (
      service TEXT NOT NULL,
      user TEXT NOT NULL,
      list TEXT NOT NULL,
      PRIMARY KEY (service, user)
    );`,
  ],
  rdbms: [
    `CREATE TABLE IF NOT EXISTS petrel_muc_light_rooms (
      service TEXT NOT NULL,
      name TEXT NOT NULL,
      state TEXT NOT NULL,
      PRIMARY KEY (service, name)
    );
    CREATE TABLE IF NOT EXISTS petrel_muc_light_blocking (
      service TEXT NOT NULL,
      username TEXT NOT NULL,
      list TEXT NOT NULL,
      PRIMARY KEY (service, username)
    );`,
  ],
};

function sqliteStore(db: DatabaseSync): MucLightStore {
  const rooms = db.prepare('SELECT service, name, state FROM muc_light_rooms ORDER BY service, name');
  const putRoom = db.prepare('INSERT INTO muc_light_rooms (service, name, state) VALUES (?, ?, ?) ON CONFLICT (service, name) DO UPDATE SET state = excluded.state');
  const delRoom = db.prepare('DELETE FROM muc_light_rooms WHERE service = ? AND name = ?');
  const blocking = db.prepare('SELECT service, user, list FROM muc_light_blocking');
  const putBlocking = db.prepare('INSERT INTO muc_light_blocking (service, user, list) VALUES (?, ?, ?) ON CONFLICT (service, user) DO UPDATE SET list = excluded.list');
  const delBlocking = db.prepare('DELETE FROM muc_light_blocking WHERE service = ? AND user = ?');
  return {
    rooms: async () => rooms.all() as unknown as StoredLightRoom[],
    putRoom: async (r) => void putRoom.run(r.service, r.name, r.state),
    removeRoom: async (s, n) => void delRoom.run(s, n),
    blocking: async () => blocking.all() as unknown as StoredBlocking[],
    putBlocking: async (b) => void putBlocking.run(b.service, b.user, b.list),
    removeBlocking: async (s, u) => void delBlocking.run(s, u),
  };
}

function pgStore(pool: pg.Pool): MucLightStore {
  return {
    async rooms() {
      return (await q<StoredLightRoom>(pool, 'muc_light_rooms', 'SELECT service, name, state FROM petrel_muc_light_rooms ORDER BY service, name', [])).rows;
    },
    async putRoom(r) {
      await q(pool, 'muc_light_put_room',
        'INSERT INTO petrel_muc_light_rooms (service, name, state) VALUES ($1, $2, $3) ON CONFLICT (service, name) DO UPDATE SET state = EXCLUDED.state',
        [r.service, r.name, r.state]);
    },
    async removeRoom(service, name) {
      await q(pool, 'muc_light_remove_room', 'DELETE FROM petrel_muc_light_rooms WHERE service = $1 AND name = $2', [service, name]);
    },
    async blocking() {
      return (await q<StoredBlocking>(pool, 'muc_light_blocking', 'SELECT service, username AS "user", list FROM petrel_muc_light_blocking', [])).rows;
    },
    async putBlocking(b) {
      await q(pool, 'muc_light_put_blocking',
        'INSERT INTO petrel_muc_light_blocking (service, username, list) VALUES ($1, $2, $3) ON CONFLICT (service, username) DO UPDATE SET list = EXCLUDED.list',
        [b.service, b.user, b.list]);
    },
    async removeBlocking(service, user) {
      await q(pool, 'muc_light_remove_blocking', 'DELETE FROM petrel_muc_light_blocking WHERE service = $1 AND username = $2', [service, user]);
    },
  };
}

export const MUC_LIGHT_STORE: StoreKind<MucLightStore> = { migrations: MUC_LIGHT_MIGRATIONS, internal: sqliteStore, rdbms: pgStore };
