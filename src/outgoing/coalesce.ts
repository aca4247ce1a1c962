// Requests started in one go leave in one write per connection. undici writes
// each request itself (headers and body corked together), so N requests on
// one connection cost N writes, each a trip through the loopback or network
// stack that costs far more than building the request. While held, the
// pool's sockets are corked; the first request of a burst holds them, and
// they are released in the check phase of the same event-loop iteration
// (setImmediate): after the I/O callbacks of that iteration, so the requests
// that the answers read together set off leave together, and nothing waits
// for a later iteration (or a timer). Only pipelining puts more than one
// request on a socket in a burst, so the pool uses this only with
// pipelining > 1.
import type { Socket } from 'node:net';

export interface WriteCoalescer {
  /** A socket of the pool (forgotten when it closes). */
  track(socket: Socket): void;
  /** Corks every tracked socket until the check phase of this event-loop iteration. */
  hold(): void;
  /** Sockets tracked. */
  readonly size: number;
}

export function createWriteCoalescer(): WriteCoalescer {
  const sockets = new Set<Socket>();
  let held: Socket[] | null = null;
  const release = () => {
    const s = held!;
    held = null;
    for (let i = 0; i < s.length; i++) s[i]!.uncork();
  };
  return {
    track(socket) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    },
    hold() {
      if (held !== null || sockets.size === 0) return;
      const s: Socket[] = [];
      for (const sock of sockets) {
        if (sock.destroyed || sock.connecting) continue;
        sock.cork();
        s.push(sock);
      }
      held = s;
      setImmediate(release);
    },
    get size() {
      return sockets.size;
    },
  };
}
