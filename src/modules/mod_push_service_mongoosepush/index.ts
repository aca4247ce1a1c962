// mod_push_service_mongoosepush: sends the push notifications of
// mod_event_pusher's push backend for its virtual pubsub hosts to
// MongoosePush (https://github.com/esl/MongoosePush), the HTTP service that
// talks to APNs and FCM. Its options are read by the push backend
// (mod_event_pusher/push/backend.ts), which stores each request in the
// outbox; the request's shape is notification.ts, its sending sender.ts.
import type { ModuleDefinition, ModuleInstance } from '../types.ts';
import { mongoosePushSpec, NAME, type MongoosePushOpts } from './config.ts';

export type { MongoosePushOpts } from './config.ts';

export const definition: ModuleDefinition<MongoosePushOpts> = {
  name: NAME,
  configSpec: mongoosePushSpec,
  create(ctx, opts): ModuleInstance {
    if (ctx.pools.http(opts.pool_name) === undefined) {
      ctx.logger.warn({ what: 'push_service_pool_missing', module: NAME, pool_name: opts.pool_name }, 'no such outgoing HTTP pool');
    }
    return {};
  },
};
