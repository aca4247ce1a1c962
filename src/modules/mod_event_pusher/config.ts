// Configuration of mod_event_pusher: its own options (the outbox, where the
// senders run) and one piece per backend, read from the backend registry
// (backends.ts): `backend.<name>`, and MongooseIM's current spelling
// `[modules.mod_event_pusher.<name>]` where the backend has one. A name that
// is not a backend is an error naming its path and the known backends.
import { custom, fail, int, section, str, validate, type Spec } from '../../config/schema.ts';
import { storeBackendSpec, type StoreBackend } from '../../storage/select.ts';
import { DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_ROWS, DEFAULT_BATCH_MAX_ROWS_PER_OWNER, DEFAULT_OWNER_TIMEOUT_MS } from '../../storage/outbox/types.ts';
import { BACKENDS, unknownBackendMessage } from './backends.ts';
import type { SenderThread } from './delivery/outbox.ts';
import type { HandlerOpts } from './http/config.ts';
import { httpAliasHandlerSpec } from './http/config.ts';

export type { HandlerOpts, DeliveryMode } from './http/config.ts';
export { DEFAULT_POOL_NAME, DEFAULT_CALLBACK_MODULE, DEFAULT_DELIVERY } from './http/config.ts';

/** Rows the outbox may hold, all handlers together, before new events are refused. */
export const DEFAULT_OUTBOX_MAX_EVENTS = 1_000_000;
/** Payload bytes the outbox may hold, all handlers together, before new events are refused (1 GiB). */
export const DEFAULT_OUTBOX_MAX_BYTES = 1024 * 1024 * 1024;
/** One sender's share: events waiting in the outbox, every handler together. */
export const DEFAULT_OUTBOX_MAX_EVENTS_PER_USER = 100_000;
/** One sender's share: payload bytes waiting in the outbox (100 MiB). */
export const DEFAULT_OUTBOX_MAX_BYTES_PER_USER = 100 * 1024 * 1024;
/** The high-water mark of flow control when none is set: this fraction of outbox_max_bytes (128 MiB of the default 1 GiB). */
export const DEFAULT_HIGH_WATER_FRACTION = 1 / 8;
/** The low-water mark when none is set: this fraction of the high-water mark. */
export const DEFAULT_LOW_WATER_FRACTION = 1 / 2;
/** Body bytes each best-effort handler's in-memory queue may hold (64 MiB). */
export const DEFAULT_BEST_EFFORT_MAX_BYTES = 64 * 1024 * 1024;
/** The senders run in a thread of their own (the SQLite outbox's writer thread, or one with its own PostgreSQL connections). */
export const DEFAULT_SENDER_THREAD: SenderThread = 'worker';

export interface EventPusherOpts {
  /** Each configured backend's options, by backend name (HTTP: its handlers). */
  backends: Readonly<Record<string, unknown>>;
  /** Petrel: cap of the outbox (rows of every handler together). */
  outbox_max_events?: number;
  /** Petrel: cap of the outbox in payload bytes (every handler together). */
  outbox_max_bytes?: number;
  /** Petrel: events of one sender waiting in the outbox at most. */
  outbox_max_events_per_user?: number;
  /** Petrel: payload bytes of one sender's events waiting in the outbox at most. */
  outbox_max_bytes_per_user?: number;
  /** Petrel: payload bytes in the outbox past which the senders whose events wait are not read (flow control). */
  outbox_high_water_bytes?: number;
  /** Petrel: payload bytes in the outbox below which throttled senders are read again. */
  outbox_low_water_bytes?: number;
  /** Petrel: body bytes in each best_effort handler's in-memory queue at most. */
  best_effort_max_bytes?: number;
  /** Petrel: where the outbox lives, "internal" (the embedded store, the default) or "rdbms" (PostgreSQL). */
  outbox_backend?: StoreBackend;
  /** Petrel: where the backends' senders run, "worker" (default) or "main". */
  sender_thread?: SenderThread;
  /** Petrel: rows in one outbox transaction at most. */
  outbox_batch_max_rows?: number;
  /** Petrel: payload bytes in one outbox transaction at most. */
  outbox_batch_max_bytes?: number;
  /** Petrel, PostgreSQL outbox: ms before PostgreSQL ends a silent server's connections, so that the others take its claims. */
  outbox_owner_timeout?: number;
  /** Petrel: rows of one sender in one outbox transaction at most. */
  outbox_batch_max_rows_per_user?: number;
}

/** The flow-control marks, set or derived, checked: low < high <= outbox_max_bytes. */
function waterMarks(v: { outbox_max_bytes?: number; outbox_high_water_bytes?: number; outbox_low_water_bytes?: number }, p: string): { high: number; low: number } {
  const max = v.outbox_max_bytes ?? DEFAULT_OUTBOX_MAX_BYTES;
  const highSet = v.outbox_high_water_bytes;
  const high = highSet ?? Math.floor(max * DEFAULT_HIGH_WATER_FRACTION);
  if (high > max) fail(`${p}.outbox_high_water_bytes`, `${high} is above outbox_max_bytes (${max}): the high-water mark must be at most outbox_max_bytes`);
  const lowSet = v.outbox_low_water_bytes;
  const low = lowSet ?? Math.floor(high * DEFAULT_LOW_WATER_FRACTION);
  if (low >= high) {
    fail(`${p}.outbox_low_water_bytes`, highSet === undefined
      ? `${low} is not below the high-water mark (${high}, an eighth of outbox_max_bytes when outbox_high_water_bytes is not set): the low-water mark must be below it`
      : `${low} is not below outbox_high_water_bytes (${high}): the low-water mark must be below it`);
  }
  return { high, low };
}

const unknownBackend = custom((_v, p) => fail(p, unknownBackendMessage(p.slice(p.lastIndexOf('.') + 1))));

const backendSpecs: Record<string, Spec> = {};
const moduleSpecs: Record<string, Spec> = {};
for (const b of Object.values(BACKENDS)) {
  backendSpecs[b.name] = b.spec;
  if (b.moduleSpec !== undefined) moduleSpecs[b.name] = b.moduleSpec;
}

export const eventPusherSpec: Spec = section(
  {
    backend: section(backendSpecs, { wildcard: unknownBackend }),
    ...moduleSpecs,
    outbox_max_events: int({ min: 1, default: DEFAULT_OUTBOX_MAX_EVENTS }),
    outbox_max_bytes: int({ min: 1024, default: DEFAULT_OUTBOX_MAX_BYTES }),
    outbox_max_events_per_user: int({ min: 1, default: DEFAULT_OUTBOX_MAX_EVENTS_PER_USER }),
    outbox_max_bytes_per_user: int({ min: 1024, default: DEFAULT_OUTBOX_MAX_BYTES_PER_USER }),
    // No default here: derived from outbox_max_bytes (waterMarks).
    outbox_high_water_bytes: int({ min: 1 }),
    outbox_low_water_bytes: int({ min: 0 }),
    best_effort_max_bytes: int({ min: 1024, default: DEFAULT_BEST_EFFORT_MAX_BYTES }),
    outbox_backend: storeBackendSpec(),
    sender_thread: str({ oneOf: ['worker', 'main'], default: DEFAULT_SENDER_THREAD }),
    outbox_batch_max_rows: int({ min: 1, default: DEFAULT_BATCH_MAX_ROWS }),
    outbox_batch_max_bytes: int({ min: 1024, default: DEFAULT_BATCH_MAX_BYTES }),
    outbox_owner_timeout: int({ min: 1000, default: DEFAULT_OWNER_TIMEOUT_MS }),
    outbox_batch_max_rows_per_user: int({ min: 1, default: DEFAULT_BATCH_MAX_ROWS_PER_OWNER }),
  },
  {
    wildcard: unknownBackend,
    default: true,
    process: (v, p): EventPusherOpts => {
      const marks = waterMarks(v, p);
      const backends: Record<string, unknown> = {};
      for (const b of Object.values(BACKENDS)) {
        const o = b.combine(v.backend?.[b.name], v[b.name]);
        if (o !== undefined) backends[b.name] = o;
      }
      return {
        backends,
        outbox_max_events: v.outbox_max_events,
        outbox_max_bytes: v.outbox_max_bytes,
        outbox_max_events_per_user: v.outbox_max_events_per_user,
        outbox_max_bytes_per_user: v.outbox_max_bytes_per_user,
        outbox_high_water_bytes: marks.high,
        outbox_low_water_bytes: marks.low,
        best_effort_max_bytes: v.best_effort_max_bytes,
        outbox_backend: v.outbox_backend,
        sender_thread: v.sender_thread,
        outbox_batch_max_rows: v.outbox_batch_max_rows,
        outbox_batch_max_bytes: v.outbox_batch_max_bytes,
        outbox_owner_timeout: v.outbox_owner_timeout,
        outbox_batch_max_rows_per_user: v.outbox_batch_max_rows_per_user,
      };
    },
  },
);

/** `[modules.mod_event_pusher_http]`: one HTTP handler, added to mod_event_pusher's (see mergeEventPusherAlias). */
export const eventPusherHttpSpec: Spec = custom((v, p, ctx): EventPusherOpts => ({ backends: { http: [validate(httpAliasHandlerSpec, v, p, ctx) as HandlerOpts] } }));

/** mod_event_pusher's options with the handler of [modules.mod_event_pusher_http] after its own. */
export function mergeEventPusherAlias(main: EventPusherOpts | undefined, alias: EventPusherOpts): EventPusherOpts {
  const http = [...(((main?.backends.http as HandlerOpts[] | undefined) ?? [])), ...(((alias.backends.http as HandlerOpts[] | undefined) ?? []))];
  return { ...(main ?? {}), backends: { ...(main?.backends ?? {}), http } };
}
