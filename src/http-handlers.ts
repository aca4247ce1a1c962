// Every HTTP handler kind Petrel serves, by the name a
// [[listen.http.handlers.<name>]] table uses (MongooseIM's). The handlers
// live in the layers they belong to; this list is wiring, read both by the
// config loader (each kind's spec) and by the server (each kind's create).
// A new kind is its definition's file and one line here.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { httpHandlerRegistry } from './http/registry.ts';
import { prometheusHandler } from './metrics/prometheus.ts';
import { legacyWebsocketHandler, websocketHandler } from './c2s/websocket-handler.ts';
import type { C2SShared } from './c2s/listener.ts';

/** What the server gives every HTTP handler's create(). */
export interface HttpHandlersContext {
  logger: Logger;
  metrics: Registry;
  /** What every c2s session shares, for the WebSocket handler's sessions. */
  c2s: C2SShared;
}

export const HTTP_HANDLERS = httpHandlerRegistry<HttpHandlersContext>({
  mongoose_prometheus_handler: prometheusHandler,
  mongoose_websocket_handler: websocketHandler,
  // MongooseIM's name before 6.6; loading it warns.
  mod_websockets: legacyWebsocketHandler,
});
