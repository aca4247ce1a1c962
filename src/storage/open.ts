// Opening the stores a configuration names.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { PetrelConfig } from '../config/types.ts';
import type { Storage } from './types.ts';
import { openStorage, SQLITE_FILE } from './index.ts';
import type { OutboxStore } from './outbox.ts';
import { openSqliteOutbox } from './outbox-sqlite.ts';
import { openPostgresStorage } from './postgres.ts';
import { openPostgresOutbox } from './outbox-postgres.ts';
import { rdbmsPool, storeSelection, type StoreSelection } from './select.ts';

// Which backend keeps what is decided by src/storage/select.ts; the
// embedded SQLite file is opened only when something lives in it, the
// PostgreSQL pool [outgoing_pools.rdbms.default] only when something lives there.

export interface Stores {
  selection: StoreSelection;
  /** Accounts, rosters and offline messages, each from its configured store. */
  storage: Storage;
  /** Opens the event pusher's outbox in its configured store (its own connections). */
  openOutbox(): Promise<OutboxStore>;
}

/** Opens the stores `config` names; throws a ConfigError when one needs a pool that is not configured. */
export async function openStores(config: PetrelConfig, logger?: Logger): Promise<Stores> {
  const selection = storeSelection(config);
  const onWarning = (what: string, message: string) => logger?.warn({ what }, message);
  const parts = [selection.users, selection.roster, selection.offline];
  const sqlite = parts.includes('internal') ? openStorage(config.general.data_dir) : undefined;
  let pg: Storage | undefined;
  try {
    if (parts.includes('rdbms')) pg = await openPostgresStorage(rdbmsPool(config), { onWarning });
  } catch (err) {
    await sqlite?.close();
    throw err;
  }
  const pick = (b: 'internal' | 'rdbms'): Storage => (b === 'rdbms' ? pg! : sqlite!);
  const openOutbox = (): Promise<OutboxStore> =>
    selection.outbox === 'rdbms'
      ? openPostgresOutbox(rdbmsPool(config), { onWarning })
      : openSqliteOutbox(join(config.general.data_dir, SQLITE_FILE));
  const all = [sqlite, pg].filter((s): s is Storage => s !== undefined);
  if (all.length === 1) return { selection, storage: all[0]!, openOutbox };
  return { selection, storage: combineStores(pick(selection.users), pick(selection.roster), pick(selection.offline), all), openOutbox };
}

/**
 * One Storage over two stores. Removing an account removes its roster and
 * offline messages from every store (each store's removeUser does that for
 * its own tables, whether or not the account itself is kept there).
 */
function combineStores(users: Storage, roster: Storage, offline: Storage, all: Storage[]): Storage {
  const others = all.filter((s) => s !== users);
  return {
    users: {
      createUser: (u, d, c) => users.users.createUser(u, d, c),
      async removeUser(u, d) {
        const removed = await users.users.removeUser(u, d);
        for (const s of others) await s.users.removeUser(u, d);
        return removed;
      },
      getCredentials: (u, d) => users.users.getCredentials(u, d),
      userExists: (u, d) => users.users.userExists(u, d),
      countUsers: (d) => users.users.countUsers(d),
    },
    roster: roster.roster,
    offline: offline.offline,
    async close() {
      for (const s of all) await s.close();
    },
  };
}

