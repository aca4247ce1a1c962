// What a module is and what it is given. Every optional feature is a module:
// it declares its config schema piece, then is created with the server's
// context and its validated options, and returns its hooks and IQ handlers.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Hooks, HookRegistration } from '../hooks/hooks.ts';
import type { ConfigError, Spec } from '../config/schema.ts';
import type { PetrelConfig } from '../config/types.ts';
import type { AccessRules } from '../config/access.ts';
import type { StoreAccess, StoreBackend, UserStore } from '../storage/types.ts';
import type { OutgoingPools } from '../outgoing/types.ts';

export type { RouterApi, SessionView, SessionsApi, IqRequest, IqHandler, IqHandlerSpec, ServiceHandler } from '../routing/types.ts';
import type { RouterApi, SessionsApi, IqHandlerSpec } from '../routing/types.ts';

export interface ModuleContext {
  config: PetrelConfig;
  hosts: readonly string[];
  hooks: Hooks;
  router: RouterApi;
  sessions: SessionsApi;
  /** The accounts (core data, in the store auth.methods names). */
  users: UserStore;
  /** Both stores, for what a module keeps beyond its ModuleData. */
  stores: StoreAccess;
  logger: Logger;
  metrics: Registry;
  pools: OutgoingPools;
  /** The [acl] and [access] sections, evaluated as MongooseIM's acl:match_rule. */
  access: AccessRules;
  /** Features announced in the server's disco#info (mod_disco reads it; modules add to it). */
  features: Set<string>;
}

export interface ModuleInstance {
  hooks?(): HookRegistration<any>[];
  iqHandlers?(): IqHandlerSpec[];
  start?(): void | Promise<void>;
  stop?(): void | Promise<void>;
}

/**
 * The data a module keeps. A module declares its tables and migrations as a
 * StoreKind (src/storage/types.ts), reads its own `backend` option (declared
 * with storeBackendSpec(), which the configuration check finds) and opens
 * its store through StoreAccess. The data is opened before the module is
 * created, and alone by the command-line tool, which runs `hooks()` to
 * remove an account's rows with no server running.
 */
export interface ModuleData {
  /** The store the data lives in (the start-up log's `stores`). */
  readonly backend: StoreBackend;
  /**
   * Handlers keeping the data in step with the accounts: user_removed, each
   * pushing the promise of its deletion onto `removals`.
   */
  hooks(): HookRegistration<any>[];
}

export interface ModuleDefinition<O = any, D extends ModuleData | void = void> {
  name: string;
  configSpec: Spec;
  /** Other modules this one needs. */
  deps?: string[];
  /**
   * Checks that need other sections (a pool, another module), run when the
   * configuration loads, so that `check-config` reports what `start` would
   * refuse; throws a ConfigError naming the option.
   */
  crossCheck?(opts: O, config: PetrelConfig): void;
  /** Opens the module's data in the store its options name, its tables brought up to date first. */
  openData?(stores: StoreAccess, opts: O): Promise<D>;
  /** `data` is what openData returned; a module without data is created with none. */
  create(ctx: ModuleContext, opts: O, data: D): ModuleInstance | Promise<ModuleInstance>;
  /**
   * What `create` would refuse that the config schema cannot see (a pool it
   * names, a file it loads), found without starting anything: every problem,
   * each a ConfigError naming its TOML path. `petrel check-config` and
   * `petrel start` run it before anything starts.
   */
  check?(opts: O, ctx: ModuleCheckContext): Promise<ConfigError[]>;
}

/** What a module's check may look at besides its own options. */
export interface ModuleCheckContext {
  /** Directory of the configuration file. */
  configDir: string;
  /** Tags of the configured [outgoing_pools.http.TAG]. */
  httpPools: ReadonlySet<string>;
}
