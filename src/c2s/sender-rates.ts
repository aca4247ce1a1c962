// How fast each client session sends, against the others: a session far
// above the rest (a flooder) is given a smaller input budget, so that what
// everyone else sends waits behind less of its traffic (session.ts).
//
// Counted in windows of WINDOW_MS: the bytes each bound session read and,
// server-wide, the bytes and the sessions that read anything. A session is
// heavy for a window when, in the window before, it read at least the
// listener's floor and more than `factor` times the mean of the other
// sessions that read anything. Equal senders (many users at full speed) are
// never heavy, nor is a sender alone: there is nobody to be unfair to.
//
// Per read this costs a comparison and two additions; the heavy test runs
// once per session and window, at its first read of the window.

/** Length of a window, ms. */
export const WINDOW_MS = 100;

/** A session's counts; kept by the session, updated by SenderRates.read. */
export interface SenderMeter {
  /** The window the counts are of (0: none yet). */
  window: number;
  /** Bytes read in that window. */
  bytes: number;
  /** Whether the session is heavy in that window. */
  heavy: boolean;
}

export function newSenderMeter(): SenderMeter {
  return { window: 0, bytes: 0, heavy: false };
}

/** What a listener makes of the counts: a session is heavy above both. */
export interface HeavySender {
  /** Times the others' mean rate (0: no session is ever heavy). */
  factor: number;
  /** Bytes per window below which a session is never heavy. */
  minBytes: number;
}

export class SenderRates {
  #window = 1;
  #bytes = 0;
  #senders = 0;
  #lastBytes = 0;
  #lastSenders = 0;
  #timer: NodeJS.Timeout | null;

  /** Counts the windows in which a session was heavy. */
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

  /** Counts `n` bytes read by the session of `m`; returns whether it is heavy now. */
  read(m: SenderMeter, n: number, h: HeavySender): boolean {
    const w = this.#window;
    if (m.window !== w) {
      const last = m.window === w - 1 ? m.bytes : 0;
      m.window = w;
      m.bytes = 0;
      m.heavy = h.factor > 0 && last >= h.minBytes && this.#lastSenders > 1 && last * (this.#lastSenders - 1) > h.factor * (this.#lastBytes - last);
      if (m.heavy) this.#heavyWindows?.inc();
      this.#senders++;
    }
    m.bytes += n;
    this.#bytes += n;
    return m.heavy;
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
