// Loads a configuration with every section and module schema Petrel has.
import { loadConfigFile, type LoadOptions } from '../config/load.ts';
import { checkRule, type AccessValue } from '../config/access.ts';
import { ErrorCollector } from '../config/schema.ts';
import { httpListenerSpec } from '../http/config.ts';
import { HTTP_HANDLERS } from '../http-handlers.ts';
import type { PetrelConfig } from '../config/types.ts';
import { checkModules, moduleSpecs } from '../modules/registry.ts';
import { outgoingPoolsSpec } from '../outgoing/spec.ts';
import { checkStores } from '../modules/storage.ts';
import { checkCluster } from '../config/cluster-spec.ts';

/** Every section, module and listener spec Petrel has. */
export function loadOptions(): LoadOptions {
  return {
    sections: { outgoing_pools: outgoingPoolsSpec },
    modules: moduleSpecs(),
    listeners: { http: httpListenerSpec(HTTP_HANDLERS) },
  };
}

export function loadConfig(file: string | undefined): PetrelConfig {
  const config = loadConfigFile(file, loadOptions());
  crossCheck(config);
  return config;
}

/** The rules across sections and modules; throws a ConfigError naming the option. */
export function crossCheck(config: PetrelConfig): void {
  // Across sections: a store set to "rdbms" (the accounts' or a module's) needs the rdbms pool.
  checkStores(config);
  // Across modules and sections: what a module needs elsewhere (a pool, a service module).
  checkModules(config);
  checkNumericRules(config);
  // general.sm_backend = "cets": discovery, the bus and the pool.
  checkCluster(config);
}

const isLimit = (v: AccessValue): boolean => (typeof v === 'number' && v >= 1) || v === 'infinity';

/**
 * The numeric access rules Petrel enforces must give numbers it can
 * enforce: max_user_sessions, and mod_offline's access_max_user_messages
 * rule (max_user_offline_messages). A rule Petrel does not read
 * (MAM, MUC, registration...) configures a feature it lacks and is left alone.
 */
function checkNumericRules(config: PetrelConfig): void {
  const problems = new ErrorCollector();
  for (const e of checkRule(config.access, 'max_user_sessions', 'max_user_sessions', 'a positive integer or "infinity"', isLimit, { mayBeMissing: true })) problems.add(e);
  const offline = config.modules.mod_offline as { access_max_user_messages: string } | undefined;
  if (offline !== undefined) {
    const rule = offline.access_max_user_messages;
    const where = 'modules.mod_offline.access_max_user_messages';
    for (const e of checkRule(config.access, rule, where, 'a positive integer or "infinity"', isLimit, { mayBeMissing: true })) problems.add(e);
  }
  problems.throwIfAny();
}
