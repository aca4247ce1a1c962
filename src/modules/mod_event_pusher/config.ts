// Configuration of mod_event_pusher and its HTTP backend. Three spellings are
// accepted and normalised into one list of handlers:
//   [modules.mod_event_pusher.backend.http]        one handler (a table)
//   [[modules.mod_event_pusher.backend.http]]      several (an array of tables)
//   [modules.mod_event_pusher.http] handlers = [...] / [[modules.mod_event_pusher.http.handlers]]
//                                                  MongooseIM's current syntax
// Options and defaults: mod_event_pusher_http:handler_config_spec/0, plus
// Petrel's delivery options (delivery, retry, signing) whose defaults keep a
// MongooseIM configuration working as written, and the module-level
// outbox_max_events.
import { custom, fail, int, isTable, describe, list, section, str, validate } from '../../config/schema.ts';
import type { Spec } from '../../config/schema.ts';
import type { HttpHandlerOpts } from './http/callback.ts';
import { DEFAULT_RETRY, type RetryPolicy } from './http/retry.ts';
import { parseSecret } from './http/signing.ts';
import { storeBackendSpec, type StoreBackend } from '../../storage/select.ts';

export const DEFAULT_POOL_NAME = 'http_pool';
export const DEFAULT_CALLBACK_MODULE = 'mod_event_pusher_http_defaults';

export type DeliveryMode = 'at_least_once' | 'best_effort';

export const DEFAULT_DELIVERY: DeliveryMode = 'at_least_once';
/** Rows the outbox may hold, all handlers together, before new events are refused. */
export const DEFAULT_OUTBOX_MAX_EVENTS = 1_000_000;

export interface HandlerOpts extends HttpHandlerOpts {
  /** Where the handler was configured, for errors found when the module starts. */
  readonly tomlPath: string;
  /** Petrel: "at_least_once" (the outbox; the default when absent) or "best_effort" (in memory, MongooseIM-like). */
  readonly delivery?: DeliveryMode;
  /** Petrel: when to try again (at_least_once only); DEFAULT_RETRY when absent. */
  readonly retry?: RetryPolicy;
  /** Petrel: Standard Webhooks signing secrets ("whsec_<base64>"); unsigned when absent. */
  readonly signing?: { readonly secrets: readonly string[] };
}

export interface EventPusherOpts {
  handlers: HandlerOpts[];
  /** Petrel: cap of the outbox (rows of every handler together). DEFAULT_OUTBOX_MAX_EVENTS when absent. */
  outbox_max_events?: number;
  /** Petrel: where the outbox lives, "internal" (the embedded store, the default) or "rdbms" (PostgreSQL). */
  outbox_backend?: StoreBackend;
}

const checkSecret = (v: string): string | undefined => {
  const k = parseSecret(v);
  return typeof k === 'string' ? k : undefined;
};

const handlerSection = section({
  pool_name: str({ nonEmpty: true, default: DEFAULT_POOL_NAME }),
  path: str({ default: '' }),
  callback_module: str({ nonEmpty: true, default: DEFAULT_CALLBACK_MODULE }),
  delivery: str({ oneOf: ['at_least_once', 'best_effort'], default: DEFAULT_DELIVERY }),
  retry: section(
    {
      max_attempts: int({ min: 1, default: DEFAULT_RETRY.max_attempts }),
      initial_delay: int({ min: 0, default: DEFAULT_RETRY.initial_delay }),
      max_delay: int({ min: 0, default: DEFAULT_RETRY.max_delay }),
      max_age: int({ min: 1, default: DEFAULT_RETRY.max_age }),
    },
    { default: true },
  ),
  signing: section({ secrets: list(str({ check: checkSecret }), { nonEmpty: true }) }, { required: ['secrets'] }),
});

const handler = custom((v, p, ctx) => ({ ...validate(handlerSection, v, p, ctx), tomlPath: p }));

/** A single table, or an array of tables (TOML's [[...]]). */
const tableOrTables = custom((v, p, ctx) => {
  if (Array.isArray(v)) return v.map((item, i) => validate(handler, item, `${p}[${i}]`, ctx));
  if (isTable(v)) return [validate(handler, v, p, ctx)];
  return fail(p, `expected a table or an array of tables, got ${describe(v)}`);
});

const otherBackend = custom((_v, p) => {
  const name = p.slice(p.lastIndexOf('.') + 1);
  return fail(p, `Petrel has no ${name} backend; mod_event_pusher supports the http backend`);
});

export const eventPusherSpec: Spec = section(
  {
    backend: section({ http: tableOrTables }, { wildcard: otherBackend }),
    http: section({ handlers: list(handler, { default: [] }) }, { default: false }),
    outbox_max_events: int({ min: 1, default: DEFAULT_OUTBOX_MAX_EVENTS }),
    outbox_backend: storeBackendSpec(),
  },
  {
    wildcard: otherBackend,
    default: true,
    process: (v): EventPusherOpts => {
      const handlers: HandlerOpts[] = [...(v.backend?.http ?? []), ...(v.http?.handlers ?? [])];
      // MongooseIM validates the handler list as unique.
      const seen = new Map<string, string>();
      for (const h of handlers) {
        const key = JSON.stringify([h.pool_name, h.path, h.callback_module]);
        const first = seen.get(key);
        if (first !== undefined) fail(h.tomlPath, `duplicate handler: same pool_name, path and callback_module as ${first}`);
        seen.set(key, h.tomlPath);
      }
      return { handlers, outbox_max_events: v.outbox_max_events, outbox_backend: v.outbox_backend };
    },
  },
);

/**
 * `[modules.mod_event_pusher_http]`: the older, per-module spelling that
 * MongooseIM's documentation of the HTTP backend still uses for its option
 * names (modules.mod_event_pusher_http.pool_name, ...). One handler; it is
 * merged into mod_event_pusher's handlers at start-up.
 */
export const eventPusherHttpSpec: Spec = custom((v, p, ctx): EventPusherOpts => {
  if (!isTable(v)) return fail(p, `expected a table, got ${describe(v)}`);
  return { handlers: [validate(handler, v, p, ctx)] };
});
