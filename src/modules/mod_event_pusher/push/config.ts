// Configuration of the push backend (MongooseIM's mod_event_pusher_push,
// XEP-0357), under either spelling:
//   [modules.mod_event_pusher.backend.push]   (the older one)
//   [modules.mod_event_pusher.push]           (MongooseIM's current one)
// Option names and defaults are mod_event_pusher_push:config_spec/0's;
// max_registrations, only_offline and only_with_body are Petrel's, with
// defaults that behave as MongooseIM does.
import { bool, custom, describe, fail, int, isTable, list, section, str, validate, type Spec } from '../../../config/schema.ts';
import { storeBackendSpec, type StoreBackend } from '../../../storage/select.ts';

export const PLUGIN_DEFAULTS = 'mod_event_pusher_push_plugin_defaults';
export const PLUGIN_ENHANCED = 'mod_event_pusher_push_plugin_enhanced';
export type PluginModule = typeof PLUGIN_DEFAULTS | typeof PLUGIN_ENHANCED;

/** Registrations (pubsub service and node pairs) one account may keep. */
export const DEFAULT_MAX_REGISTRATIONS = 10;
/** Bytes of one registration's node and publish-options (UTF-8, as stored). */
export const DEFAULT_MAX_REGISTRATION_SIZE = 4096;
/** MongooseIM's wpool defaults (mongoose_config_spec:wpool/1; the push backend's strategy is available_worker). */
export const DEFAULT_WPOOL_WORKERS = 10;

export interface PushOpts {
  readonly tomlPath: string;
  /** Where the registrations are kept: "internal" (the embedded SQLite store) or "rdbms" (PostgreSQL). */
  readonly backend: StoreBackend;
  /** Accepted as MongooseIM has it; Petrel does the push work on the event loop and delivers through the outbox. */
  readonly wpool: { readonly workers: number; readonly strategy: string; readonly call_timeout: number; readonly max_worker_queue_len?: number };
  readonly plugin_module: PluginModule;
  /** Domains (with "@HOSTS@" / "@HOST@" standing for the recipient's domain) served by mod_push_service_mongoosepush. */
  readonly virtual_pubsub_hosts: readonly string[];
  readonly max_registrations: number;
  readonly max_registration_size: number;
  readonly only_offline: boolean;
  readonly only_with_body: boolean;
}

const HOST_PATTERN = /@HOSTS?@/;

const checkVirtualHost = (v: string): string | undefined => {
  if (v.trim() !== v || v === '') return 'must be a domain name or a subdomain template such as "pubsub.@HOSTS@"';
  const rest = v.replace(HOST_PATTERN, 'x');
  if (HOST_PATTERN.test(rest)) return 'may hold "@HOSTS@" once only';
  if (/[\s/@]/.test(rest)) return `${JSON.stringify(v)} is not a domain name or a subdomain template`;
  return undefined;
};

const pushSection = section({
  backend: storeBackendSpec(),
  wpool: section(
    {
      workers: int({ min: 1, default: DEFAULT_WPOOL_WORKERS }),
      strategy: str({ oneOf: ['best_worker', 'random_worker', 'next_worker', 'available_worker', 'next_available_worker'], default: 'available_worker' }),
      call_timeout: int({ min: 1, default: 5000 }),
      max_worker_queue_len: int({ min: 0 }),
    },
    { default: true },
  ),
  iqdisc: section({ type: str({ oneOf: ['no_queue', 'one_queue', 'parallel', 'queues'] }), workers: int({ min: 1 }) }, { required: ['type'] }),
  plugin_module: str({ oneOf: [PLUGIN_DEFAULTS, PLUGIN_ENHANCED], default: PLUGIN_DEFAULTS }),
  virtual_pubsub_hosts: list(str({ check: checkVirtualHost }), { default: [], unique: true }),
  max_registrations: int({ min: 1, max: 1000, default: DEFAULT_MAX_REGISTRATIONS }),
  max_registration_size: int({ min: 256, max: 65536, default: DEFAULT_MAX_REGISTRATION_SIZE }),
  only_offline: bool({ default: true }),
  only_with_body: bool({ default: true }),
});

export const pushSpec: Spec = custom((v, p, ctx): PushOpts => {
  if (!isTable(v)) return fail(p, `expected a table, got ${describe(v)}`);
  const o = validate(pushSection, v, p, ctx);
  return Object.freeze({
    tomlPath: p,
    backend: o.backend,
    wpool: Object.freeze({ ...o.wpool }),
    plugin_module: o.plugin_module,
    virtual_pubsub_hosts: Object.freeze([...o.virtual_pubsub_hosts]),
    max_registrations: o.max_registrations,
    max_registration_size: o.max_registration_size,
    only_offline: o.only_offline,
    only_with_body: o.only_with_body,
  });
});

/** One of the two spellings; both at once is an error, as two push backends would answer the same IQs. */
export function combinePush(fromBackend: unknown, fromModule: unknown): PushOpts | undefined {
  const a = fromBackend as PushOpts | undefined;
  const b = fromModule as PushOpts | undefined;
  if (a !== undefined && b !== undefined) fail(b.tomlPath, `the push backend is already configured at ${a.tomlPath}; configure it once`);
  return a ?? b;
}

/** Whether `pubsub` is one of the virtual pubsub hosts for a user of `domain` (mongoose_subdomain_utils:is_subdomain/3). */
export function isVirtualPubsubHost(opts: PushOpts, domain: string, pubsub: string): boolean {
  for (const t of opts.virtual_pubsub_hosts) {
    if (HOST_PATTERN.test(t) ? t.replace(HOST_PATTERN, domain) === pubsub : t === pubsub) return true;
  }
  return false;
}
