// c2s listeners: plain TCP (optionally upgraded by STARTTLS) or direct TLS.
import { createServer as createTcpServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, createSecureContext, type SecureContext } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { C2SListenerConfig } from '../config/types.ts';
import { C2SSession, type C2SContext } from './session.ts';

export interface C2SListener {
  readonly config: C2SListenerConfig;
  readonly sessions: Set<C2SSession>;
  /** The bound port (useful with port 0). */
  port(): number;
  close(): Promise<void>;
}

/** TLS 1.2 or later only. */
export function secureContextFor(cfg: C2SListenerConfig): SecureContext | null {
  if (cfg.tls === undefined) return null;
  return createSecureContext({
    cert: readFileSync(cfg.tls.certfile),
    key: readFileSync(cfg.tls.keyfile),
    minVersion: 'TLSv1.2',
  });
}

export async function startC2SListener(
  cfg: C2SListenerConfig,
  base: Omit<C2SContext, 'listener' | 'tls' | 'maxRate'>,
  shapers: Readonly<Record<string, { max_rate: number }>>,
  handshakeTimeout = 10_000,
): Promise<C2SListener> {
  const tls = secureContextFor(cfg);
  const maxRate = cfg.shaper === 'none' ? 0 : (shapers[cfg.shaper]?.max_rate ?? 0);
  const ctx: C2SContext = { ...base, listener: cfg, tls, maxRate };
  const sessions = new Set<C2SSession>();
  const accept = (socket: Socket, secure: boolean) => {
    const s = new C2SSession(socket, ctx, secure);
    sessions.add(s);
    socket.once('close', () => sessions.delete(s));
  };
  let server: NetServer;
  if (cfg.tls?.mode === 'tls') {
    server = createTlsServer({ secureContext: tls!, minVersion: 'TLSv1.2', handshakeTimeout }, (s) => accept(s, true));
    server.on('tlsClientError', (err, socket) => {
      base.logger.info({ what: 'c2s_tls_error', remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
      socket.destroy();
    });
  } else {
    server = createTcpServer((s) => accept(s, false));
  }
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
      }),
  };
}
