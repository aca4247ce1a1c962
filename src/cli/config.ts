// Loads a configuration with every section and module schema Petrel has.
import { loadConfigFile, type LoadOptions } from '../config/load.ts';
import { httpListenerSpec } from '../http/config.ts';
import { HTTP_HANDLERS } from '../http-handlers.ts';
import type { PetrelConfig } from '../config/types.ts';
import { checkModules, moduleSpecs } from '../modules/registry.ts';
import { outgoingPoolsSpec } from '../outgoing/spec.ts';
import { checkStores } from '../modules/storage.ts';

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
  // Across sections: a store set to "rdbms" (the accounts' or a module's) needs the rdbms pool.
  checkStores(config);
  // Across modules and sections: what a module needs elsewhere (a pool, a service module).
  checkModules(config);
  return config;
}
