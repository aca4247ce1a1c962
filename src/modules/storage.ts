// Module data, found and opened the same way by the server and by the
// command-line tool. Which options choose a store is read from the modules'
// own config specs (options declared with storeBackendSpec()), so the
// storage layer, and this file, name no module.
import type { PetrelConfig } from '../config/types.ts';
import type { Hooks, HookRegistration } from '../hooks/hooks.ts';
import { accountsBackend, checkAccountsBackend } from '../storage/accounts.ts';
import { checkStoreBackend, isStoreBackendSpec } from '../storage/select.ts';
import type { StoreAccess, StoreBackend } from '../storage/types.ts';
import { MODULES, resolveModules } from './registry.ts';
import type { ModuleData } from './types.ts';

export interface StoreOption {
  module: string;
  /** The option's key in [modules.<module>] ("backend", "outbox_backend"). */
  option: string;
  /** Its TOML path, named in errors. */
  path: string;
  backend: StoreBackend;
}

/** Every store-choosing option of the configured modules, with the store it names. */
export function moduleStoreOptions(config: PetrelConfig): StoreOption[] {
  const out: StoreOption[] = [];
  for (const [module, opts] of resolveModules(config.modules)) {
    const spec = MODULES[module]?.configSpec;
    if (spec === undefined || spec.kind !== 'section') continue;
    for (const [option, item] of Object.entries(spec.items)) {
      if (!isStoreBackendSpec(item)) continue;
      const backend = (opts as Record<string, unknown> | undefined)?.[option] === 'rdbms' ? 'rdbms' : 'internal';
      out.push({ module, option, path: `modules.${module}.${option}`, backend });
    }
  }
  return out;
}

/**
 * Fails, naming the option, when the accounts or a module's store option
 * asks for "rdbms" without an [outgoing_pools.rdbms.default] pool: what
 * `start` would refuse, found when the configuration loads.
 */
export function checkStores(config: PetrelConfig): void {
  checkAccountsBackend(config);
  for (const o of moduleStoreOptions(config)) checkStoreBackend(config, o.backend, o.path);
}

/**
 * Where each kind of data lives: "accounts", then each module that keeps
 * data by its name (by `<module>.<option>` when it has several such options).
 */
export function storeLocations(config: PetrelConfig): Record<string, StoreBackend> {
  const out: Record<string, StoreBackend> = { accounts: accountsBackend(config).backend };
  const options = moduleStoreOptions(config);
  for (const o of options) {
    const several = options.filter((x) => x.module === o.module).length > 1;
    out[several ? `${o.module}.${o.option}` : o.module] = o.backend;
  }
  return out;
}

/** Opens the data of every module in `modules` that keeps some, by module name. */
export async function openModuleData(stores: StoreAccess, modules: ReadonlyArray<readonly [string, unknown]>): Promise<Map<string, ModuleData>> {
  const out = new Map<string, ModuleData>();
  for (const [name, opts] of modules) {
    const def = MODULES[name];
    if (def === undefined) throw new Error(`modules.${name}: unknown module`);
    if (def.openData === undefined) continue;
    const data = (await def.openData(stores, opts)) as ModuleData | undefined;
    if (data !== undefined) out.set(name, data);
  }
  return out;
}

/** The data's hook handlers, owned by their modules. */
export function dataHooks(data: ReadonlyMap<string, ModuleData>): HookRegistration<any>[] {
  const out: HookRegistration<any>[] = [];
  for (const [name, d] of data) for (const reg of d.hooks()) out.push({ ...reg, owner: reg.owner ?? name });
  return out;
}

/**
 * Runs user_removed (MongooseIM's remove_user) for user@server and waits
 * until every module has deleted its rows; rejects with the first failure.
 */
export async function removeUserData(hooks: Hooks, user: string, server: string): Promise<void> {
  const removals: Promise<unknown>[] = [];
  hooks.run('user_removed', server, { user, server, removals });
  await Promise.all(removals);
}
