// The set of outgoing pools named in the config, created once at start-up.
import type { PetrelConfig } from '../config/types.ts';
import { createHttpPool } from './http.ts';
import type { HttpPool, OutgoingPools } from './types.ts';

export function createOutgoingPools(cfg: PetrelConfig['outgoing_pools']): OutgoingPools {
  const http = new Map<string, HttpPool>();
  try {
    for (const [tag, poolCfg] of Object.entries(cfg.http)) http.set(tag, createHttpPool(tag, poolCfg));
  } catch (e) {
    for (const p of http.values()) void p.close();
    throw e;
  }
  return {
    http: (tag: string) => http.get(tag),
    rabbit: (tag: string) => (Object.hasOwn(cfg.rabbit, tag) ? cfg.rabbit[tag] : undefined),
    async close() {
      await Promise.all([...http.values()].map((p) => p.close()));
    },
  };
}
