// The HTTP backend of mod_event_pusher (MongooseIM's mod_event_pusher_http):
// for each chat event and each handler, asks the callback module whether to
// push, lets it shape headers and body, and hands the request to a deliverer.
// Nothing here waits for the network: the push_event handler returns as soon
// as the requests are queued (or, when a callback is asynchronous, as soon as
// the callback is started).
//
// With at-least-once delivery (the default) the request must be stored before
// the sender's message is routed: for a message a user sent (direction "in")
// whose callbacks answered synchronously, the handler sets `acc.barrier` to
// the commit of the outbox batch holding the request, and the sender's
// session routes the message once it settles. Requests of asynchronous
// callbacks, and of the "out" direction, are stored without holding anything.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Acc, Barrier, ChatEvent, PushEvent } from '../../../hooks/catalogue.ts';
import { ConfigError, fail } from '../../../config/schema.ts';
import type { ModuleCheckContext } from '../../types.ts';
import { httpPoolOrigin } from '../../../outgoing/http.ts';
import type { HttpOutcome, HttpPool, OutgoingPools } from '../../../outgoing/types.ts';
import type { AttemptReport, DurableQueue, EnqueueRefusal, OutboxAccess } from '../delivery/types.ts';
import { DEFAULT_RETRY } from '../delivery/retry.ts';
import type { HandlerOpts } from './config.ts';
import type { CallbackModule, HttpHandlerOpts, PrepareArgs, ShouldMakeReqArgs } from './callback.ts';
import { createMemoryDeliverer, DEFAULT_MAX_QUEUE, type Deliverer } from './deliverer.ts';
import { loadCallbackModule } from './loader.ts';
import { httpBackendMetrics, type HttpBackendMetrics } from './metrics.ts';
import { encodePayload, encodePrefix } from './payload.ts';
import { createHttpSender, outcomeOf, type HttpSenderHandler, type HttpSenderInit } from './sender.ts';
import { createSigner, parseSecret, signedHeaders, type Signer } from './signing.ts';
import { newWebhookId } from './webhook-id.ts';
import { logLimiter, type LogLimiter } from '../delivery/log-limit.ts';

/**
 * The key under which a handler's events are stored: what makes a handler
 * unique in the configuration (MongooseIM refuses two handlers with the same
 * pool_name, path and callback_module), so that reordering handlers does not
 * orphan stored events.
 */
/** A handler naming a pool that is not configured. */
function noPoolError(ho: HandlerOpts): ConfigError {
  return new ConfigError(`${ho.tomlPath}.pool_name`, `no outgoing pool ${JSON.stringify(ho.pool_name)} (define [outgoing_pools.http.${ho.pool_name}])`);
}

/**
 * Everything createHttpBackend refuses before it sends anything, for every
 * handler at once: a pool that is not configured, a callback module that
 * cannot be found or loaded or lacks one of its functions.
 */
export async function checkHttpBackend(handlerOpts: readonly HandlerOpts[], ctx: ModuleCheckContext): Promise<ConfigError[]> {
  const errors: ConfigError[] = [];
  for (const ho of handlerOpts) {
    if (!ctx.httpPools.has(ho.pool_name)) errors.push(noPoolError(ho));
    try {
      await loadCallbackModule(ho.callback_module, ctx.configDir, `${ho.tomlPath}.callback_module`);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      errors.push(...err.errors);
    }
  }
  return errors;
}

export function handlerKey(o: HttpHandlerOpts): string {
  return `${o.pool_name}:${o.path}:${o.callback_module}`;
}

export interface HttpBackendDeps {
  pools: OutgoingPools;
  configDir: string;
  logger: Logger;
  metrics: Registry;
  /** Host types whose metrics exist from the start, at zero, as MongooseIM declares them. */
  hosts?: readonly string[];
  /** Cap of the in-memory queue of each handler. */
  maxQueue?: number;
  /** Cap of the body bytes in the in-memory queue of each handler (best_effort_max_bytes). */
  maxQueueBytes?: number;
  /** mod_event_pusher's outbox; needed when a handler has at_least_once delivery. */
  outbox?: OutboxAccess;
}

export interface HttpBackend {
  /** The push_event handler: synchronous, never throws. */
  /** The push_event handler (see BackendInstance.handle). */
  handle(acc: Acc, event: PushEvent, barrier: Barrier): Barrier;
  readonly handlers: ReadonlyArray<{ index: number; opts: HttpHandlerOpts; url: string }>;
  close(): Promise<void>;
}

interface Handler {
  index: number;
  opts: HttpHandlerOpts;
  mod: CallbackModule;
  pool: HttpPool;
  url: string;
  /** best_effort: the in-memory queue. */
  deliverer: Deliverer | null;
  /** at_least_once: the outbox (the request is stored before the message moves on). */
  durable: DurableQueue | null;
  signer: Signer | undefined;
  /** The headers the callback returned last, prepared (most callbacks return the same constant list every time). */
  hdr: PreparedHeaders | null;
}

interface PreparedHeaders {
  /** What the callback returned, and a copy of its entries to tell whether it changed since. */
  src: unknown;
  seen: unknown[];
  pairs: Array<[string, string]>;
  /** The webhook-id the callback set, if it did. */
  id: string | undefined;
  /** The stored payload's part before the body (payload.ts), built on first use. */
  prefix: string | null;
}

/** A list of pairs that still holds what it held when it was prepared. */
function unchanged(p: PreparedHeaders, h: unknown): boolean {
  if (p.src !== h || !Array.isArray(h)) return false;
  const seen = p.seen;
  if (h.length * 2 !== seen.length) return false;
  for (let i = 0; i < h.length; i++) {
    const e = h[i] as unknown;
    if (!Array.isArray(e) || e[0] !== seen[i * 2] || e[1] !== seen[i * 2 + 1]) return false;
  }
  return true;
}

function prepareHeaders(h: unknown): PreparedHeaders {
  const pairs = headerPairs(h);
  let id: string | undefined;
  for (const [k, v] of pairs) if (k.length === 10 && k.toLowerCase() === 'webhook-id') id = v;
  const seen: unknown[] = [];
  if (Array.isArray(h)) for (const e of h) seen.push(Array.isArray(e) ? e[0] : undefined, Array.isArray(e) ? e[1] : undefined);
  return { src: h, seen, pairs, id, prefix: null };
}

type Thenable<T> = { then(ok: (v: T) => unknown, err: (e: unknown) => unknown): unknown };

function isThenable<T>(v: unknown): v is Thenable<T> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** Text of the first <body/>, as exml_query:path(Packet, [{element, <<"body">>}, cdata]) reads it. */
function bodyText(event: ChatEvent): string {
  return event.packet.getChild('body')?.text() ?? '';
}

function headerPairs(h: unknown): Array<[string, string]> {
  if (Array.isArray(h)) return h.map(([k, v]) => [String(k), String(v)] as [string, string]);
  if (typeof h === 'object' && h !== null) return Object.entries(h).map(([k, v]) => [k, String(v)] as [string, string]);
  throw new TypeError(`prepareHeaders returned ${typeof h}, expected an array of [name, value] or an object`);
}

function checkBody(b: unknown): string | Uint8Array {
  if (typeof b === 'string' || b instanceof Uint8Array) return b;
  throw new TypeError(`prepareBody returned ${b === null ? 'null' : typeof b}, expected a string or a Uint8Array`);
}

/**
 * Resolves each handler's pool and callback module. A pool or callback
 * module that cannot be found is a ConfigError naming the handler's TOML path.
 */
export async function createHttpBackend(deps: HttpBackendDeps, handlerOpts: readonly HandlerOpts[]): Promise<HttpBackend> {
  const log = deps.logger;
  const metrics: HttpBackendMetrics = httpBackendMetrics(deps.metrics);
  for (const h of deps.hosts ?? []) metrics.forHost(h);
  const maxQueue = deps.maxQueue ?? DEFAULT_MAX_QUEUE;
  /**
   * Failed attempts that will be retried are logged at most once a second per
   * handler; the others of that second are counted in a summary line
   * (event_pusher_http_failed_suppressed) when it ends.
   */
  const retryLog = new Map<number, LogLimiter>();
  const retryLimiter = (handler: number, hostType: string): LogLimiter => {
    let l = retryLog.get(handler);
    if (l === undefined) {
      l = logLimiter((suppressed, windowMs) =>
        log.warn({ what: 'event_pusher_http_failed_suppressed', handler, url: handlers[handler]!.url, host_type: hostType, suppressed, window_ms: windowMs },
          `${suppressed} more failed HTTP notification(s) of this handler were not logged one by one; they will be retried`),
      );
      retryLog.set(handler, l);
    }
    return l;
  };
  /** Events the in-memory queue could not take: one line a second, the rest in its summary. */
  let dropLine: { handler: number; reason: string } = { handler: 0, reason: '' };
  const dropLog = logLimiter((dropped, windowMs) =>
    log.warn({ what: 'event_pusher_http_dropped', handler: dropLine.handler, url: handlers[dropLine.handler]!.url, reason: dropLine.reason, dropped, window_ms: windowMs, max_queue: maxQueue },
      'HTTP notifications dropped'),
  );

  const onResult = (req: { handler: number; hostType: string; webhookId: string }, o: HttpOutcome, r?: AttemptReport) => {
    const m = metrics.forHost(req.hostType);
    const h = handlers[req.handler]!;
    if (o.kind === 'ok') {
      m.sent.inc();
      m.observe(Math.round(o.timeMs * 1000));
      metrics.outcome(req.hostType, req.handler, 'ok');
      return;
    }
    m.failed.inc();
    metrics.outcome(req.hostType, req.handler, o.kind === 'http_status' ? 'http_' + o.status : o.kind);
    let extra: Record<string, unknown> = {};
    if (r !== undefined) {
      extra = { attempt: r.attempt };
      if (r.nextAttemptInMs !== undefined) {
        extra.next_attempt_in_ms = r.nextAttemptInMs;
        if (!retryLimiter(req.handler, req.hostType).admit()) return;
      }
    }
    const base = { what: 'event_pusher_http_failed', handler: req.handler, url: h.url, host_type: req.hostType, webhook_id: req.webhookId, ...extra };
    if (o.kind === 'http_status') log.warn({ ...base, status: o.status }, 'HTTP notification answered with a non-2xx status');
    else log.warn({ ...base, reason: o.kind, error: o.message }, 'HTTP notification failed');
  };

  const onDropped = (req: { handler: number; hostType: string }, reason: string) => {
    metrics.forHost(req.hostType).failed.inc();
    // The outbox logs its own refusals (event_pusher_outbox_full, event_pusher_outbox_user_full, event_pusher_outbox_write_failed).
    if (reason === 'outbox_full' || reason === 'user_full' || reason === 'store_error') return metrics.outcome(req.hostType, req.handler, reason);
    metrics.outcome(req.hostType, req.handler, 'dropped');
    // One line per second at most: a dead webhook under load would otherwise flood the log.
    dropLine = { handler: req.handler, reason };
    if (dropLog.admit()) {
      log.warn({ what: 'event_pusher_http_dropped', handler: req.handler, url: handlers[req.handler]!.url, reason, dropped: 1, max_queue: maxQueue },
        'HTTP notifications dropped');
    }
  };

  const handlers: Handler[] = [];
  const durable: HttpSenderHandler[] = [];
  const threadInit: HttpSenderInit = { handlers: [] };
  let threadable = true;
  {
    for (let index = 0; index < handlerOpts.length; index++) {
      const ho = handlerOpts[index]!;
      const pool = deps.pools.http(ho.pool_name);
      if (pool === undefined) throw noPoolError(ho);
      const mod = await loadCallbackModule(ho.callback_module, deps.configDir, `${ho.tomlPath}.callback_module`);
      const opts: HttpHandlerOpts = Object.freeze({ pool_name: ho.pool_name, path: ho.path, callback_module: ho.callback_module });
      const url = pool.url(ho.path);
      let signer: Signer | undefined;
      let signingKeys: Buffer[] | undefined;
      if (ho.signing !== undefined) {
        signingKeys = ho.signing.secrets.map((sec, i) => {
          const k = parseSecret(sec);
          return typeof k === 'string' ? fail(`${ho.tomlPath}.signing.secrets[${i}]`, k) : k;
        });
        signer = createSigner(signingKeys);
      }
      let deliverer: Deliverer | null = null;
      let queue: DurableQueue | null = null;
      if ((ho.delivery ?? 'at_least_once') === 'best_effort') {
        const s = signer;
        deliverer = createMemoryDeliverer({
          pool, concurrency: Math.max(1, pool.workers), maxQueue, maxQueueBytes: deps.maxQueueBytes, onResult, onDropped,
          headersFor: s === undefined ? undefined : (req) => signedHeaders(s, req.headers as Array<[string, string]>, req.webhookId, req.body, Date.now()),
        });
      } else {
        if (deps.outbox === undefined) throw new Error(`${ho.tomlPath}: at_least_once delivery needs an outbox store`);
        queue = deps.outbox.handler(
          { backend: 'http', index, key: handlerKey(opts), lane: ho.pool_name, concurrency: Math.max(1, pool.workers), retry: ho.retry ?? DEFAULT_RETRY, logFields: { url } },
          {
            attempted: (item, r, report) => onResult({ handler: index, hostType: item.hostType, webhookId: item.eventId }, outcomeOf(r), report),
            dropped: (hostType, _eventId, reason) => onDropped({ handler: index, hostType }, reason),
          },
        );
        durable.push({ index, pool, signer });
        const origin = httpPoolOrigin(pool);
        if (origin === undefined) threadable = false;
        else threadInit.handlers.push({ index, poolTag: origin.tag, poolConfig: origin.cfg, signingKeys });
      }
      handlers.push({ index, opts, mod, pool, url, deliverer, durable: queue, signer, hdr: null });
    }
    if (durable.length > 0) {
      deps.outbox!.sender('http', {
        local: () => createHttpSender(durable),
        thread: threadable ? { url: new URL('./sender.ts', import.meta.url).href, init: threadInit } : undefined,
      });
    }
  }

  const callbackFailed = (h: Handler, acc: Acc, fn: string, err: unknown) => {
    metrics.forHost(acc.hostType).failed.inc();
    metrics.outcome(acc.hostType, h.index, 'callback_error');
    log.warn({ what: 'event_pusher_http_callback_failed', handler: h.index, callback_module: h.opts.callback_module, function: fn, err },
      'callback module threw');
  };

  const submit = (h: Handler, acc: Acc, event: ChatEvent, headers: unknown, body: unknown, sync: boolean) => {
    let prep: PreparedHeaders;
    let payload: string | Uint8Array;
    try {
      const last = h.hdr;
      prep = last !== null && unchanged(last, headers) ? last : prepareHeaders(headers);
      if (Array.isArray(headers)) h.hdr = prep;
      payload = checkBody(body);
    } catch (e) {
      return callbackFailed(h, acc, 'prepareHeaders/prepareBody', e);
    }
    // A webhook-id the callback module set is kept, and is what signatures
    // cover; otherwise the event gets one of the server's own, stored with it.
    const own = prep.id;
    const id = own ?? newWebhookId();
    let stored: Promise<void> | void;
    if (h.durable !== null) {
      let r: Promise<void> | EnqueueRefusal;
      // Stored as the handler's prefix (path and headers, encoded once) and the body.
      let prefix = prep.prefix;
      if (prefix === null) {
        try {
          prefix = encodePrefix(h.opts.path, prep.pairs, own === undefined);
        } catch (e) {
          return callbackFailed(h, acc, 'prepareHeaders', e);
        }
        if (h.hdr === prep) prep.prefix = prefix;
      }
      r = h.durable.enqueue(acc.hostType, id, encodePayload(prefix, payload), event.from.bare);
      if (typeof r === 'string') {
        // The sender has used up its share: a message it is sending is bounced (index.ts).
        if (r === 'user_full' && sync && event.direction === 'in') event.refused = r;
        return undefined;
      }
      stored = r;
    } else {
      const pairs: Array<[string, string]> = own === undefined ? [...prep.pairs, ['webhook-id', id]] : prep.pairs;
      stored = h.deliverer!.enqueue({ handler: h.index, hostType: acc.hostType, path: h.opts.path, headers: pairs, body: payload, webhookId: id });
    }
    // Only a message a user sent can still be held; by the time an asynchronous
    // callback answers, or for the "out" direction, it has moved on.
    return stored !== undefined && sync && event.direction === 'in' ? stored : undefined;
  };

  const prepare = (h: Handler, acc: Acc, event: ChatEvent, sync: boolean) => {
    const a: PrepareArgs = {
      acc,
      dir: event.direction,
      host: event.from.domain,
      message: bodyText(event),
      sender: event.from.local,
      receiver: event.to.local,
      receiverHost: event.to.domain,
      opts: h.opts,
    };
    let body: unknown;
    let headers: unknown;
    // MongooseIM calls prepare_body before prepare_headers.
    try {
      body = h.mod.prepareBody(a);
      headers = h.mod.prepareHeaders(a);
    } catch (e) {
      return callbackFailed(h, acc, 'prepareHeaders/prepareBody', e);
    }
    if (isThenable(body) || isThenable(headers)) {
      Promise.all([body, headers]).then(
        ([b, hd]) => submit(h, acc, event, hd, b, false),
        (e) => callbackFailed(h, acc, 'prepareHeaders/prepareBody', e),
      );
      return undefined;
    }
    return submit(h, acc, event, headers, body, sync);
  };

  return {
    handlers: handlers.map((h) => ({ index: h.index, opts: h.opts, url: h.url })),
    handle(acc, event, barrier) {
      if (event.kind !== 'chat') return barrier;
      for (let i = 0; i < handlers.length; i++) {
        const h = handlers[i]!;
        const args: ShouldMakeReqArgs = { acc, dir: event.direction, packet: event.packet, from: event.from, to: event.to, opts: h.opts };
        let r: unknown;
        try {
          r = h.mod.shouldMakeReq(args);
        } catch (e) {
          callbackFailed(h, acc, 'shouldMakeReq', e);
          continue;
        }
        if (r === true) {
          const stored = prepare(h, acc, event, true);
          if (stored !== undefined) barrier = barrier === undefined ? stored : Promise.all([barrier, stored]);
        } else if (isThenable<boolean>(r)) {
          r.then(
            (yes) => { if (yes === true) prepare(h, acc, event, false); },
            (e) => callbackFailed(h, acc, 'shouldMakeReq', e),
          );
        }
      }
      return barrier;
    },
    async close() {
      // The outbox is mod_event_pusher's: it closes it after its backends.
      await Promise.all(handlers.map((h) => h.deliverer?.close()));
      for (const l of retryLog.values()) l.flush();
      dropLog.flush();
    },
  };
}
