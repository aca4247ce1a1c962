// How fast each user sends, against the others: a user far above the rest
// (a flooder) has a smaller input budget in each of its sessions, so that
// what everyone else sends waits behind less of its traffic (session.ts).
//
// Counted in windows of WINDOW_MS: the bytes each account read over all of
// its bound sessions on this node (one meter per account, shared by its
// sessions: a flood spread over many connections is counted as one) and,
// server-wide, the bytes and the accounts that read anything. An account is
// heavy for a window when, in the window before, it read at least the
// listener's floor and more than `factor` times the mean of the other
// accounts that read anything. Equal senders (many users at full speed) are
// never heavy, nor is a sender alone: there is nobody to be unfair to.
//
// The counts are the account's; the rule is the listener's. Each session
// applies the options of its own listener (`HeavySender`) to them, so an
// account with a session on a listener that has the rule off and another on
// one that has it on is heavy on the second only, whichever reads first.
//
// Per read this costs a few comparisons and two additions; the window's
// counts roll over once per account and window, at the first read of the
// window by any of its sessions.

/** Length of a window, ms. */
export const WINDOW_MS = 100;

/** An account's counts, shared by its sessions (SenderRates.meter), updated by SenderRates.read. */
export interface SenderMeter {
  /** The window the counts are of (0: none yet). */
  window: number;
  /** Bytes read in that window. */
  bytes: number;
  /** Bytes read in the window before it (0 when it read nothing then). */
  last: number;
  /** Whether the account has been counted heavy in that window (by the rule of any of its sessions). */
  counted: boolean;
  /** Sessions holding the meter (SenderRates.meter / release). */
  holders: number;
}

export function newSenderMeter(): SenderMeter {
  return { window: 0, bytes: 0, last: 0, counted: false, holders: 0 };
}

/** What a listener makes of the counts: an account is heavy above both. */
export interface HeavySender {
  /** Times the other accounts' mean rate (0: none is ever heavy). */
  factor: number;
  /** Bytes per window below which an account is never heavy. */
  minBytes: number;
}

export class SenderRates {
  #window = 1;
  #bytes = 0;
  #senders = 0;
  #lastBytes = 0;
  #lastSenders = 0;
  #timer: NodeJS.Timeout | null;
  /** The meters of the accounts with a session holding one, by bare JID. */
  readonly #accounts = new Map<string, SenderMeter>();

  /** Counts the windows in which an account was heavy. */
  readonly #heavyWindows: { inc(): void } | undefined;

  /** `windowMs` 0 (tests): no timer, the windows end at each tick(). */
  constructor(heavyWindows?: { inc(): void }, windowMs = WINDOW_MS) {
    this.#heavyWindows = heavyWindows;
    this.#timer = windowMs > 0 ? setInterval(SenderRates.#ticked, windowMs, this) : null;
    this.#timer?.unref();
  }

  static #ticked(r: SenderRates): void {
    r.tick();
  }

  /** Ends the window. */
  tick(): void {
    this.#lastBytes = this.#bytes;
    this.#lastSenders = this.#senders;
    this.#bytes = 0;
    this.#senders = 0;
    this.#window++;
  }

  /** The meter of the account `bare`, shared by every session that holds it; give it back with release(). */
  meter(bare: string): SenderMeter {
    let m = this.#accounts.get(bare);
    if (m === undefined) this.#accounts.set(bare, (m = newSenderMeter()));
    m.holders++;
    return m;
  }

  /** A session of the account `bare` no longer reads: the meter goes with its last session. */
  release(bare: string, m: SenderMeter): void {
    if (--m.holders <= 0 && this.#accounts.get(bare) === m) this.#accounts.delete(bare);
  }

  /** Accounts with a meter (for tests). */
  get accounts(): number {
    return this.#accounts.size;
  }

  /** Counts `n` bytes read by a session of the account of `m`; returns whether the account is heavy now by the session's rule `h`. */
  read(m: SenderMeter, n: number, h: HeavySender): boolean {
    const w = this.#window;
    if (m.window !== w) {
      m.last = m.window === w - 1 ? m.bytes : 0;
      m.window = w;
      m.bytes = 0;
      m.counted = false;
      this.#senders++;
    }
    m.bytes += n;
    this.#bytes += n;
    const last = m.last;
    if (h.factor <= 0 || last < h.minBytes || this.#lastSenders < 2 || last * (this.#lastSenders - 1) <= h.factor * (this.#lastBytes - last)) return false;
    if (!m.counted) {
      m.counted = true;
      this.#heavyWindows?.inc();
    }
    return true;
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
