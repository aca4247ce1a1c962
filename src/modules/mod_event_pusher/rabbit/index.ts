// The RabbitMQ backend's entry in mod_event_pusher's backend registry (backends.ts).
import type { BackendDefinition } from '../backends.ts';
import { createRabbitBackend, RABBIT_HANDLER_KEY } from './backend.ts';
import { fail } from '../../../config/schema.ts';
import { combineRabbit, RABBIT_POOL_TAG, rabbitSpec, type RabbitOpts } from './config.ts';

export const rabbitBackend: BackendDefinition<RabbitOpts> = {
  name: 'rabbit',
  spec: rabbitSpec,
  moduleSpec: rabbitSpec,
  combine: combineRabbit,
  // Registered when the backend starts: the names depend on the pool's scope.
  metrics() {},
  create: (ctx, opts) => createRabbitBackend({ pools: ctx.pools, logger: ctx.logger, metrics: ctx.metrics, hosts: ctx.hosts, outbox: ctx.outbox }, opts),
  deliveryRows: () => [{ index: 0, key: RABBIT_HANDLER_KEY }],
  // check-config refuses what start would: the backend publishes through the pool tagged event_pusher.
  crossCheck(opts, config) {
    if (!Object.hasOwn(config.outgoing_pools.rabbit, RABBIT_POOL_TAG)) {
      fail(opts.tomlPath, `needs the RabbitMQ pool [outgoing_pools.rabbit.${RABBIT_POOL_TAG}], which is not defined`);
    }
  },
};
