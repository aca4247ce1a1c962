// Which store keeps what. MongooseIM names a backend per feature: the auth
// method (`auth.methods`) for accounts, a `backend` option for each module
// that keeps data. Each owner reads its own option; this file only knows the
// two stores: "internal" is the embedded SQLite file under general.data_dir;
// "rdbms" is PostgreSQL through the pool [outgoing_pools.rdbms.default].
// MongooseIM's default module backend, "mnesia", is its embedded database,
// so Petrel reads it as "internal".
import { custom, describe, fail, type Spec } from '../config/schema.ts';
import type { PetrelConfig } from '../config/types.ts';
import type { PgPoolSettings } from './postgres.ts';
import type { StoreBackend } from './types.ts';

export type { StoreBackend } from './types.ts';

/** Why a store set to "rdbms" cannot open; the error names the option before it. */
export const NEEDS_POOL = 'needs an [outgoing_pools.rdbms.default] pool (driver = "pgsql")';

/** The tag of the rdbms pool every store uses, as in MongooseIM. */
export const RDBMS_POOL_TAG = 'default';

const STORE_BACKEND_SPECS = new WeakSet<Spec>();

/**
 * A module's `backend` option: "internal" (default), "mnesia" (read as
 * "internal") or "rdbms". Options declared with it are found by
 * isStoreBackendSpec, so that loading the configuration checks each against
 * the pools without knowing the module.
 */
export function storeBackendSpec(): Spec {
  const spec = custom(
    (value, p) => {
      if (typeof value !== 'string') return fail(p, `expected a string, got ${describe(value)}`);
      if (value === 'internal' || value === 'mnesia') return 'internal';
      if (value === 'rdbms') return 'rdbms';
      return fail(p, `must be one of "internal", "mnesia" (the same: the embedded store), "rdbms", got ${JSON.stringify(value)}`);
    },
    { default: 'internal' },
  );
  STORE_BACKEND_SPECS.add(spec);
  return spec;
}

/** True for a spec made by storeBackendSpec(). */
export function isStoreBackendSpec(spec: Spec): boolean {
  return STORE_BACKEND_SPECS.has(spec);
}

export function hasRdbmsPool(config: PetrelConfig): boolean {
  return config.outgoing_pools.rdbms?.[RDBMS_POOL_TAG] !== undefined;
}

/**
 * Throws a ConfigError naming `optionPath` (e.g. "modules.mod_roster.backend")
 * when it chose "rdbms" and no [outgoing_pools.rdbms.default] pool is configured.
 */
export function checkStoreBackend(config: PetrelConfig, backend: StoreBackend, optionPath: string): void {
  if (backend === 'rdbms' && !hasRdbmsPool(config)) fail(optionPath, `"rdbms" ${NEEDS_POOL}`);
}

/** The settings of the pool every "rdbms" store uses; call checkStoreBackend first (it names the option that asked). */
export function rdbmsPool(config: PetrelConfig): PgPoolSettings {
  const pool = config.outgoing_pools.rdbms?.[RDBMS_POOL_TAG];
  if (pool === undefined) throw new Error('no [outgoing_pools.rdbms.default] pool is configured');
  return pool;
}
