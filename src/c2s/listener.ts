// c2s listeners: plain TCP (optionally upgraded by STARTTLS) or direct TLS.
import { createServer as createTcpServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { C2SListenerConfig } from '../config/types.ts';
import { C2SSession, type C2SContext, type C2SLimits } from './session.ts';

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

export function secureContextFor(cfg: C2SListenerConfig): SecureContext | null {
  const opts = tlsOptionsFor(cfg);
  return opts === null ? null : createSecureContext(opts);
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
  base: Omit<C2SContext, 'listener' | 'tls' | 'maxRate' | 'released' | 'limits'>,
  shapers: Readonly<Record<string, { max_rate: number }>>,
  handshakeTimeoutOverride?: number,
): Promise<C2SListener> {
  const tlsOpts = tlsOptionsFor(cfg);
  const tls = tlsOpts === null ? null : createSecureContext(tlsOpts);
  const maxRate = cfg.shaper === 'none' ? 0 : (shapers[cfg.shaper]?.max_rate ?? 0);
  const limits = listenerLimits(cfg);
  if (handshakeTimeoutOverride !== undefined) limits.handshakeTimeout = handshakeTimeoutOverride;
  const handshakeTimeout = limits.handshakeTimeout;
  const sessions = new Set<C2SSession>();
  const ctx: C2SContext = { ...base, limits, listener: cfg, tls, maxRate, released: (s) => sessions.delete(s) };
  const accept = (socket: Socket, secure: boolean) => {
    sessions.add(new C2SSession(socket, ctx, secure));
  };
  let server: NetServer;
  if (cfg.tls?.mode === 'tls') {
    // tls.createServer takes the certificate and key themselves; it has no secureContext option.
    server = createTlsServer({ ...tlsOpts!, handshakeTimeout }, (s) => accept(s, true));
    server.on('tlsClientError', (err, socket) => {
      base.logger.info({ what: 'c2s_tls_error', remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
      socket.destroy();
    });
  } else {
    server = createTcpServer((s) => accept(s, false));
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
