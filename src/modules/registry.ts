// Every module Petrel knows, by the name used in [modules.<name>].
import type { ModuleDefinition } from './types.ts';
import type { Spec } from '../config/schema.ts';
import type { PetrelConfig } from '../config/types.ts';
import { definition as modRoster } from './mod_roster.ts';
import { definition as modOffline } from './mod_offline.ts';
import { definition as modDisco } from './mod_disco.ts';
import { definition as modPing } from './mod_ping.ts';
import { definition as modMuc } from './mod_muc/index.ts';
import { definition as modMucLight } from './mod_muc_light/index.ts';
import { definition as modStreamManagement } from './mod_stream_management.ts';
import { definition as modCarbonCopy } from './mod_carboncopy.ts';
import { definition as modCsi } from './mod_csi.ts';
import { definition as modEventPusher, type EventPusherOpts } from './mod_event_pusher/index.ts';
import { definition as modPushServiceMongoosePush } from './mod_push_service_mongoosepush/index.ts';
import { eventPusherHttpSpec, mergeEventPusherAlias } from './mod_event_pusher/config.ts';

export const MODULES: Readonly<Record<string, ModuleDefinition<any, any>>> = Object.freeze({
  mod_roster: modRoster,
  mod_offline: modOffline,
  mod_disco: modDisco,
  mod_ping: modPing,
  mod_muc: modMuc,
  mod_muc_light: modMucLight,
  mod_stream_management: modStreamManagement,
  mod_carboncopy: modCarbonCopy,
  mod_csi: modCsi,
  mod_event_pusher: modEventPusher,
  mod_push_service_mongoosepush: modPushServiceMongoosePush,
});

/** Spellings that configure another module (see resolveModules). */
const ALIAS_SPECS: Readonly<Record<string, Spec>> = { mod_event_pusher_http: eventPusherHttpSpec };

/** Runs every configured module's `check` (see ModuleDefinition.check). */
export function checkModules(config: PetrelConfig): void {
  for (const [name, opts] of resolveModules(config.modules)) MODULES[name]?.crossCheck?.(opts, config);
}

export function moduleSpecs(): Record<string, Spec> {
  const out: Record<string, Spec> = {};
  for (const [name, def] of Object.entries(MODULES)) out[name] = def.configSpec;
  return { ...out, ...ALIAS_SPECS };
}

/**
 * The modules to start, by name, with aliases folded in:
 * [modules.mod_event_pusher_http] adds its handler to mod_event_pusher's, so
 * both spellings together still run one translator.
 */
export function resolveModules(configured: Readonly<Record<string, unknown>>): Array<[string, unknown]> {
  const out = new Map<string, unknown>();
  for (const [name, opts] of Object.entries(configured)) {
    if (name === 'mod_event_pusher_http') continue;
    out.set(name, opts);
  }
  const alias = configured.mod_event_pusher_http as EventPusherOpts | undefined;
  if (alias !== undefined) {
    const main = out.get('mod_event_pusher') as EventPusherOpts | undefined;
    out.set('mod_event_pusher', mergeEventPusherAlias(main, alias));
  }
  return [...out];
}
