// Failed logins per key over a sliding hour: past a number of failures the
// key is refused for a while. Keyed by client address (clientAddress: IPv6
// by /64), this slows password guessing spread over many connections, which
// the per-connection limit alone cannot; keyed by account, guessing spread
// over many addresses.

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

/**
 * The address a peer's connections and failures are counted under: an IPv4
 * address as it is (IPv4-mapped IPv6 addresses written as IPv4), an IPv6
 * address as its /64 network ("2001:db8:0:7::/64"), since one subscriber or
 * host is commonly given a whole /64 and could otherwise use a new address
 * for every attempt.
 */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return '';
  if (remote.startsWith('::ffff:') && remote.includes('.')) return remote.slice(7);
  if (!remote.includes(':')) return remote;
  const groups = ipv6Groups(remote);
  if (groups === null) return remote;
  return groups.slice(0, 4).map((g) => g.toString(16)).join(':') + '::/64';
}

/** The eight 16-bit groups of an IPv6 address (RFC 4291 §2.2 text forms), or null. */
function ipv6Groups(text: string): number[] | null {
  const zone = text.indexOf('%');
  const a = zone >= 0 ? text.slice(0, zone) : text;
  const halves = a.split('::');
  if (halves.length > 2) return null;
  const part = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (g.includes('.')) {
        const b = g.split('.').map(Number);
        if (b.length !== 4 || b.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return null;
        out.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const head = part(halves[0]!);
  const tail = halves.length === 2 ? part(halves[1]!) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  const fill = 8 - head.length - tail.length;
  if (fill < 1) return null;
  return [...head, ...new Array<number>(fill).fill(0), ...tail];
}

/** Whether a socket's remote address (as Node gives it: IPv4-mapped, or IPv6 in any text form) is this machine's. */
export function isLoopbackRemote(remote: string | undefined): boolean {
  if (remote === undefined) return false;
  if (remote.startsWith('::ffff:') && remote.includes('.')) return remote.slice(7).startsWith('127.');
  if (!remote.includes(':')) return remote.startsWith('127.');
  const g = ipv6Groups(remote);
  return g !== null && g.slice(0, 7).every((x) => x === 0) && g[7] === 1;
}
