// The [[listen.c2s]] listeners: TCP servers, plain (optionally upgraded by
// STARTTLS) or direct TLS, each connection a TCP transport
// (transports/tcp.ts) with the byte-stream framing under a session. Other
// transports (WebSocket, under [[listen.http]]) make their sessions from
// the same C2SContext with their own transport and framing.
import { createServer as createTcpServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, createSecureContext, type SecureContextOptions } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { C2SListenerConfig } from '../config/types.ts';
import { C2SSession, framingLimits, inputBudget, type C2SContext, type C2SLimits } from './session.ts';
import { byteStreamFraming } from './byte-stream-framing.ts';
import { refusalError, type ConnectionRefusal } from './connection-limits.ts';
import { StartTlsTransport, TcpTransport, type TcpOptions } from './transports/tcp.ts';
import type { Transport } from './transport.ts';

/** On a socket: the key of its slot in the connection limits, or why it was refused one. */
const SLOT = Symbol('c2s connection slot');
const REFUSED = Symbol('c2s connection refused');
type LimitedSocket = Socket & { [SLOT]?: string; [REFUSED]?: ConnectionRefusal };

/** What the server gives every c2s listener; each listener adds its transport's part. */
export type C2SBase = Omit<C2SContext, 'framing' | 'framingLimits' | 'tlsRequired' | 'loopbackOnlyPlaintextAuth' | 'maxRate' | 'released' | 'accessRule' | 'rateFor'>;

/** What the server shares with every listener of any transport: C2SBase without the listener's own limits. */
export type C2SShared = Omit<C2SBase, 'limits'>;

/**
 * Where every accepted c2s connection becomes a session, whatever its
 * transport (TCP here, WebSocket in transports/websocket.ts), so that what
 * applies to all client connections is decided in one place.
 */
export function acceptC2S(transport: Transport, ctx: C2SContext, sessions: Set<C2SSession>, refused?: ConnectionRefusal): void {
  if (refused !== undefined) {
    // Told why, over the stream in its own framing, then closed; it never counted as open.
    new C2SSession(transport, ctx, refusalError(refused));
    return;
  }
  const session = new C2SSession(transport, ctx);
  sessions.add(session);
  ctx.metrics?.accepted.inc();
  ctx.metrics?.open.inc();
  ctx.logger.debug({ what: 'c2s_connection_accepted', session: session.id, remote: transport.remote }, 'connection accepted');
}

/** A session accepted by acceptC2S is over: every transport's listener calls this from its `released`. */
export function releaseC2S(ctx: Pick<C2SContext, 'metrics' | 'logger'>, sessions: Set<C2SSession>, s: C2SSession): void {
  if (!sessions.delete(s)) return;
  ctx.metrics?.open.dec();
  ctx.logger.debug({ what: 'c2s_connection_closed', session: s.id, remote: s.remote }, 'connection closed');
}

export interface C2SListener {
  readonly config: C2SListenerConfig;
  readonly sessions: Set<C2SSession>;
  /** The bound port (useful with port 0). */
  port(): number;
  close(): Promise<void>;
}

/** Certificate, key and versions of a listener's TLS: TLS 1.2 or later only. */
export function tlsOptionsFor(cfg: C2SListenerConfig): SecureContextOptions | null {
  if (cfg.tls === undefined) return null;
  return {
    cert: readFileSync(cfg.tls.certfile),
    key: readFileSync(cfg.tls.keyfile),
    minVersion: 'TLSv1.2',
  };
}


/** A listener's limits, from its options (the config schema holds their defaults). */
export function listenerLimits(cfg: C2SListenerConfig): C2SLimits {
  return {
    preAuthStanzaSize: cfg.max_stanza_size_before_auth,
    preAuthElements: cfg.max_elements_before_auth,
    maxDepth: cfg.max_element_depth,
    maxAuthFailures: cfg.max_auth_failures,
    stateTimeout: cfg.state_timeout,
    // Without a tls table there is no handshake to time.
    handshakeTimeout: cfg.tls === undefined ? 0 : cfg.tls.handshake_timeout,
    maxOutputBuffer: cfg.max_output_buffer,
    sendTimeout: cfg.send_timeout,
    negotiationTimeout: cfg.negotiation_timeout,
    ...inputBudget(cfg),
  };
}

export async function startC2SListener(
  cfg: C2SListenerConfig,
  base: C2SShared,
  shapers: Readonly<Record<string, { max_rate: number }>>,
  handshakeTimeoutOverride?: number,
): Promise<C2SListener> {
  const tlsOpts = tlsOptionsFor(cfg);
  const tls = tlsOpts === null ? null : createSecureContext(tlsOpts);
  const rateOf = (name: string): number => (name === 'none' ? 0 : (shapers[name]?.max_rate ?? 0));
  let maxRate = rateOf(cfg.shaper);
  let rateFor: C2SContext['rateFor'];
  const access = base.access;
  if (cfg.shaper !== 'none' && !Object.hasOwn(shapers, cfg.shaper) && access?.has(cfg.shaper)) {
    // The shaper is an access rule (MongooseIM's c2s_shaper): before
    // authentication what it gives anyone (clauses for "all"), then the user's.
    const rule = cfg.shaper;
    const rateOfValue = (v: string | number): number => (typeof v === 'string' ? rateOf(v) : 0);
    maxRate = rateOfValue(access.clauses(rule).find((c) => c.acl === 'all')?.value ?? 'none');
    rateFor = (s) => rateOfValue(access.match(rule, s));
  }
  const limits = listenerLimits(cfg);
  if (handshakeTimeoutOverride !== undefined) limits.handshakeTimeout = handshakeTimeoutOverride;
  const handshakeTimeout = limits.handshakeTimeout;
  const sessions = new Set<C2SSession>();
  const ctx: C2SContext = {
    ...base,
    limits,
    framing: byteStreamFraming,
    framingLimits: framingLimits(cfg.max_stanza_size, limits),
    tlsRequired: cfg.tls?.mode === 'starttls_required',
    loopbackOnlyPlaintextAuth: !cfg.allow_plaintext_auth,
    maxRate,
    accessRule: cfg.access,
    rateFor,
    released: (s) => releaseC2S(base, sessions, s),
  };
  const tcp: TcpOptions = { logger: base.logger, tls, handshakeTimeout };
  const starttls = tls !== null && cfg.tls?.mode !== 'tls';
  const direct = cfg.tls?.mode === 'tls';
  const accept = (socket: Socket) => {
    // A STARTTLS listener's connections start plain; a direct TLS one's sockets are TLS sockets already.
    const transport = starttls ? new StartTlsTransport(socket, tcp) : new TcpTransport(socket);
    const refused = (socket as LimitedSocket)[REFUSED];
    acceptC2S(transport, ctx, sessions, refused);
  };
  let server: NetServer;
  if (direct) {
    // tls.createServer takes the certificate and key themselves; it has no secureContext option.
    server = createTlsServer({ ...tlsOpts!, handshakeTimeout }, accept);
    server.on('tlsClientError', (err, socket) => {
      base.logger.info({ what: 'c2s_tls_error', remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
      socket.destroy();
    });
  } else {
    server = createTcpServer();
  }
  const sockets = new Set<Socket>();
  const slots = base.connections;
  // One listener function for every socket ('close' comes once), not a closure each.
  function forget(this: Socket): void {
    sockets.delete(this);
    const key = (this as LimitedSocket)[SLOT];
    if (key !== undefined) slots?.release(key);
  }
  let lastRefusalLog = 0;
  // Every accepted socket, before any TLS handshake: the connection limits count from here.
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', forget);
    const admitted = slots?.admit(socket.remoteAddress);
    if (admitted !== undefined && 'refused' in admitted) {
      base.metrics?.connectionRefused(admitted.refused);
      const now = Date.now();
      // At most one line a second, so that a flood of connections is not also a flood of logs.
      if (now - lastRefusalLog >= 1000) {
        lastRefusalLog = now;
        base.logger.warn({ what: 'c2s_connection_refused', reason: admitted.refused, remote: socket.remoteAddress, open: slots!.open }, 'connection refused: too many connections');
      }
      // Before a TLS handshake there is no stream to carry an error.
      if (direct) {
        socket.destroy();
        return;
      }
      (socket as LimitedSocket)[REFUSED] = admitted.refused;
    } else if (admitted !== undefined) {
      (socket as LimitedSocket)[SLOT] = admitted.key;
    }
    if (!direct) accept(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.ip_address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => base.logger.error({ what: 'c2s_listener_error', err: err.message }, 'listener error'));
  return {
    config: cfg,
    sessions,
    port: () => {
      const a = server.address();
      return typeof a === 'object' && a !== null ? a.port : cfg.port;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.close();
        // Peers get a moment to answer the stream end; then whatever is left
        // (a stalled handshake, a peer that never closes) is cut.
        setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, 3000).unref();
      }),
  };
}
