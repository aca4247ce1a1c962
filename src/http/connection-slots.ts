// The per-address connection limits a [[listen.http]] listener counts its
// connections against (the c2s ones: general.max_c2s_connections and
// max_c2s_connections_per_address), and the mark the listener leaves on a
// connection that holds a slot, so that a handler taking the connection over
// by an upgrade (XMPP over WebSocket) keeps that slot instead of taking a
// second one.
import type { Duplex } from 'node:stream';

export type ConnectionRefusalReason = 'global_limit' | 'address_limit';

/** What the listener needs of the c2s ConnectionLimits (src/c2s/connection-limits.ts). */
export interface HttpConnectionLimits {
  /** Takes a slot for a connection from `remote`: the key to release it with, or why it is refused (nothing taken). */
  admit(remote: string | undefined): { key: string } | { refused: ConnectionRefusalReason };
  release(key: string): void;
  /** Called for every connection refused (metrics). */
  refused?(reason: ConnectionRefusalReason): void;
}

const holding = new WeakSet<object>();

/** Marks `socket` (as an upgrade handler receives it) as holding a slot the listener releases once it closes. */
export function markSlotHeld(socket: Duplex): void {
  holding.add(socket);
}

/** True when the listener already counts `socket`: an upgrade handler must not take another slot for it. */
export function holdsConnectionSlot(socket: Duplex): boolean {
  return holding.has(socket);
}

/** The c2s connection limits, and their refusal counter, as the HTTP listeners count against them. */
export function httpConnectionLimits(
  limits: Pick<HttpConnectionLimits, 'admit' | 'release'>,
  metrics?: { connectionRefused(reason: ConnectionRefusalReason): void },
): HttpConnectionLimits {
  return {
    admit: (remote) => limits.admit(remote),
    release: (key) => limits.release(key),
    refused: metrics === undefined ? undefined : (r) => metrics.connectionRefused(r),
  };
}
