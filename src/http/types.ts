// The shapes of the HTTP layer: a [[listen.http]] table once validated, and
// what a handler kind (mongoose_prometheus_handler, mongoose_websocket_handler,
// mongoose_admin_api, ...) provides to be served by a listener.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { SectionSpec } from '../config/schema.ts';
import type { HttpListenerAddress } from '../config/types.ts';

/** The options every handler table has (MongooseIM's common handler options). */
export interface HttpHandlerOptions {
  /** A host name, or "_" for any Host header. As written in the file. */
  host: string;
  /** Starts with "/"; a trailing "/[...]" (Cowboy's syntax) also serves everything below it. */
  path: string;
}

/** Answers one request routed to the handler. */
export type HttpRequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Takes over the connection of a request asking for a protocol change
 * (RFC 9110 §7.8), as node:http's `upgrade` event hands it: `head` holds the
 * bytes already read after the request's header.
 */
export type HttpUpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** What one configured handler table serves. */
export interface HttpService {
  request: HttpRequestHandler;
  /** Present for handlers that speak another protocol after an Upgrade (WebSocket, RFC 6455 §4). */
  upgrade?: HttpUpgradeHandler;
  /** Called once the listener stops accepting: ends what the handler owns (upgraded connections, timers). */
  close?(): Promise<void> | void;
}

/**
 * A handler kind, registered under its MongooseIM name. `Ctx` is what the
 * wiring gives every handler (registries, the router...), so this layer
 * needs to know none of it.
 */
export interface HttpHandlerDefinition<Ctx = unknown, Opts extends HttpHandlerOptions = HttpHandlerOptions> {
  /**
   * The options of one [[listen.http.handlers.<name>]] table besides `host`
   * and `path`, which the listener's spec adds to it.
   */
  readonly configSpec: SectionSpec;
  /** Methods it answers; others get 405 with an Allow header. Default: GET and HEAD. */
  readonly methods?: readonly string[];
  /** True when it serves the paths below its `path` too (an API under "/api"). */
  readonly subtree?: boolean;
  create(ctx: Ctx, opts: Opts): HttpService | Promise<HttpService>;
}

/** The handler kinds a listener can serve, by name (built by httpHandlerRegistry). */
export type HttpHandlerRegistry<Ctx = unknown> = Readonly<Record<string, HttpHandlerDefinition<Ctx, any>>>;

export type HttpTlsVerifyMode = 'none' | 'peer' | 'selfsigned_peer';

/** [listen.http.tls]: MongooseIM's options of HTTPS listeners. */
export interface HttpTlsConfig {
  /** Absolute paths (resolved against the config file's directory). */
  certfile: string;
  keyfile: string;
  /** Passphrase of an encrypted keyfile. */
  password?: string;
  /** CAs that client certificates must chain to (verify_mode "peer"). */
  cacertfile?: string;
  /** Client certificates: not asked ("none", Petrel's default), required and verified ("peer"), required and possibly self-signed ("selfsigned_peer"). */
  verify_mode: HttpTlsVerifyMode;
  /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults). */
  ciphers?: string;
  /** Subset of "tlsv1.2", "tlsv1.3"; absent: both. */
  versions?: Array<'tlsv1.2' | 'tlsv1.3'>;
  /** Diffie-Hellman parameters (PEM) for DHE suites. */
  dhfile?: string;
}

/** One validated [[listen.http]] table. */
export interface HttpListenerConfig extends HttpListenerAddress {
  /** Only "tcp" (MongooseIM's general listener option). */
  proto: 'tcp';
  /** Present when set: 4 or 6, agreeing with ip_address. */
  ip_version?: 4 | 6;
  /** HTTPS when present. */
  tls?: HttpTlsConfig;
  transport: {
    /** Accepted for compatibility; Node accepts connections on its event loop, this has no effect. */
    num_acceptors: number;
    /** Open connections past which new ones are closed on arrival (0 = no limit). */
    max_connections: number;
  };
  protocol: {
    /** Accepted for compatibility; Petrel does not compress responses. */
    compress: boolean;
    /** ms a connection has to send a complete request head (request line and headers); past it the connection is closed (408). Absent (not set in the file): DEFAULT_HEADERS_TIMEOUT (10000). */
    headers_timeout?: number;
  };
  /** The handler tables by kind, each list in file order; only kinds present in the file appear. */
  handlers: Readonly<Record<string, readonly HttpHandlerOptions[]>>;
}
