// The [[listen.c2s]] listeners: TCP servers, plain (optionally upgraded by
// STARTTLS) or direct TLS, each connection a TCP transport
// (transports/tcp.ts) with the byte-stream framing under a session. Other
// transports (WebSocket, under [[listen.http]]) make their sessions from
// the same C2SContext with their own transport and framing.
import { createServer as createTcpServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, createSecureContext, type SecureContextOptions } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { C2SListenerConfig } from '../config/types.ts';
import { C2SSession, framingLimits, type C2SContext, type C2SLimits } from './session.ts';
import { byteStreamFraming } from './byte-stream-framing.ts';
import { StartTlsTransport, TcpTransport, type TcpOptions } from './transports/tcp.ts';

/** What the server gives every c2s listener; each listener adds its transport's part. */
export type C2SBase = Omit<C2SContext, 'framing' | 'framingLimits' | 'tlsRequired' | 'maxRate' | 'released' | 'accessRule' | 'rateFor'>;

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
  };
}

export async function startC2SListener(
  cfg: C2SListenerConfig,
  base: Omit<C2SBase, 'limits'>,
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
    maxRate,
    accessRule: cfg.access,
    rateFor,
    released: (s) => {
      sessions.delete(s);
      base.metrics?.open.dec();
      base.logger.debug({ what: 'c2s_connection_closed', session: s.id, remote: s.remote }, 'connection closed');
    },
  };
  const tcp: TcpOptions = { logger: base.logger, tls, handshakeTimeout };
  const starttls = tls !== null && cfg.tls?.mode !== 'tls';
  const accept = (socket: Socket) => {
    // A STARTTLS listener's connections start plain; a direct TLS one's sockets are TLS sockets already.
    const transport = starttls ? new StartTlsTransport(socket, tcp) : new TcpTransport(socket);
    const session = new C2SSession(transport, ctx);
    sessions.add(session);
    base.metrics?.accepted.inc();
    base.metrics?.open.inc();
    base.logger.debug({ what: 'c2s_connection_accepted', session: session.id, remote: transport.remote }, 'connection accepted');
  };
  let server: NetServer;
  if (cfg.tls?.mode === 'tls') {
    // tls.createServer takes the certificate and key themselves; it has no secureContext option.
    server = createTlsServer({ ...tlsOpts!, handshakeTimeout }, accept);
    server.on('tlsClientError', (err, socket) => {
      base.logger.info({ what: 'c2s_tls_error', remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
      socket.destroy();
    });
  } else {
    server = createTcpServer(accept);
  }
  const sockets = new Set<Socket>();
  // One listener function for every socket ('close' comes once), not a closure each.
  function forget(this: Socket): void {
    sockets.delete(this);
  }
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', forget);
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
