// [[listen.http.handlers.mongoose_websocket_handler]]: XMPP over WebSocket
// (RFC 7395) on a [[listen.http]] listener, with MongooseIM's options
// (doc/listeners/listen-http.md, src/websocket/mongoose_websocket_handler.erl:
// timeout, ping_rate, max_stanza_size, state_timeout,
// backwards_compatible_session) and the session limits every c2s listener
// has. `mod_websockets`, the handler's name before MongooseIM 6.6, is
// accepted with a warning. The connections are sessions like any other;
// transports/websocket.ts carries them.
import type { Logger } from 'pino';
import { bool, compat, custom, describe, fail, int, list, section, str, validate, type SectionSpec, type ValidateCtx } from '../config/schema.ts';
import { c2sSessionLimitItems, intOrInfinity } from '../config/core-spec.ts';
import type { HttpHandlerDefinition, HttpHandlerOptions, HttpService } from '../http/types.ts';
import { framingLimits, inputBudget, type C2SContext, type C2SLimits } from './session.ts';
import type { C2SShared } from './listener.ts';
import { webSocketFraming } from './websocket-framing.ts';
import { webSocketEndpoint } from './transports/websocket.ts';

/** What the wiring gives the handler. */
export interface WebSocketHandlerContext {
  logger: Logger;
  /** What every c2s session shares (router, hooks, accounts, ...). */
  c2s: C2SShared;
}

/** One validated handler table; 0 stands for "infinity" where MongooseIM allows it. */
export interface WebSocketHandlerOptions extends HttpHandlerOptions {
  /** ms without input before the connection is closed (0 = never). */
  timeout: number;
  /** ms between server pings; absent: no pings. */
  ping_rate?: number;
  /** Bytes of one stanza once authenticated (0 = no limit). */
  max_stanza_size: number;
  /** ms the server waits at each step until a resource is bound (0 = no limit). */
  state_timeout: number;
  backwards_compatible_session: boolean;
  /** Origin header values allowed to connect; absent: any. */
  allowed_origins?: string[];
  /** Bytes of one WebSocket message, refused by the WebSocket layer before it is read. */
  max_frame_size: number;
  max_stanza_size_before_auth: number;
  max_elements_before_auth: number;
  max_element_depth: number;
  max_auth_failures: number;
  max_output_buffer: number;
  send_timeout: number;
  negotiation_timeout: number;
  routing_backlog: number;
  heavy_sender_factor: number;
  heavy_sender_min_rate: number;
  allow_plaintext_auth: boolean;
}

/** MongooseIM's defaults (mongoose_websocket_handler:config_spec/0). */
export const DEFAULT_WS_TIMEOUT = 60_000;
export const DEFAULT_WS_STATE_TIMEOUT = 5_000;
/** Petrel's: the size of the largest message read at all (the TCP listener's default max_stanza_size). */
export const DEFAULT_MAX_FRAME_SIZE = 262_144;

/** MongooseIM's int_or_infinity with validate = positive: "infinity" (no limit) is stored as 0. */
const positiveOrInfinity = custom(
  (value, p, ctx) => {
    if (value === 'infinity') return 0;
    if (typeof value === 'string') fail(p, `expected a positive integer or "infinity", got ${describe(value)}`);
    return validate(int({ min: 1 }), value, p, ctx);
  },
  { default: 0 },
);

/** An origin as browsers send it: scheme://host[:port], or "null". */
function checkOrigin(v: string): string | undefined {
  if (v === 'null') return undefined;
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]+$/i.test(v)) return `must be an origin such as "https://chat.example.com" (scheme, host, optional port; no path), got ${JSON.stringify(v)}`;
  return undefined;
}

function checkFrameSize(o: WebSocketHandlerOptions, p: string): void {
  if (o.max_stanza_size > o.max_frame_size) {
    fail(`${p}.max_frame_size`, `is ${o.max_frame_size}, smaller than max_stanza_size ${o.max_stanza_size}: a stanza that large could never arrive; raise max_frame_size too`);
  }
  if (o.max_stanza_size_before_auth > o.max_frame_size) {
    fail(`${p}.max_frame_size`, `is ${o.max_frame_size}, smaller than max_stanza_size_before_auth ${o.max_stanza_size_before_auth}`);
  }
}

function spec(process: (o: WebSocketHandlerOptions, p: string, ctx: ValidateCtx) => WebSocketHandlerOptions): SectionSpec {
  return section(
    {
      timeout: intOrInfinity(1, DEFAULT_WS_TIMEOUT),
      ping_rate: int({ min: 1 }),
      max_stanza_size: positiveOrInfinity,
      state_timeout: intOrInfinity(1, DEFAULT_WS_STATE_TIMEOUT),
      backwards_compatible_session: compat(bool({ default: true }), 'Petrel always announces session establishment as optional (<session><optional/></session>), which old and new clients both accept'),
      allowed_origins: list(str({ check: checkOrigin }), { nonEmpty: true, unique: true }),
      max_frame_size: int({ min: 256, default: DEFAULT_MAX_FRAME_SIZE }),
      ...c2sSessionLimitItems,
    },
    { process },
  );
}

const handlerSpec = spec((o, p) => {
  checkFrameSize(o, p);
  return o;
});

const legacySpec = spec((o, p, ctx) => {
  checkFrameSize(o, p);
  ctx.warnings.push(`${p}: mod_websockets is the name MongooseIM used before 6.6; rename the table to [[listen.http.handlers.mongoose_websocket_handler]]`);
  return o;
});

/** The context of this handler's sessions, from its options. */
export function webSocketContext(shared: C2SShared, o: WebSocketHandlerOptions): C2SContext {
  const limits: C2SLimits = {
    preAuthStanzaSize: o.max_stanza_size_before_auth,
    preAuthElements: o.max_elements_before_auth,
    maxDepth: o.max_element_depth,
    maxAuthFailures: o.max_auth_failures,
    stateTimeout: o.state_timeout,
    // TLS (wss) is the HTTP listener's, done before the upgrade.
    handshakeTimeout: 0,
    maxOutputBuffer: o.max_output_buffer,
    sendTimeout: o.send_timeout,
    negotiationTimeout: o.negotiation_timeout,
    // A message is one element, handled whole, however large (max_frame_size bounds it).
    ...inputBudget({ ...o, input_slice: o.max_frame_size }),
  };
  return {
    ...shared,
    limits,
    framing: webSocketFraming,
    framingLimits: framingLimits(o.max_stanza_size, limits),
    // RFC 7395 §3.8: no STARTTLS; TLS is the listener's (wss).
    tlsRequired: false,
    // A client on another machine over ws:// gets no SASL unless allow_plaintext_auth says so; wss is TLS.
    loopbackOnlyPlaintextAuth: !o.allow_plaintext_auth,
    // MongooseIM runs WebSocket sessions without a shaper.
    maxRate: 0,
  };
}

function create(ctx: WebSocketHandlerContext, o: WebSocketHandlerOptions): HttpService {
  const endpoint = webSocketEndpoint({
    logger: ctx.logger,
    ctx: webSocketContext(ctx.c2s, o),
    timeout: o.timeout,
    pingRate: o.ping_rate ?? 0,
    maxFrameSize: o.max_frame_size,
    allowedOrigins: o.allowed_origins === undefined ? null : new Set(o.allowed_origins),
    where: `${o.host}${o.path}`,
  });
  return {
    request(_req, res) {
      // A plain request (no Upgrade) to the endpoint.
      const body = 'this is an XMPP over WebSocket endpoint (RFC 7395): connect with a WebSocket and the "xmpp" subprotocol\n';
      res.writeHead(426, { upgrade: 'websocket', connection: 'Upgrade', 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    },
    upgrade: (req, socket, head) => endpoint.upgrade(req, socket, head),
    close: () => endpoint.close(),
  };
}

export const websocketHandler: HttpHandlerDefinition<WebSocketHandlerContext, WebSocketHandlerOptions> = {
  configSpec: handlerSpec,
  create,
};

/** mod_websockets: the same handler under its pre-6.6 name, with a warning when loaded. */
export const legacyWebsocketHandler: HttpHandlerDefinition<WebSocketHandlerContext, WebSocketHandlerOptions> = {
  configSpec: legacySpec,
  create,
};
