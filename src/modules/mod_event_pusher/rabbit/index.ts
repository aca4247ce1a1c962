// The RabbitMQ backend's entry in mod_event_pusher's backend registry (backends.ts).
import type { BackendDefinition } from '../backends.ts';
import { createRabbitBackend, RABBIT_HANDLER_KEY } from './backend.ts';
import { combineRabbit, rabbitSpec, type RabbitOpts } from './config.ts';

export const rabbitBackend: BackendDefinition<RabbitOpts> = {
  name: 'rabbit',
  spec: rabbitSpec,
  moduleSpec: rabbitSpec,
  combine: combineRabbit,
  // Registered when the backend starts: the names depend on the pool's scope.
  metrics() {},
  create: (ctx, opts) => createRabbitBackend({ pools: ctx.pools, logger: ctx.logger, metrics: ctx.metrics, hosts: ctx.hosts, outbox: ctx.outbox }, opts),
  deliveryRows: () => [{ index: 0, key: RABBIT_HANDLER_KEY }],
};
