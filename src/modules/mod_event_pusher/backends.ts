// The backends of mod_event_pusher, by the name used in
// `[modules.mod_event_pusher.backend.<name>]` (MongooseIM's names). Each one
// lives in its own directory (http/, push/, rabbit/) and declares
// here what the module needs of it:
//
// - spec / moduleSpec: its options under `backend.<name>`, and under
//   MongooseIM's current spelling `[modules.mod_event_pusher.<name>]`;
//   `combine` merges both into the backend's options (undefined: not configured);
// - metrics: registers its metrics (at zero for the configured host types);
// - create: starts it; it registers its durable handlers and its sender with
//   `ctx.outbox` (delivery/types.ts) and returns its push_event handler;
// - deliveryRows: its handlers that deliver through the outbox, with their
//   stable keys, for `petrel deliveries`;
// - openData (optional): opens the data the backend keeps (push: the XEP-0357
//   registrations) before the server or the command-line tool runs, with its
//   user_removed handlers; `create` finds it as `ctx.data`. A backend may also
//   answer IQs and handle hooks of its own (BackendInstance.iqHandlers, hooks).
//
// The translator (hooks → ChatEvent / PresenceEvent → push_event) in index.ts
// knows no backend; the delivery engine (delivery/) knows none either.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ConfigError, Spec } from '../../config/schema.ts';
import type { ModuleCheckContext } from '../types.ts';
import type { Acc, Barrier, PushEvent } from '../../hooks/catalogue.ts';
import type { HookRegistration } from '../../hooks/hooks.ts';
import type { PetrelConfig } from '../../config/types.ts';
import type { OutgoingPools } from '../../outgoing/types.ts';
import type { IqHandlerSpec, SessionsApi } from '../../routing/types.ts';
import type { StoreAccess, StoreBackend } from '../../storage/types.ts';
import type { OutboxAccess } from './delivery/types.ts';
import { httpBackend } from './http/index.ts';
import { rabbitBackend } from './rabbit/index.ts';
import { pushBackend } from './push/index.ts';

export interface BackendContext {
  pools: OutgoingPools;
  /** Directory of the configuration file (callback modules are found from it). */
  configDir: string;
  logger: Logger;
  metrics: Registry;
  /** Host types whose metrics exist from the start, at zero, as MongooseIM declares them. */
  hosts: readonly string[];
  /** The module's outbox (opened once the backends are created, if any handler is durable). */
  outbox: OutboxAccess;
  /** The whole configuration (a backend may read the module that serves it, e.g. mod_push_service_mongoosepush). */
  config: PetrelConfig;
  sessions: SessionsApi;
  /** Features announced in the server's disco#info. */
  features: Set<string>;
  /** What the backend's openData returned (`value`), when it has one. */
  data?: unknown;
  /** Body bytes each best-effort (in-memory) queue may hold (best_effort_max_bytes). */
  bestEffortMaxBytes: number;
}

/** What a backend's openData returns. */
export interface BackendData {
  /** The store the data lives in. */
  readonly backend: StoreBackend;
  /** Handed to `create` as ctx.data. */
  readonly value: unknown;
  /** user_removed handlers deleting the backend's rows of an account. */
  hooks(): HookRegistration<any>[];
}

export interface BackendInstance {
  /**
   * The push_event handler: synchronous, never throws, never waits for a
   * delivery. Returns `barrier`, joined with the commit of what it stored
   * when the stanza must wait for it (see Barrier in hooks/catalogue.ts).
   */
  handle(acc: Acc, event: PushEvent, barrier: Barrier): Barrier;
  /** Hook handlers of its own, beside push_event. */
  hooks?(): HookRegistration<any>[];
  /** IQs it answers (push: urn:xmpp:push:0). */
  iqHandlers?(): IqHandlerSpec[];
  /** Stops; the outbox is closed by the module after its backends. */
  close(): Promise<void>;
}

/** A handler's row in `petrel deliveries`. */
export interface DeliveryRow {
  /** The handler's number in its backend. */
  index: number;
  /** Stable key of its rows in the outbox. */
  key: string;
}

export interface BackendDefinition<O = unknown> {
  readonly name: string;
  /** `backend.<name>` */
  readonly spec: Spec;
  /** `[modules.mod_event_pusher.<name>]`, MongooseIM's current spelling, when the backend has one. */
  readonly moduleSpec?: Spec;
  /** Both spellings' validated values (either may be undefined) into the backend's options; undefined when not configured. */
  combine(fromBackend: unknown, fromModule: unknown): O | undefined;
  /** Registers the backend's metrics, at zero for `hosts`. */
  metrics(registry: Registry, hosts: readonly string[]): void;
  /** Checks needing other sections when the configuration loads (see ModuleDefinition.check). */
  crossCheck?(opts: O, config: PetrelConfig): void;
  /** Opens the data it keeps, if any (see BackendData). */
  openData?(stores: StoreAccess, opts: O): Promise<BackendData>;
  create(ctx: BackendContext, opts: O): Promise<BackendInstance>;
  /** Every problem `create` would refuse (see ModuleDefinition.check), without creating anything. */
  check?(opts: O, ctx: ModuleCheckContext): Promise<ConfigError[]>;
  deliveryRows(opts: O, config: PetrelConfig): DeliveryRow[];
}

export const BACKENDS: Readonly<Record<string, BackendDefinition<any>>> = Object.freeze({
  http: httpBackend,
  push: pushBackend,
  rabbit: rabbitBackend,
});

/** Backends of MongooseIM's mod_event_pusher that Petrel does not have yet. */
export const NOT_IMPLEMENTED: readonly string[] = [];

/** The error for `name` at `path`, which is not a backend Petrel has. */
export function unknownBackendMessage(name: string): string {
  const known = Object.keys(BACKENDS).join(', ');
  if (NOT_IMPLEMENTED.includes(name)) {
    return `the ${name} backend of mod_event_pusher is not implemented in Petrel yet (known backends: ${known}); its events would be lost, so the configuration is refused`;
  }
  return `Petrel has no ${name} backend; mod_event_pusher supports: ${known}`;
}
