// What a module is and what it is given. Every optional feature is a module:
// it declares its config schema piece, then is created with the server's
// context and its validated options, and returns its hooks and IQ handlers.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Hooks, HookRegistration } from '../hooks/hooks.ts';
import type { Spec } from '../config/schema.ts';
import type { PetrelConfig } from '../config/types.ts';
import type { Storage } from '../storage/types.ts';
import type { OutboxStore } from '../storage/outbox.ts';
import type { OutgoingPools } from '../outgoing/types.ts';

export type { RouterApi, SessionView, SessionsApi, IqRequest, IqHandler, IqHandlerSpec } from '../routing/types.ts';
import type { RouterApi, SessionsApi, IqHandlerSpec } from '../routing/types.ts';

export interface ModuleContext {
  config: PetrelConfig;
  hosts: readonly string[];
  hooks: Hooks;
  router: RouterApi;
  sessions: SessionsApi;
  storage: Storage;
  logger: Logger;
  metrics: Registry;
  pools: OutgoingPools;
  /** Features announced in the server's disco#info (mod_disco reads it; modules add to it). */
  features: Set<string>;
  /** Opens the event pusher's outbox in the configured store; absent: the embedded store under data_dir. */
  openOutbox?: () => Promise<OutboxStore>;
}

export interface ModuleInstance {
  hooks?(): HookRegistration<any>[];
  iqHandlers?(): IqHandlerSpec[];
  start?(): void | Promise<void>;
  stop?(): void | Promise<void>;
}

export interface ModuleDefinition<O = any> {
  name: string;
  configSpec: Spec;
  /** Other modules this one needs. */
  deps?: string[];
  create(ctx: ModuleContext, opts: O): ModuleInstance | Promise<ModuleInstance>;
}
