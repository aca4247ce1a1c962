// The HTTP backend of mod_event_pusher (MongooseIM's mod_event_pusher_http):
// for each chat event and each handler, asks the callback module whether to
// push, lets it shape headers and body, and hands the request to a deliverer.
// Nothing here waits for the network: the push_event handler returns as soon
// as the requests are queued (or, when a callback is asynchronous, as soon as
// the callback is started).
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Acc, ChatEvent, PushEvent } from '../../../hooks/catalogue.ts';
import { fail } from '../../../config/schema.ts';
import type { HttpOutcome, HttpPool, OutgoingPools } from '../../../outgoing/types.ts';
import type { HandlerOpts } from '../config.ts';
import type { CallbackModule, HttpHandlerOpts, PrepareArgs, ShouldMakeReqArgs } from './callback.ts';
import { createMemoryDeliverer, DEFAULT_MAX_QUEUE, type Deliverer, type DeliveryRequest } from './deliverer.ts';
import { loadCallbackModule } from './loader.ts';
import { httpBackendMetrics, type HttpBackendMetrics } from './metrics.ts';
import { webhookId } from './webhook-id.ts';

export interface HttpBackendDeps {
  pools: OutgoingPools;
  configDir: string;
  logger: Logger;
  metrics: Registry;
  /** Host types whose metrics exist from the start, at zero, as MongooseIM declares them. */
  hosts?: readonly string[];
  /** Builds the deliverer of one handler; the in-memory one when not given. */
  makeDeliverer?: (h: { index: number; pool: HttpPool; opts: HttpHandlerOpts }, onResult: (req: DeliveryRequest, o: HttpOutcome) => void, onDropped: (req: DeliveryRequest, reason: string) => void) => Deliverer;
  /** Cap of the in-memory queue of each handler. */
  maxQueue?: number;
}

export interface HttpBackend {
  /** The push_event handler: synchronous, never throws. */
  handle(acc: Acc, event: PushEvent): void;
  readonly handlers: ReadonlyArray<{ index: number; opts: HttpHandlerOpts; url: string }>;
  close(): Promise<void>;
}

interface Handler {
  index: number;
  opts: HttpHandlerOpts;
  mod: CallbackModule;
  pool: HttpPool;
  url: string;
  deliverer: Deliverer;
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
  let droppedSinceLog = 0;
  let lastDropLog = 0;

  const onResult = (req: DeliveryRequest, o: HttpOutcome) => {
    const m = metrics.forHost(req.hostType);
    const h = handlers[req.handler]!;
    if (o.kind === 'ok') {
      m.sent.inc();
      m.observe(Math.round(o.timeMs * 1000));
      metrics.outcome(req.hostType, req.handler, 'ok');
      return;
    }
    m.failed.inc();
    const base = { what: 'event_pusher_http_failed', handler: req.handler, url: h.url, host_type: req.hostType, webhook_id: req.webhookId };
    if (o.kind === 'http_status') {
      metrics.outcome(req.hostType, req.handler, 'http_' + o.status);
      log.warn({ ...base, status: o.status }, 'HTTP notification answered with a non-2xx status');
    } else {
      metrics.outcome(req.hostType, req.handler, o.kind);
      log.warn({ ...base, reason: o.kind, error: o.message }, 'HTTP notification failed');
    }
  };

  const onDropped = (req: DeliveryRequest, reason: string) => {
    metrics.forHost(req.hostType).failed.inc();
    metrics.outcome(req.hostType, req.handler, 'dropped');
    // One line per second at most: a dead webhook under load would otherwise flood the log.
    droppedSinceLog++;
    const now = Date.now();
    if (now - lastDropLog >= 1000) {
      log.warn({ what: 'event_pusher_http_dropped', handler: req.handler, url: handlers[req.handler]!.url, reason, dropped: droppedSinceLog, max_queue: maxQueue },
        'HTTP notifications dropped');
      droppedSinceLog = 0;
      lastDropLog = now;
    }
  };

  const handlers: Handler[] = [];
  for (let index = 0; index < handlerOpts.length; index++) {
    const ho = handlerOpts[index]!;
    const pool = deps.pools.http(ho.pool_name);
    if (pool === undefined) {
      fail(`${ho.tomlPath}.pool_name`, `no outgoing pool ${JSON.stringify(ho.pool_name)} (define [outgoing_pools.http.${ho.pool_name}])`);
    }
    const mod = await loadCallbackModule(ho.callback_module, deps.configDir, `${ho.tomlPath}.callback_module`);
    const opts: HttpHandlerOpts = Object.freeze({ pool_name: ho.pool_name, path: ho.path, callback_module: ho.callback_module });
    const deliverer = deps.makeDeliverer
      ? deps.makeDeliverer({ index, pool, opts }, onResult, onDropped)
      : createMemoryDeliverer({ pool, concurrency: Math.max(1, pool.workers), maxQueue, onResult, onDropped });
    handlers.push({ index, opts, mod, pool, url: pool.url(ho.path), deliverer });
  }

  const callbackFailed = (h: Handler, acc: Acc, fn: string, err: unknown) => {
    metrics.forHost(acc.hostType).failed.inc();
    metrics.outcome(acc.hostType, h.index, 'callback_error');
    log.warn({ what: 'event_pusher_http_callback_failed', handler: h.index, callback_module: h.opts.callback_module, function: fn, err },
      'callback module threw');
  };

  const submit = (h: Handler, acc: Acc, event: ChatEvent, headers: unknown, body: unknown) => {
    let pairs: Array<[string, string]>;
    let payload: string | Uint8Array;
    try {
      pairs = headerPairs(headers);
      payload = checkBody(body);
    } catch (e) {
      return callbackFailed(h, acc, 'prepareHeaders/prepareBody', e);
    }
    const id = webhookId(event.from.full, event.to.full, event.packet.attrs.id ?? acc.ref, h.index, event.direction);
    let hasId = false;
    for (const [k] of pairs) if (k.length === 10 && k.toLowerCase() === 'webhook-id') hasId = true;
    if (!hasId) pairs.push(['webhook-id', id]);
    h.deliverer.enqueue({ handler: h.index, hostType: acc.hostType, path: h.opts.path, headers: pairs, body: payload, webhookId: id });
  };

  const prepare = (h: Handler, acc: Acc, event: ChatEvent) => {
    const a: PrepareArgs = {
      acc,
      dir: event.direction,
      host: event.from.domain,
      message: bodyText(event),
      sender: event.from.local,
      receiver: event.to.local,
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
        ([b, hd]) => submit(h, acc, event, hd, b),
        (e) => callbackFailed(h, acc, 'prepareHeaders/prepareBody', e),
      );
    } else submit(h, acc, event, headers, body);
  };

  return {
    handlers: handlers.map((h) => ({ index: h.index, opts: h.opts, url: h.url })),
    handle(acc, event) {
      if (event.kind !== 'chat') return;
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
        if (r === true) prepare(h, acc, event);
        else if (isThenable<boolean>(r)) {
          r.then(
            (yes) => { if (yes === true) prepare(h, acc, event); },
            (e) => callbackFailed(h, acc, 'shouldMakeReq', e),
          );
        }
      }
    },
    async close() {
      await Promise.all(handlers.map((h) => h.deliverer.close()));
    },
  };
}
