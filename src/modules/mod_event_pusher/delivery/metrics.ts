// Metrics of the delivery engine, whatever the backend: outbox depth,
// attempts, retries, dead letters, refusals and results by status. The
// `handler` label is the handler's number in its backend, prefixed by the
// backend's name for every backend but http ("rabbit/0"): see handlerLabel.
import { Counter, Gauge, type Registry } from 'prom-client';

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/** Rows waiting in the outbox, per handler (its index in the configuration). */
export const OUTBOX_DEPTH = 'petrel_event_pusher_outbox_depth';
/** Every HTTP attempt made from the outbox, the first and every retry. */
export const DELIVERY_ATTEMPTS = 'petrel_event_pusher_delivery_attempts_total';
/** Failed attempts that were scheduled to be tried again. */
export const DELIVERY_RETRIES = 'petrel_event_pusher_delivery_retries_total';
/** Events moved to the dead-letter table, by reason. */
export const DEAD_LETTERED = 'petrel_event_pusher_dead_lettered_total';
/** Events refused because the outbox held outbox_max_events rows. */
export const OUTBOX_REJECTED = 'petrel_event_pusher_outbox_rejected_total';
/** Events refused because their sender's share of the outbox was used up. */
export const OUTBOX_USER_REJECTED = 'petrel_event_pusher_outbox_user_rejected_total';
/** Every attempt's result: the HTTP status, or timeout / refused / tls / error when there was no answer. */
export const DELIVERY_RESPONSES = 'petrel_event_pusher_delivery_responses_total';

/**
 * A counter child whose increments are added up and applied once when the
 * current piece of work is over (a microtask): prom-client checks and hashes
 * the labels on every inc, and the sender thread's reports bring hundreds of
 * results in one go. Anything that reads the registry (a scrape, `petrel
 * metrics`) runs later than that microtask, so it sees every increment.
 */
export function batchedInc(child: { inc(n?: number): void }): { inc(n?: number): void } {
  let pending = 0;
  let queued = false;
  const flush = () => {
    queued = false;
    const n = pending;
    pending = 0;
    child.inc(n);
  };
  return {
    inc(n = 1) {
      pending += n;
      if (!queued) {
        queued = true;
        queueMicrotask(flush);
      }
    },
  };
}

/** The `handler` label of a backend's handler: its number for http (the first backend, whose labels stay as they were), "<backend>/<number>" for the others. */
export function handlerLabel(h: { backend: string; index: number }): string {
  return h.backend === 'http' ? String(h.index) : `${h.backend}/${h.index}`;
}

/**
 * `handler`: the handler's label (handlerLabel). `n`: how many at once (1
 * when absent); the sender thread sends its counts gathered per turn.
 */
export interface DeliveryMetrics {
  depth(handler: string, n: number): void;
  attempt(hostType: string, handler: string, n?: number): void;
  retry(hostType: string, handler: string, n?: number): void;
  deadLettered(hostType: string, handler: string, reason: string, n?: number): void;
  rejected(hostType: string, handler: string): void;
  userRejected(hostType: string, handler: string): void;
  response(hostType: string, handler: string, status: string, n?: number): void;
}

export function deliveryMetrics(registry: Registry): DeliveryMetrics {
  const depth = getOrCreate(registry, OUTBOX_DEPTH, () => new Gauge({
    name: OUTBOX_DEPTH,
    help: 'Events waiting in the outbox (queued, retrying or in flight), by handler',
    labelNames: ['handler'],
    registers: [registry],
  }));
  const counter = (name: string, help: string, labelNames: string[]) =>
    getOrCreate(registry, name, () => new Counter({ name, help, labelNames, registers: [registry] }));
  const attempts = counter(DELIVERY_ATTEMPTS, 'Delivery attempts made from the outbox (first attempts and retries)', ['host_type', 'handler']);
  const retries = counter(DELIVERY_RETRIES, 'Failed attempts scheduled to be tried again', ['host_type', 'handler']);
  const dead = counter(DEAD_LETTERED, 'Events moved to the dead-letter table (reason: attempts, max_age, final)', ['host_type', 'handler', 'reason']);
  const rejected = counter(OUTBOX_REJECTED, 'Events refused because the outbox was full (outbox_max_events or outbox_max_bytes)', ['host_type', 'handler']);
  const userRejected = counter(OUTBOX_USER_REJECTED, "Events refused because their sender's share of the outbox was used up (outbox_max_events_per_user or outbox_max_bytes_per_user)", ['host_type', 'handler']);
  const responses = counter(DELIVERY_RESPONSES, 'Results of delivery attempts: HTTP status, or timeout, refused, tls, error', ['host_type', 'handler', 'status']);
  // The per-attempt counters keep their children: labels() hashes its arguments on every call.
  const attemptChildren = new Map<string, { inc(n?: number): void }>();
  const responseChildren = new Map<string, { inc(n?: number): void }>();
  const attemptOf = (ht: string, h: string) => {
    const key = ht + '\0' + h;
    let ch = attemptChildren.get(key);
    if (ch === undefined) attemptChildren.set(key, (ch = batchedInc(attempts.labels(ht, h))));
    return ch;
  };
  const responseOf = (ht: string, h: string, status: string) => {
    const key = ht + '\0' + h + '\0' + status;
    let ch = responseChildren.get(key);
    if (ch === undefined) responseChildren.set(key, (ch = batchedInc(responses.labels(ht, h, status))));
    return ch;
  };
  return {
    depth: (h, n) => depth.labels(h).set(n),
    attempt: (ht, h, n = 1) => attemptOf(ht, h).inc(n),
    retry: (ht, h, n = 1) => retries.labels(ht, h).inc(n),
    deadLettered: (ht, h, reason, n = 1) => dead.labels(ht, h, reason).inc(n),
    rejected: (ht, h) => rejected.labels(ht, h).inc(),
    userRejected: (ht, h) => userRejected.labels(ht, h).inc(),
    response: (ht, h, status, n = 1) => responseOf(ht, h, status).inc(n),
  };
}
