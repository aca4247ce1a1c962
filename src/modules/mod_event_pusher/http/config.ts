// Configuration of the HTTP backend. Three spellings are accepted and
// normalised into one list of handlers:
//   [modules.mod_event_pusher.backend.http]        one handler (a table)
//   [[modules.mod_event_pusher.backend.http]]      several (an array of tables)
//   [modules.mod_event_pusher.http] handlers = [...] / [[modules.mod_event_pusher.http.handlers]]
//                                                  MongooseIM's current syntax
// and [modules.mod_event_pusher_http], the older per-module spelling (one
// handler; see registry.ts). Options and defaults:
// mod_event_pusher_http:handler_config_spec/0, plus Petrel's delivery
// options (delivery, retry, signing) whose defaults keep a MongooseIM
// configuration working as written.
import { custom, describe, fail, isTable, list, section, str, validate } from '../../../config/schema.ts';
import type { Spec } from '../../../config/schema.ts';
import type { HttpHandlerOpts } from './callback.ts';
import { retrySpec, type RetryPolicy } from '../delivery/retry.ts';
import { parseSecret } from './signing.ts';

export const DEFAULT_POOL_NAME = 'http_pool';
export const DEFAULT_CALLBACK_MODULE = 'mod_event_pusher_http_defaults';

export type DeliveryMode = 'at_least_once' | 'best_effort';

export const DEFAULT_DELIVERY: DeliveryMode = 'at_least_once';

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

const checkSecret = (v: string): string | undefined => {
  const k = parseSecret(v);
  return typeof k === 'string' ? k : undefined;
};

const handlerSection = section({
  pool_name: str({ nonEmpty: true, default: DEFAULT_POOL_NAME }),
  path: str({ default: '' }),
  callback_module: str({ nonEmpty: true, default: DEFAULT_CALLBACK_MODULE }),
  delivery: str({ oneOf: ['at_least_once', 'best_effort'], default: DEFAULT_DELIVERY }),
  retry: retrySpec(),
  signing: section({ secrets: list(str({ check: checkSecret }), { nonEmpty: true }) }, { required: ['secrets'] }),
});

export const handlerSpec: Spec = custom((v, p, ctx) => ({ ...validate(handlerSection, v, p, ctx), tomlPath: p }));

/** `backend.http`: a single table, or an array of tables (TOML's [[...]]). */
export const httpBackendSpec: Spec = custom((v, p, ctx) => {
  if (Array.isArray(v)) return v.map((item, i) => validate(handlerSpec, item, `${p}[${i}]`, ctx));
  if (isTable(v)) return [validate(handlerSpec, v, p, ctx)];
  return fail(p, `expected a table or an array of tables, got ${describe(v)}`);
});

/** `[modules.mod_event_pusher.http]`: MongooseIM's `handlers` list. */
export const httpModuleSpec: Spec = section({ handlers: list(handlerSpec, { default: [] }) }, { default: false });

/** Both spellings' handlers, in order; MongooseIM validates the handler list as unique. */
export function combineHttp(fromBackend: unknown, fromModule: unknown): HandlerOpts[] | undefined {
  const handlers: HandlerOpts[] = [...((fromBackend as HandlerOpts[] | undefined) ?? []), ...((fromModule as { handlers?: HandlerOpts[] } | undefined)?.handlers ?? [])];
  if (handlers.length === 0) return undefined;
  const seen = new Map<string, string>();
  for (const h of handlers) {
    const key = JSON.stringify([h.pool_name, h.path, h.callback_module]);
    const first = seen.get(key);
    if (first !== undefined) fail(h.tomlPath, `duplicate handler: same pool_name, path and callback_module as ${first}`);
    seen.set(key, h.tomlPath);
  }
  return handlers;
}

/**
 * `[modules.mod_event_pusher_http]`: the older, per-module spelling that
 * MongooseIM's documentation of the HTTP backend still uses for its option
 * names (modules.mod_event_pusher_http.pool_name, ...). One handler.
 */
export const httpAliasHandlerSpec: Spec = custom((v, p, ctx): HandlerOpts => {
  if (!isTable(v)) return fail(p, `expected a table, got ${describe(v)}`);
  return validate(handlerSpec, v, p, ctx) as HandlerOpts;
});
