// The push backend's entry in mod_event_pusher's backend registry (backends.ts).
import type { HookCatalogue } from '../../../hooks/catalogue.ts';
import type { HookRegistration } from '../../../hooks/hooks.ts';
import type { BackendDefinition } from '../backends.ts';
import { checkPush, createPushBackend, pushHandlerKey, type PushData } from './backend.ts';
import { combinePush, pushSpec, type PushOpts } from './config.ts';
import { pushMetrics } from './metrics.ts';
import { PUSH_STORE } from './store.ts';
import type { MongoosePushOpts } from '../../mod_push_service_mongoosepush/config.ts';

/** MongooseIM's remove_user handler runs at 90. */
const PRIO_REMOVE_USER = 90;

export const pushBackend: BackendDefinition<PushOpts> = {
  name: 'push',
  spec: pushSpec,
  moduleSpec: pushSpec,
  combine: combinePush,
  metrics(registry, hosts) {
    pushMetrics(registry, hosts);
  },
  crossCheck: checkPush,
  async openData(stores, opts) {
    const store = await stores.open(PUSH_STORE, opts.backend, `${opts.tomlPath}.backend`);
    const onRemoved = (p: HookCatalogue['user_removed']) => {
      p.removals.push(store.removeUser(p.user, p.server));
    };
    const hooks = [
      { hook: 'user_removed', host: '*', priority: PRIO_REMOVE_USER, handler: onRemoved, owner: 'mod_event_pusher' },
    ] satisfies [HookRegistration<'user_removed'>];
    const value: PushData = { store };
    return { backend: opts.backend, value, hooks: () => hooks };
  },
  create: async (ctx, opts) => createPushBackend(ctx, opts),
  deliveryRows: (_opts, config) => {
    const mp = config?.modules.mod_push_service_mongoosepush as MongoosePushOpts | undefined;
    return mp === undefined ? [] : [{ index: 0, key: pushHandlerKey(mp) }];
  },
};
