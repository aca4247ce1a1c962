// Metrics of the RabbitMQ backend, in MongooseIM's Prometheus names
// (mongoose_rabbit_worker:instrumentation/2): wpool_rabbit_connections_* and
// wpool_rabbit_messages_published_*, labelled with host_type and pool_tag, or,
// for a pool of scope "global" (the default), wpool_global_rabbit_* labelled
// with pool_tag only. Publish times are in microseconds, sizes in bytes (of
// the body: Petrel does not count the AMQP properties), power-of-two buckets.
// The connection serves every host type, so with scope "host_type" each host
// type's connection series show the same connection.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

function powerOfTwoBuckets(max: number): number[] {
  const out: number[] = [];
  for (let v = 1; v <= max; v *= 2) out.push(v);
  return out;
}

export interface RabbitMetrics {
  connection(kind: 'opened' | 'closed' | 'failed'): void;
  published(hostType: string, outcome: 'ok' | 'failed' | 'timeout', timeUs: number, size: number): void;
}

/** The metric names for a pool of `scope`. */
export function rabbitMetricNames(scope: string): { connections: string; published: string } {
  const base = scope === 'global' ? 'wpool_global_rabbit' : 'wpool_rabbit';
  return { connections: `${base}_connections`, published: `${base}_messages_published` };
}

export function rabbitMetrics(registry: Registry, scope: string, poolTag: string, hosts: readonly string[]): RabbitMetrics {
  const n = rabbitMetricNames(scope);
  const global = scope === 'global';
  const labelNames = global ? ['pool_tag'] : ['host_type', 'pool_tag'];
  const counter = (name: string, help: string) => getOrCreate(registry, name, () => new Counter({ name, help, labelNames, registers: [registry] }));
  const active = getOrCreate(registry, `${n.connections}_active`, () => new Gauge({
    name: `${n.connections}_active`, help: 'Open connections to the RabbitMQ server', labelNames, registers: [registry],
  }));
  const opened = counter(`${n.connections}_opened`, 'Connections to the RabbitMQ server opened');
  const closed = counter(`${n.connections}_closed`, 'Connections to the RabbitMQ server closed');
  const failed = counter(`${n.connections}_failed`, 'Attempts to open a connection to the RabbitMQ server that failed');
  const count = counter(`${n.published}_count`, 'Messages published to the RabbitMQ server (confirmed by it when confirms_enabled is true)');
  const pubFailed = counter(`${n.published}_failed`, 'Messages the RabbitMQ server refused (negative acknowledgement) or that hit a channel error');
  const timeout = counter(`${n.published}_timeout`, 'Messages the RabbitMQ server did not confirm within call_timeout');
  const time = getOrCreate(registry, `${n.published}_time`, () => new Histogram({
    name: `${n.published}_time`, help: 'Time to publish a message and have it confirmed, in microseconds; successful publishes only',
    labelNames, buckets: powerOfTwoBuckets(2 ** 30), registers: [registry],
  }));
  const size = getOrCreate(registry, `${n.published}_size`, () => new Histogram({
    name: `${n.published}_size`, help: 'Size of a published message body, in bytes; successful publishes only',
    labelNames, buckets: powerOfTwoBuckets(2 ** 26), registers: [registry],
  }));
  const connLabels: string[][] = global ? [[poolTag]] : hosts.map((h) => [h, poolTag]);
  const pubLabels = (hostType: string) => (global ? [poolTag] : [hostType, poolTag]);
  // Every series exists at zero from the start.
  for (const l of connLabels) {
    active.labels(...l).set(0);
    for (const c of [opened, closed, failed]) c.labels(...l).inc(0);
  }
  for (const h of global ? [''] : hosts) {
    const l = pubLabels(h);
    for (const c of [count, pubFailed, timeout]) c.labels(...l).inc(0);
    time.labels(...l);
    size.labels(...l);
  }
  return {
    connection(kind) {
      for (const l of connLabels) {
        if (kind === 'opened') {
          opened.labels(...l).inc();
          active.labels(...l).inc();
        } else if (kind === 'closed') {
          closed.labels(...l).inc();
          active.labels(...l).dec();
        } else failed.labels(...l).inc();
      }
    },
    published(hostType, outcome, timeUs, bytes) {
      const l = pubLabels(hostType);
      if (outcome === 'ok') {
        count.labels(...l).inc();
        time.labels(...l).observe(timeUs);
        size.labels(...l).observe(bytes);
      } else if (outcome === 'timeout') timeout.labels(...l).inc();
      else pubFailed.labels(...l).inc();
    },
  };
}
