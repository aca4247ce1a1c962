// Which store keeps what. MongooseIM names a backend per feature: the auth
// method (`auth.methods`), `backend` of mod_roster and mod_offline; Petrel
// adds `outbox_backend` to mod_event_pusher. "internal" is the embedded
// SQLite file under general.data_dir; "rdbms" is PostgreSQL through the
// pool [outgoing_pools.rdbms.default]. MongooseIM's default module backend,
// "mnesia", is its embedded database, so Petrel reads it as "internal".
import { custom, describe, fail, type Spec } from '../config/schema.ts';
import type { PetrelConfig } from '../config/types.ts';
import type { PgPoolSettings } from './postgres.ts';

export type StoreBackend = 'internal' | 'rdbms';

export interface StoreSelection {
  users: StoreBackend;
  roster: StoreBackend;
  offline: StoreBackend;
  /** The event pusher's outbox and dead-letter table. */
  outbox: StoreBackend;
}

/** The tag of the rdbms pool every store uses, as in MongooseIM. */
export const RDBMS_POOL_TAG = 'default';

/** A module's `backend` option: "internal" (default), "mnesia" (read as "internal") or "rdbms". */
export function storeBackendSpec(): Spec {
  return custom(
    (value, p) => {
      if (typeof value !== 'string') return fail(p, `expected a string, got ${describe(value)}`);
      if (value === 'internal' || value === 'mnesia') return 'internal';
      if (value === 'rdbms') return 'rdbms';
      return fail(p, `must be one of "internal", "mnesia" (the same: the embedded store), "rdbms", got ${JSON.stringify(value)}`);
    },
    { default: 'internal' },
  );
}

function moduleOption(config: PetrelConfig, module: string, option: string): StoreBackend {
  const opts = config.modules[module] as Record<string, unknown> | undefined;
  return opts?.[option] === 'rdbms' ? 'rdbms' : 'internal';
}

/**
 * Where each store lives. Throws a ConfigError naming the option when one
 * asks for "rdbms" and no [outgoing_pools.rdbms.default] pool is configured.
 */
export function storeSelection(config: PetrelConfig): StoreSelection {
  const sel: StoreSelection = {
    users: config.auth.methods[0] === 'rdbms' ? 'rdbms' : 'internal',
    roster: moduleOption(config, 'mod_roster', 'backend'),
    offline: moduleOption(config, 'mod_offline', 'backend'),
    outbox: moduleOption(config, 'mod_event_pusher', 'outbox_backend'),
  };
  if (config.outgoing_pools.rdbms?.[RDBMS_POOL_TAG] === undefined) {
    const needs = 'needs an [outgoing_pools.rdbms.default] pool (driver = "pgsql")';
    if (sel.users === 'rdbms') fail(config.auth.rdbms !== undefined ? 'auth.rdbms' : 'auth.methods[0]', `the rdbms auth method ${needs}`);
    if (sel.roster === 'rdbms') fail('modules.mod_roster.backend', `"rdbms" ${needs}`);
    if (sel.offline === 'rdbms') fail('modules.mod_offline.backend', `"rdbms" ${needs}`);
    if (sel.outbox === 'rdbms') fail('modules.mod_event_pusher.outbox_backend', `"rdbms" ${needs}`);
  }
  return sel;
}

/** The settings of the pool every "rdbms" store uses; call storeSelection first (it checks that the pool exists). */
export function rdbmsPool(config: PetrelConfig): PgPoolSettings {
  const pool = config.outgoing_pools.rdbms?.[RDBMS_POOL_TAG];
  if (pool === undefined) throw new Error('no [outgoing_pools.rdbms.default] pool is configured');
  return pool;
}
