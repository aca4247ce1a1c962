// The control socket: a Unix socket in the data directory through which
// commands run in another process (`petrel register`, `petrel unregister`)
// tell a running server what they changed, so that the user_registered and
// user_removed hooks run in the server and a removed account's sessions end.
// Local only: a socket in the data directory, which is 0700, so that the
// socket is out of other users' reach from the moment it exists (its own
// mode, set just after, is then a second fence, not the only one).
import { chmodSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ensurePrivateDir } from './storage/data-dir.ts';

export const CONTROL_SOCKET = 'petrel.sock';

export interface ControlEvent {
  op: 'user_registered' | 'user_removed';
  user: string;
  server: string;
}

/** A Unix socket path must fit in sockaddr_un (108 bytes on Linux, with its NUL). */
const MAX_SOCKET_PATH = 107;

export function controlSocketPath(dataDir: string): string {
  return join(dataDir, CONTROL_SOCKET);
}

function parseEvent(line: string): ControlEvent {
  const v = JSON.parse(line) as Partial<ControlEvent>;
  if ((v.op !== 'user_registered' && v.op !== 'user_removed') || typeof v.user !== 'string' || typeof v.server !== 'string') {
    throw new Error('expected {"op": "user_registered" | "user_removed", "user": string, "server": string}');
  }
  return { op: v.op, user: v.user, server: v.server };
}

/** Listens on `<dataDir>/petrel.sock`; returns its closer. `handle` throws to refuse an event. */
export async function startControl(dataDir: string, handle: (e: ControlEvent) => void, logger: Logger): Promise<() => Promise<void>> {
  const path = controlSocketPath(dataDir);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    logger.warn({ what: 'control_socket_unavailable', path }, 'the data directory path is too long for a Unix socket; register/unregister will not reach the running server');
    return async () => {};
  }
  const dir = ensurePrivateDir(dataDir);
  if (dir === 'tightened') logger.warn({ what: 'data_dir_permissions_tightened', path: dataDir }, 'the data directory was open to other users; it is now 0700');
  if (dir === 'shared') {
    // Listening there would leave the socket open to others until its chmod.
    logger.warn({ what: 'control_socket_unavailable', path }, 'the data directory is open to other users and not ours to change; register/unregister will not reach the running server');
    return async () => {};
  }
  // A socket file left by a server that did not stop cleanly.
  try {
    unlinkSync(path);
  } catch {}
  const server = createServer((socket: Socket) => {
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('error', () => {});
    socket.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 4096) {
        socket.destroy();
        return;
      }
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let reply: { ok: boolean; error?: string };
        try {
          handle(parseEvent(line));
          reply = { ok: true };
        } catch (err) {
          reply = { ok: false, error: (err as Error).message };
        }
        socket.write(JSON.stringify(reply) + '\n');
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      try {
        unlinkSync(path);
      } catch {}
    });
}

/**
 * Tells the server running on `dataDir`, if there is one, about `e`.
 * Resolves to false when no server listens; rejects when it refused the event.
 */
export function notifyServer(dataDir: string, e: ControlEvent, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect(controlSocketPath(dataDir));
    let buf = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(JSON.stringify(e) + '\n'));
    socket.on('data', (chunk: string) => {
      buf += chunk;
      const i = buf.indexOf('\n');
      if (i < 0) return;
      clearTimeout(timer);
      socket.end();
      const reply = JSON.parse(buf.slice(0, i)) as { ok: boolean; error?: string };
      if (reply.ok) resolve(true);
      else reject(new Error(`the running server refused the change: ${reply.error}`));
    });
    socket.on('error', () => {
      // No server (ENOENT, ECONNREFUSED): the change is in the store and the next start sees it.
      clearTimeout(timer);
      resolve(false);
    });
  });
}
