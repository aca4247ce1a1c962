// Metrics of the HTTP backend, registered on the server's prom-client
// registry. The three mod_event_pusher_http_sent_* names are MongooseIM's
// Prometheus names (event mod_event_pusher_http_sent, metrics count,
// failure_count, response_time); like MongooseIM the response time is in
// microseconds with power-of-two buckets from 1 to 2^30.
//
// Petrel counts a request as failed when it gets no 2xx answer: connection
// errors, timeouts, TLS failures and non-2xx statuses alike (MongooseIM counts
// any HTTP answer, even a 500, as sent).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { RecentQuantiles } from './recent-quantiles.ts';

export const SENT_COUNT = 'mod_event_pusher_http_sent_count';
export const SENT_FAILURE_COUNT = 'mod_event_pusher_http_sent_failure_count';
export const SENT_RESPONSE_TIME = 'mod_event_pusher_http_sent_response_time';
/** Every outcome of every handler, by kind or status ("ok", "http_500", "timeout", "dropped", ...). */
export const RESPONSES_TOTAL = 'petrel_event_pusher_http_responses_total';
/** Response-time quantiles of successful requests over the last minute, in microseconds. */
export const RESPONSE_TIME_RECENT = 'petrel_event_pusher_http_response_time_recent';

export const RECENT_QUANTILES = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999];

function powerOfTwoBuckets(): number[] {
  const out: number[] = [];
  for (let v = 1; v <= 2 ** 30; v *= 2) out.push(v);
  return out;
}

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export interface HostMetrics {
  sent: { inc(): void };
  failed: { inc(): void };
  /** Microseconds. */
  observe(us: number): void;
}

export interface HttpBackendMetrics {
  forHost(hostType: string): HostMetrics;
  outcome(hostType: string, handler: number, outcome: string): void;
}

export function httpBackendMetrics(registry: Registry): HttpBackendMetrics {
  const sent = getOrCreate(registry, SENT_COUNT, () => new Counter({
    name: SENT_COUNT,
    help: 'HTTP notifications sent successfully (answered with a 2xx status)',
    labelNames: ['host_type'],
    registers: [registry],
  }));
  const failed = getOrCreate(registry, SENT_FAILURE_COUNT, () => new Counter({
    name: SENT_FAILURE_COUNT,
    help: 'HTTP notifications that failed: no answer, timeout, TLS failure, non-2xx status, dropped or callback error',
    labelNames: ['host_type'],
    registers: [registry],
  }));
  const time = getOrCreate(registry, SENT_RESPONSE_TIME, () => new Histogram({
    name: SENT_RESPONSE_TIME,
    help: 'Time to send an HTTP notification, in microseconds; successful requests only',
    labelNames: ['host_type'],
    buckets: powerOfTwoBuckets(),
    registers: [registry],
  }));
  const recent = getOrCreate(registry, RESPONSE_TIME_RECENT, () => new RecentQuantiles({
    name: RESPONSE_TIME_RECENT,
    help: 'Response time of successful HTTP notifications over the last 60 s, in microseconds',
    labelName: 'host_type',
    quantiles: RECENT_QUANTILES,
    maxAgeSeconds: 60,
    ageBuckets: 6,
    registers: [registry],
  }));
  const responses = getOrCreate(registry, RESPONSES_TOTAL, () => new Counter({
    name: RESPONSES_TOTAL,
    help: 'Outcomes of HTTP notifications by handler (index in the configuration) and outcome',
    labelNames: ['host_type', 'handler', 'outcome'],
    registers: [registry],
  }));

  const hosts = new Map<string, HostMetrics>();
  // Children are looked up once per label set: labels() hashes its arguments on every call.
  const outcomes = new Map<string, { inc(): void }>();
  return {
    forHost(hostType) {
      let m = hosts.get(hostType);
      if (m === undefined) {
        const labels = { host_type: hostType };
        // Series exist at zero from the start, as MongooseIM declares its metrics.
        sent.inc(labels, 0);
        failed.inc(labels, 0);
        time.zero(labels);
        const t = time.labels(labels);
        const r = recent.labels(hostType);
        m = {
          sent: sent.labels(labels),
          failed: failed.labels(labels),
          observe(us) {
            t.observe(us);
            r.observe(us);
          },
        };
        hosts.set(hostType, m);
      }
      return m;
    },
    outcome(hostType, handler, outcome) {
      const key = hostType + '\0' + handler + '\0' + outcome;
      let c = outcomes.get(key);
      if (c === undefined) outcomes.set(key, (c = responses.labels(hostType, String(handler), outcome)));
      c.inc();
    },
  };
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
/** Every attempt's result: the HTTP status, or timeout / refused / tls / error when there was no answer. */
export const DELIVERY_RESPONSES = 'petrel_event_pusher_delivery_responses_total';

export interface DeliveryMetrics {
  depth(handler: number, n: number): void;
  attempt(hostType: string, handler: number): void;
  retry(hostType: string, handler: number): void;
  deadLettered(hostType: string, handler: number, reason: string): void;
  rejected(hostType: string, handler: number): void;
  response(hostType: string, handler: number, status: string): void;
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
  const attempts = counter(DELIVERY_ATTEMPTS, 'HTTP attempts made from the outbox (first attempts and retries)', ['host_type', 'handler']);
  const retries = counter(DELIVERY_RETRIES, 'Failed attempts scheduled to be tried again', ['host_type', 'handler']);
  const dead = counter(DEAD_LETTERED, 'Events moved to the dead-letter table (reason: attempts, max_age, final)', ['host_type', 'handler', 'reason']);
  const rejected = counter(OUTBOX_REJECTED, 'Events refused because the outbox was full (outbox_max_events)', ['host_type', 'handler']);
  const responses = counter(DELIVERY_RESPONSES, 'Results of delivery attempts: HTTP status, or timeout, refused, tls, error', ['host_type', 'handler', 'status']);
  // The per-attempt counters keep their children: labels() hashes its arguments on every call.
  const attemptChildren = new Map<string, { inc(): void }>();
  const responseChildren = new Map<string, { inc(): void }>();
  const attemptOf = (ht: string, h: number) => {
    const key = ht + '\0' + h;
    let ch = attemptChildren.get(key);
    if (ch === undefined) attemptChildren.set(key, (ch = attempts.labels(ht, String(h))));
    return ch;
  };
  const responseOf = (ht: string, h: number, status: string) => {
    const key = ht + '\0' + h + '\0' + status;
    let ch = responseChildren.get(key);
    if (ch === undefined) responseChildren.set(key, (ch = responses.labels(ht, String(h), status)));
    return ch;
  };
  return {
    depth: (h, n) => depth.labels(String(h)).set(n),
    attempt: (ht, h) => attemptOf(ht, h).inc(),
    retry: (ht, h) => retries.labels(ht, String(h)).inc(),
    deadLettered: (ht, h, reason) => dead.labels(ht, String(h), reason).inc(),
    rejected: (ht, h) => rejected.labels(ht, String(h)).inc(),
    response: (ht, h, status) => responseOf(ht, h, status).inc(),
  };
}
