// [[listen.http]] listeners: node:http, or node:https when the table has a
// `tls` section (TLS 1.2 or later). Each configured handler table becomes a
// route to the service its kind creates (routes.ts says which one answers);
// requests asking for a protocol change go to the route's `upgrade`, when it
// has one. Routes of Petrel's own (the metrics snapshot of `petrel metrics`)
// are given by the wiring as loopback routes: every listener answers them,
// before its configured handlers, and only to clients on the loopback
// interface.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { hostName, isLoopback, makeRoute, matchRoute, orderRoutes, requestPath, type Route } from './routes.ts';
import type { HttpHandlerRegistry, HttpListenerConfig, HttpService, HttpTlsConfig } from './types.ts';
import { DEFAULT_HEADERS_TIMEOUT } from './config.ts';
import { markSlotHeld, type ConnectionRefusalReason, type HttpConnectionLimits } from './connection-slots.ts';

/** A route of Petrel's own, answered on every listener to loopback clients only. */
export interface LoopbackRoute {
  /** Matched exactly, whatever the Host header. */
  path: string;
  /** Default: GET and HEAD. */
  methods?: readonly string[];
  service: HttpService;
}

export interface HttpListenersOptions<Ctx> {
  handlers: HttpHandlerRegistry<Ctx>;
  /** Given to every handler's create(). */
  ctx: Ctx;
  logger?: Logger;
  loopbackRoutes?: readonly LoopbackRoute[];
  /**
   * The limits every connection of every listener counts against from the
   * moment it is accepted (the c2s ones). Absent: those found in `ctx.c2s`
   * (the server's handler context), if any.
   */
  connections?: HttpConnectionLimits;
}

export interface HttpListenerAddressInfo {
  address: string;
  port: number;
  secure: boolean;
}

export interface HttpListeners {
  /** Bound addresses, in the order of the configuration (port 0 shows the chosen port). */
  addresses(): HttpListenerAddressInfo[];
  /** Stops accepting, ends open connections, then closes every handler's service. */
  close(): Promise<void>;
}

/** Certificate verification errors that "selfsigned_peer" forgives. */
const SELF_SIGNED = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN']);

/** node:https options for MongooseIM's [listen.http.tls] options. */
export function httpsOptions(t: HttpTlsConfig): https.ServerOptions {
  const o: https.ServerOptions = {
    cert: readFileSync(t.certfile),
    key: readFileSync(t.keyfile),
    minVersion: 'TLSv1.2',
  };
  if (t.password !== undefined) o.passphrase = t.password;
  if (t.cacertfile !== undefined) o.ca = readFileSync(t.cacertfile);
  if (t.ciphers !== undefined) o.ciphers = t.ciphers;
  if (t.dhfile !== undefined) o.dhparam = readFileSync(t.dhfile);
  if (t.versions !== undefined) {
    o.minVersion = t.versions.includes('tlsv1.2') ? 'TLSv1.2' : 'TLSv1.3';
    o.maxVersion = t.versions.includes('tlsv1.3') ? 'TLSv1.3' : 'TLSv1.2';
  }
  if (t.verify_mode !== 'none') {
    o.requestCert = true;
    // "selfsigned_peer" is checked once the handshake is done (see acceptSelfSigned).
    o.rejectUnauthorized = t.verify_mode === 'peer';
  }
  return o;
}

/** verify_mode "selfsigned_peer": a client certificate is required, and may be its own issuer. */
function acceptSelfSigned(socket: TLSSocket): void {
  const presented = Object.keys(socket.getPeerCertificate()).length > 0;
  const err = socket.authorizationError;
  const code = typeof err === 'string' ? err : (err as (Error & { code?: string }) | null)?.code;
  if (!presented || (!socket.authorized && !SELF_SIGNED.has(code ?? String(err)))) socket.destroy();
}

/** Node's default for the whole request (head and body); a request head is bounded by headers_timeout. */
const REQUEST_TIMEOUT = 300_000;
/** ms an idle keep-alive connection is kept between requests (Node's default, set here so it stays bounded). */
const KEEP_ALIVE_TIMEOUT = 5_000;

/**
 * A connection past the connection limits, on a plain listener: told so in
 * HTTP before any request is read, then closed. (On an HTTPS listener it is
 * only closed: it is counted before its TLS handshake.)
 */
function refuseConnection(socket: Socket, reason: ConnectionRefusalReason): void {
  const text = reason === 'global_limit' ? 'the server has too many connections; try again later\n' : 'too many connections from this address\n';
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  // A peer that never reads does not keep the socket.
  setTimeout(() => socket.destroy(), 2000).unref();
}

function plain(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

interface Built {
  server: http.Server;
  services: HttpService[];
}

async function createServices<Ctx>(
  cfg: HttpListenerConfig,
  where: string,
  o: HttpListenersOptions<Ctx>,
  services: HttpService[],
): Promise<Route[]> {
  const routes: Route[] = [];
  for (const [kind, tables] of Object.entries(cfg.handlers)) {
    const def = o.handlers[kind];
    if (def === undefined) throw new Error(`${where}.handlers.${kind}: unknown handler; Petrel serves ${Object.keys(o.handlers).join(', ')}`);
    for (let j = 0; j < tables.length; j++) {
      const service = await def.create(o.ctx, tables[j]!);
      services.push(service);
      routes.push(makeRoute(tables[j]!, service, { methods: def.methods, subtree: def.subtree, where: `${where}.handlers.${kind}[${j}]` }));
    }
  }
  return orderRoutes(routes);
}

async function listenOne<Ctx>(cfg: HttpListenerConfig, index: number, o: HttpListenersOptions<Ctx>, services: HttpService[]): Promise<http.Server> {
  const where = `listen.http[${index}]`;
  const log = o.logger;
  const routes = await createServices(cfg, where, o, services);
  const loopback = (o.loopbackRoutes ?? []).map((r) => makeRoute({ host: '_', path: r.path }, r.service, { methods: r.methods, where: `loopback ${r.path}` }));

  const serve = (route: Route, req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!route.methods.includes(req.method ?? '')) {
      res.setHeader('allow', route.methods.join(', '));
      return plain(res, 405, 'method not allowed\n');
    }
    try {
      route.service.request(req, res);
    } catch (err) {
      log?.error({ what: 'http_handler_failed', handler: route.where, err: err instanceof Error ? err.stack : String(err) }, 'an HTTP handler threw');
      if (!res.headersSent) plain(res, 500, 'internal error\n');
      else res.destroy();
    }
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const path = requestPath(req.url);
    const own = matchRoute(loopback, '', path);
    if (own !== undefined) {
      if (!isLoopback(req.socket.remoteAddress)) return plain(res, 403, 'only from the loopback interface\n');
      return serve(own, req, res);
    }
    const route = matchRoute(routes, hostName(req.headers.host), path);
    if (route === undefined) return plain(res, 404, 'not found\n');
    serve(route, req, res);
  };

  const upgradeRoute = (req: http.IncomingMessage): Route | undefined => {
    const route = matchRoute(routes, hostName(req.headers.host), requestPath(req.url));
    return route?.service.upgrade === undefined ? undefined : route;
  };
  // Only routes with an upgrade handler take the connection over; for the
  // others the Upgrade header is ignored and the request answered as usual,
  // which RFC 9110 §7.8 allows.
  // headers_timeout bounds the time to send a request head (slowloris): past
  // it Node answers 408 and destroys the connection. Node checks its
  // connections for it every connectionsCheckingInterval, so that is a
  // fraction of the timeout.
  const headersTimeout = cfg.protocol.headers_timeout ?? DEFAULT_HEADERS_TIMEOUT;
  const serverOpts: http.ServerOptions = {
    shouldUpgradeCallback: (req) => upgradeRoute(req) !== undefined,
    headersTimeout,
    requestTimeout: Math.max(REQUEST_TIMEOUT, headersTimeout),
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
  };

  let server: http.Server;
  if (cfg.tls !== undefined) {
    let tlsOpts: https.ServerOptions;
    try {
      tlsOpts = httpsOptions(cfg.tls);
      server = https.createServer({ ...serverOpts, ...tlsOpts }, onRequest);
    } catch (err) {
      throw new Error(`${where}.tls: ${(err as Error).message}`, { cause: err });
    }
    if (cfg.tls.verify_mode === 'selfsigned_peer') server.on('secureConnection', acceptSelfSigned);
    server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      log?.info({ what: 'http_tls_error', listener: where, remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
      socket.destroy();
    });
  } else {
    server = http.createServer(serverOpts, onRequest);
  }
  server.keepAliveTimeout = Math.min(KEEP_ALIVE_TIMEOUT, headersTimeout);
  // On a listener that serves client sessions (a handler that upgrades, as
  // mongoose_websocket_handler does), every connection counts against the
  // c2s connection limits (per address and server-wide) from the moment it
  // is accepted, so that connections still sending their request (or never
  // sending one) cannot be opened without bound from one address. The slot
  // is given back when the socket closes or is destroyed; a connection
  // upgraded to WebSocket keeps it. A listener without such a handler
  // (metrics, say) takes no client's place.
  const limits = routes.some((r) => r.service.upgrade !== undefined) ? o.connections : undefined;
  if (limits !== undefined) {
    let lastRefusalLog = 0;
    server.on('connection', (socket: Socket) => {
      const admitted = limits.admit(socket.remoteAddress);
      if ('refused' in admitted) {
        limits.refused?.(admitted.refused);
        const now = Date.now();
        // At most one line a second, so that a flood of connections is not also a flood of logs.
        if (now - lastRefusalLog >= 1000) {
          lastRefusalLog = now;
          log?.warn({ what: 'http_connection_refused', listener: where, reason: admitted.refused, remote: socket.remoteAddress }, 'HTTP connection refused: too many connections');
        }
        if (cfg.tls !== undefined) return void socket.destroy();
        return refuseConnection(socket, admitted.refused);
      }
      socket.once('close', () => limits.release(admitted.key));
    });
  }
  server.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => {
    const route = upgradeRoute(req);
    if (route === undefined) return void socket.destroy();
    // Its slot was taken when the connection was accepted: the handler keeps it.
    if (limits !== undefined) markSlotHeld(socket);
    try {
      route.service.upgrade!(req, socket, head);
    } catch (err) {
      log?.error({ what: 'http_handler_failed', handler: route.where, err: err instanceof Error ? err.stack : String(err) }, 'an HTTP upgrade handler threw');
      socket.destroy();
    }
  });
  if (cfg.transport.max_connections > 0) server.maxConnections = cfg.transport.max_connections;
  server.on('drop', (d) => log?.debug({ what: 'http_connection_dropped', listener: where, remote: d?.remoteAddress }, 'max_connections reached'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.ip_address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log?.error({ what: 'http_listener_error', listener: where, port: cfg.port, err: String(err) }, 'HTTP listener error'));
  const a = server.address() as AddressInfo;
  log?.info(
    { what: 'http_listener_started', listener: where, address: a.address, port: a.port, tls: cfg.tls !== undefined, handlers: routes.map((r) => r.where) },
    'HTTP listener started',
  );
  return server;
}

async function closeServices(services: readonly HttpService[], log: Logger | undefined): Promise<void> {
  for (const s of services) {
    try {
      await s.close?.();
    } catch (err) {
      log?.error({ what: 'http_handler_close_failed', err: String(err) }, 'an HTTP handler failed to close');
    }
  }
}

/**
 * Stops accepting and ends the HTTP connections, then closes the services:
 * a server's close completes only once the connections handlers took over
 * by an upgrade are gone too, and those are the handlers' to end.
 */
async function closeAll(built: readonly Built[], log: Logger | undefined): Promise<void> {
  const closed = built.map((b) => new Promise<void>((resolve) => b.server.close(() => resolve())));
  for (const b of built) b.server.closeAllConnections();
  for (const b of built) await closeServices(b.services, log);
  await Promise.all(closed);
}

/** Starts every listener of `listeners`, or none: on a failure those already started are closed. */
export async function startHttpListeners<Ctx>(listeners: readonly HttpListenerConfig[], o: HttpListenersOptions<Ctx>): Promise<HttpListeners> {
  const built: Built[] = [];
  // Services created for a listener that then fails to bind are closed too.
  let pending: HttpService[] = [];
  try {
    for (let i = 0; i < listeners.length; i++) {
      pending = [];
      const server = await listenOne(listeners[i]!, i, o, pending);
      built.push({ server, services: pending });
      pending = [];
    }
  } catch (err) {
    await closeAll(built, o.logger);
    await closeServices(pending, o.logger);
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    addresses: () =>
      built.map((b, i) => {
        const a = b.server.address() as AddressInfo;
        return { address: a.address, port: a.port, secure: listeners[i]!.tls !== undefined };
      }),
    close: () => (closing ??= closeAll(built, o.logger)),
  };
}
