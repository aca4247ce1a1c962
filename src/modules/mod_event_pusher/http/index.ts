// The HTTP backend's entry in mod_event_pusher's backend registry (backends.ts).
import type { BackendDefinition } from '../backends.ts';
import { checkHttpBackend, createHttpBackend, handlerKey } from './backend.ts';
import { combineHttp, httpBackendSpec, httpModuleSpec, type HandlerOpts } from './config.ts';
import { httpBackendMetrics } from './metrics.ts';

export const httpBackend: BackendDefinition<HandlerOpts[]> = {
  name: 'http',
  spec: httpBackendSpec,
  moduleSpec: httpModuleSpec,
  combine: combineHttp,
  metrics(registry, hosts) {
    const m = httpBackendMetrics(registry);
    for (const h of hosts) m.forHost(h);
  },
  create: (ctx, opts) =>
    createHttpBackend({ pools: ctx.pools, configDir: ctx.configDir, logger: ctx.logger, metrics: ctx.metrics, hosts: ctx.hosts, outbox: ctx.outbox, maxQueueBytes: ctx.bestEffortMaxBytes }, opts),
  check: checkHttpBackend,
  deliveryRows: (opts) => opts.flatMap((h, index) => ((h.delivery ?? 'at_least_once') === 'at_least_once' ? [{ index, key: handlerKey(h) }] : [])),
};
