// Loads a configuration with every section and module schema Petrel has.
import { loadConfigFile } from '../config/load.ts';
import { httpListenerSpec } from '../http/config.ts';
import { HTTP_HANDLERS } from '../http-handlers.ts';
import type { PetrelConfig } from '../config/types.ts';
import { moduleSpecs } from '../modules/registry.ts';
import { outgoingPoolsSpec } from '../outgoing/spec.ts';
import { storeSelection } from '../storage/select.ts';

export function loadConfig(file: string | undefined): PetrelConfig {
  const config = loadConfigFile(file, {
    sections: { outgoing_pools: outgoingPoolsSpec },
    modules: moduleSpecs(),
    listeners: { http: httpListenerSpec(HTTP_HANDLERS) },
  });
  // Across sections: a store set to "rdbms" needs the rdbms pool.
  storeSelection(config);
  return config;
}
