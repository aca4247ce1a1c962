// Every module Petrel knows, by the name used in [modules.<name>].
import type { ModuleDefinition } from './types.ts';
import type { Spec } from '../config/schema.ts';
import { definition as modRoster } from './mod_roster.ts';
import { definition as modOffline } from './mod_offline.ts';
import { definition as modDisco } from './mod_disco.ts';
import { definition as modPing } from './mod_ping.ts';
import { definition as modEventPusher } from './mod_event_pusher/index.ts';

export const MODULES: Readonly<Record<string, ModuleDefinition>> = Object.freeze({
  mod_roster: modRoster,
  mod_offline: modOffline,
  mod_disco: modDisco,
  mod_ping: modPing,
  mod_event_pusher: modEventPusher,
});

export function moduleSpecs(): Record<string, Spec> {
  const out: Record<string, Spec> = {};
  for (const [name, def] of Object.entries(MODULES)) out[name] = def.configSpec;
  return out;
}
