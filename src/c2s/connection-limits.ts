// Open c2s connections, server-wide and per client address (an IPv6 address
// counted as its /64, see clientAddress): every transport's listener asks
// here before it makes a session, and gives the slot back when the
// connection closes, so that neither one host nor all of them together can
// hold more than their share of sockets, sessions and parser state. The
// count starts when the connection is accepted, before any TLS handshake
// or stream header, so connections that never get that far count too.
import { StreamError } from '../xmpp/errors.ts';
import { clientAddress } from './auth-bans.ts';

export type ConnectionRefusal = 'global_limit' | 'address_limit';

export class ConnectionLimits {
  /** max_c2s_connections (0: none). */
  readonly max: number;
  /** max_c2s_connections_per_address (0: none). */
  readonly perAddress: number;
  #open = 0;
  #byAddress = new Map<string, number>();

  constructor(max: number, perAddress: number) {
    this.max = max;
    this.perAddress = perAddress;
  }

  get open(): number {
    return this.#open;
  }

  /**
   * Takes a slot for a connection from `remote` (the socket's remote
   * address). The key to give back to release() once it closes, or the
   * reason it is refused (nothing taken).
   */
  admit(remote: string | undefined): { key: string } | { refused: ConnectionRefusal } {
    if (this.max > 0 && this.#open >= this.max) return { refused: 'global_limit' };
    const key = clientAddress(remote);
    const n = this.#byAddress.get(key) ?? 0;
    if (this.perAddress > 0 && n >= this.perAddress) return { refused: 'address_limit' };
    this.#open++;
    this.#byAddress.set(key, n + 1);
    return { key };
  }

  /** Gives back the slot admit() took under `key`. */
  release(key: string): void {
    const n = this.#byAddress.get(key);
    if (n === undefined) return;
    this.#open--;
    if (n <= 1) this.#byAddress.delete(key);
    else this.#byAddress.set(key, n - 1);
  }
}

/** The stream error a refused connection is sent, where its transport can carry one (RFC 6120 §4.9.3). */
export function refusalError(reason: ConnectionRefusal): StreamError {
  return reason === 'global_limit'
    ? new StreamError('resource-constraint', 'the server has too many connections; try again later')
    : new StreamError('policy-violation', 'too many connections from this address');
}
