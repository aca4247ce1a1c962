// Metrics of the HTTP backend, registered on the server's prom-client
// registry. The three mod_event_pusher_http_sent_* names are MongooseIM's
// Prometheus names (event mod_event_pusher_http_sent, metrics count,
// failure_count, response_time); like MongooseIM the response time is in
// microseconds with power-of-two buckets from 1 to 2^30.
//
// Petrel counts a request as failed when it gets no 2xx answer: connection
// errors, timeouts, TLS failures and non-2xx statuses alike (MongooseIM counts
// any HTTP answer, even a 500, as sent).
import { Counter, Histogram, type Registry } from 'prom-client';
import { RecentQuantiles } from './recent-quantiles.ts';
import { batchedInc } from '../delivery/metrics.ts';

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
          sent: batchedInc(sent.labels(labels)),
          failed: batchedInc(failed.labels(labels)),
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
      if (c === undefined) outcomes.set(key, (c = batchedInc(responses.labels(hostType, String(handler), outcome))));
      c.inc();
    },
  };
}

// The outbox's metrics are the delivery engine's, the same for every backend.
export { OUTBOX_DEPTH, DELIVERY_ATTEMPTS, DELIVERY_RETRIES, DEAD_LETTERED, OUTBOX_REJECTED, DELIVERY_RESPONSES, deliveryMetrics, type DeliveryMetrics } from '../delivery/metrics.ts';
