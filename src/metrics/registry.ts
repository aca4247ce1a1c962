// The server's Prometheus registry. Node's own process metrics (CPU, memory,
// event loop lag, GC) are included under a "petrel_" prefix so they cannot be
// mistaken for MongooseIM's metric names.
import { collectDefaultMetrics, Registry } from 'prom-client';

export function createMetricsRegistry(o: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (o.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'petrel_' });
  return registry;
}
