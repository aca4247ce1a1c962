// Failed logins per client address: past a number of failures within an
// hour, the address is refused for a while. This slows password guessing
// spread over many connections, which the per-connection limit alone cannot.

/** Failures are counted over this sliding window. */
export const FAILURE_WINDOW_MS = 3_600_000;
/** Addresses tracked at once; past it the oldest entries are forgotten, so memory stays bounded. */
const MAX_TRACKED = 100_000;

interface Entry {
  /** Times of recent failures, oldest first; never longer than the limit. */
  failures: number[];
  /** Until when the address is refused (0: not banned). */
  bannedUntil: number;
}

export class AuthBans {
  readonly maxFailures: number;
  readonly banDuration: number;
  #entries = new Map<string, Entry>();
  #now: () => number;

  /**
   * `maxFailures` failures within an hour ban the address for `banDuration`
   * milliseconds; `maxFailures` = 0 turns the limit off.
   */
  constructor(maxFailures: number, banDuration: number, now: () => number = Date.now) {
    this.maxFailures = maxFailures;
    this.banDuration = banDuration;
    this.#now = now;
  }

  /** Milliseconds the address is still refused for, 0 when it is not. */
  bannedFor(ip: string): number {
    const e = this.#entries.get(ip);
    if (e === undefined || e.bannedUntil === 0) return 0;
    const left = e.bannedUntil - this.#now();
    if (left > 0) return left;
    // The ban is over and the failures that led to it are forgotten with it.
    this.#entries.delete(ip);
    return 0;
  }

  /** Counts one failed login; true when the address is banned from now on. */
  recordFailure(ip: string): boolean {
    if (this.maxFailures <= 0) return false;
    const now = this.#now();
    let e = this.#entries.get(ip);
    if (e === undefined) {
      if (this.#entries.size >= MAX_TRACKED) this.#evict(now);
      e = { failures: [], bannedUntil: 0 };
    } else {
      // Map order is insertion order: re-inserting keeps recently active addresses last.
      this.#entries.delete(ip);
    }
    this.#entries.set(ip, e);
    const since = now - FAILURE_WINDOW_MS;
    const f = e.failures;
    while (f.length > 0 && f[0]! <= since) f.shift();
    f.push(now);
    if (f.length > this.maxFailures) f.shift();
    if (f.length >= this.maxFailures) {
      e.bannedUntil = now + this.banDuration;
      f.length = 0;
      return true;
    }
    return e.bannedUntil > now;
  }

  /** Drops entries with nothing left to remember, then the least recently active if still full. */
  #evict(now: number): void {
    const since = now - FAILURE_WINDOW_MS;
    for (const [ip, e] of this.#entries) {
      if (e.bannedUntil <= now && (e.failures.length === 0 || e.failures[e.failures.length - 1]! <= since)) this.#entries.delete(ip);
    }
    while (this.#entries.size >= MAX_TRACKED) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  get size(): number {
    return this.#entries.size;
  }
}

/** The address of a peer as one string per host: IPv4-mapped IPv6 addresses are written as IPv4. */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return '';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}

/** True for an address (as clientAddress writes it) only this machine can have: 127.0.0.0/8 and ::1. */
export function isLoopbackAddress(address: string): boolean {
  return address.startsWith('127.') || address === '::1';
}
