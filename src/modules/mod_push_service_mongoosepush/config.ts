// Options of mod_push_service_mongoosepush (MongooseIM's
// mod_push_service_mongoosepush:config_spec/0), plus Petrel's `retry`, the
// policy of the outbox that carries its requests.
import { int, section, str, type Spec } from '../../config/schema.ts';
import { retrySpec, type RetryPolicy } from '../mod_event_pusher/delivery/retry.ts';

export const NAME = 'mod_push_service_mongoosepush';
export const DEFAULT_API_VERSION = 'v3';
export const DEFAULT_MAX_HTTP_CONNECTIONS = 100;

export interface MongoosePushOpts {
  /** The [outgoing_pools.http.<pool_name>] pool pointing at MongoosePush. */
  readonly pool_name: string;
  readonly api_version: 'v2' | 'v3';
  /** Requests in flight at once (0: the pool's `workers`). */
  readonly max_http_connections: number;
  readonly retry: RetryPolicy;
}

export const mongoosePushSpec: Spec = section(
  {
    pool_name: str({ nonEmpty: true }),
    api_version: str({ oneOf: ['v2', 'v3'], default: DEFAULT_API_VERSION }),
    max_http_connections: int({ min: 0, default: DEFAULT_MAX_HTTP_CONNECTIONS }),
    retry: retrySpec(),
  },
  { required: ['pool_name'] },
);
