// The read side of back-pressure: when a session's input is read. Two
// things stop reading, each on its own, and reading resumes only once
// neither does:
//
// - the listener's shaper (MongooseIM's `shaper`, `max_rate` bytes per
//   second): a token bucket; past the rate, the transport is not read until
//   the budget refills, so TCP flow control slows the sender down instead
//   of the server buffering (as MongooseIM's shaper does);
// - the session's routing backlog: too many stanzas waiting behind a hook
//   barrier (the outbox write) stop reading until it drains;
// - the session's input slices: a large read is handled a slice per turn,
//   and no more is read until the last slice is;
// - the event pusher's flow control: a user whose events wait in an outbox
//   past its high-water mark is not read until the outbox drains
//   (mod_event_pusher/delivery/flow.ts).
//
// Created only for a session that needs it (a shaped listener, or a backlog
// that grew), so an idle unshaped connection carries none.
import type { Transport } from './transport.ts';

/** The reasons reading is held, as bits. */
export const HOLD_RATE = 1;
export const HOLD_BACKLOG = 2;
/** The rest of a large read waits for the next turn (the session's input slices). */
export const HOLD_SLICE = 8;
/** The event pusher's outbox is past its high-water mark and this user's events are waiting (SessionView.throttle). */
export const HOLD_FLOW = 16;
/** Once stopped, nothing resumes reading. */
const HOLD_STOPPED = 4;

export class Shaper {
  #transport: Transport;
  /** Bytes per second (0 = unshaped: only holds). */
  #rate: number;
  /** Budget left, bytes; the bucket starts full. */
  #tokens: number;
  /** When the budget was last refilled (performance.now()). */
  #at = 0;
  #holds = 0;

  constructor(transport: Transport, rate: number) {
    this.#transport = transport;
    this.#rate = rate;
    this.#tokens = rate;
    this.#at = performance.now();
  }

  /** A new rate (the user's, once known); the budget is kept within it. */
  setRate(rate: number): void {
    this.#rate = rate;
    this.#tokens = Math.min(this.#tokens, rate);
  }

  /** Counts input just read; past the rate, reading stops until the budget has refilled. */
  received(bytes: number): void {
    const rate = this.#rate;
    if (rate <= 0) return;
    const now = performance.now();
    // One second of burst at most.
    const tokens = Math.min(rate, this.#tokens + ((now - this.#at) * rate) / 1000) - bytes;
    this.#tokens = tokens;
    this.#at = now;
    if (tokens >= 0 || (this.#holds & HOLD_RATE) !== 0) return;
    this.hold(HOLD_RATE);
    setTimeout(Shaper.#refilled, Math.ceil((-tokens * 1000) / rate), this).unref();
  }

  static #refilled(s: Shaper): void {
    s.release(HOLD_RATE);
  }

  hold(reason: number): void {
    const was = this.#holds;
    this.#holds = was | reason;
    if (was === 0) this.#transport.pause();
  }

  release(reason: number): void {
    const was = this.#holds;
    if ((was & reason) === 0) return;
    this.#holds = was & ~reason;
    if (this.#holds === 0) this.#transport.resume();
  }

  /** The session is over: reading is never resumed from here. */
  stop(): void {
    this.#holds |= HOLD_STOPPED;
  }
}
