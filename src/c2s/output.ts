// A session's output and the send side of back-pressure. Everything a
// session produces in one turn of the event loop goes to its transport in
// one write (one write per element on message transports), through one
// queue shared by all sessions, so a burst of stanzas costs one system call
// per connection rather than one per stanza. A client that does not read
// what it is sent is found here: past max_output_buffer bytes waiting, or
// send_timeout without a completed write while output waits. The session
// then drops it, and the message stanzas the transport had not yet taken
// are routed again (rerouteUndelivered).
import type { Logger } from 'pino';
import type { Element } from '../xmpp/xml.ts';
import { tryParseJid, type JID } from '../xmpp/jid.ts';
import type { Router } from '../routing/router.ts';
import type { Transport } from './transport.ts';

/** What Output tells its session. */
export interface OutputEvents {
  /** The client does not read what it is sent (the reason is for the log); the session drops it. */
  onSlowReader(reason: string): void;
}

/** The send-side limits (C2SLimits' fields of the same names). */
export interface OutputLimits {
  maxOutputBuffer: number;
  sendTimeout: number;
}

/**
 * Output of one turn is handed to the transport once it reaches this many
 * code units, without waiting for the end of the turn: a large result
 * written in pieces is never joined into one string.
 */
export const OUTPUT_CHUNK = 65_536;

/**
 * One stanza waiting in a write: a message (to route again if the client is
 * dropped before the transport took it) and/or a stanza from another party,
 * whose bytes count against that sender's share.
 */
interface Sent {
  /** The message stanza, or null for a stanza that is never routed again. */
  el: Element | null;
  /** The bare JID of the other party that sent it; '' for the session's own output. */
  sender: string;
  /** Its serialised length, counted while it waits (others' stanzas only). */
  size: number;
}

/** Shared and never written to: stands for "nothing" without an array per session. */
const NONE: Sent[] = [];

export class Output {
  #transport: Transport;
  #limits: OutputLimits;
  #events: OutputEvents;
  #elementPerWrite: boolean;
  /** Output of this turn, not yet handed to the transport. */
  #out = '';
  /** Element-per-write framings only: the elements of this turn, in order (null: none yet). */
  #units: string[] | null = null;
  #unitsSize = 0;
  #flushQueued = false;
  #stopped = false;
  /** Part of this turn's output was already handed over (the cap was checked then). */
  #handedThisTurn = false;
  /** Stanzas remembered in #out / #units, not yet handed to the transport. */
  #sent: Sent[] = NONE;
  /** The stanzas of each transport write not yet taken, oldest write first (null: no write pending). */
  #inFlight: Sent[][] | null = null;
  /** Bytes of others' stanzas waiting (this turn's and written, not taken), per sender (null: none). */
  #foreign: Map<string, number> | null = null;
  #foreignTotal = 0;
  /** Transport writes made and taken, counted for `drained`. */
  #writesHanded = 0;
  #writesTaken = 0;
  /** Waiting for the writes up to `target` to be taken (true) or for output to stop (false). */
  #drainWaiters: Array<{ target: number; resolve: (taken: boolean) => void }> | null = null;
  #sendTimer: NodeJS.Timeout | null = null;
  /**
   * While the send timer runs: when a write last completed (or output last
   * started waiting), in whole ms, so it stays a small integer.
   */
  #lastProgress = 0;

  constructor(transport: Transport, limits: OutputLimits, events: OutputEvents, elementPerWrite: boolean) {
    this.#transport = transport;
    this.#limits = limits;
    this.#events = events;
    this.#elementPerWrite = elementPerWrite;
  }

  /** Queues `s` (one complete element, a piece of one, or a stream's framing) for the end of this turn. */
  write(s: string): void {
    if (this.#stopped) return;
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      const queue = Output.#toFlush;
      if (queue.length === 0) queueMicrotask(Output.#flushAll);
      queue.push(this);
    }
    if (this.#elementPerWrite) {
      (this.#units ??= []).push(s);
      this.#unitsSize += s.length;
    } else {
      this.#out += s;
      if (this.#out.length >= OUTPUT_CHUNK) this.#handOver();
    }
  }

  /** Queues a serialised message stanza of the session's own output, remembered until the transport has taken it (see takeUndelivered). */
  message(el: Element, s: string): void {
    if (this.#stopped) return;
    this.#remember({ el, sender: '', size: 0 });
    this.write(s);
  }

  /**
   * Whether a stanza of `size` code units from `sender` (the bare JID of
   * another party) may be queued now. Others' traffic may fill at most half
   * of max_output_buffer, and one sender at most a quarter, so that what
   * others send can never be what takes a reading client past the cap: the
   * other half is the session's own. One stanza onto nothing waiting is
   * always let through (its size is bounded by the caller).
   */
  admits(sender: string, size: number): boolean {
    const waiting = this.#transport.buffered + this.#out.length + this.#unitsSize;
    if (waiting === 0 && this.#foreignTotal === 0) return true;
    const cap = this.#limits.maxOutputBuffer;
    if (this.#foreignTotal + size > cap / 2) return false;
    const mine = this.#foreign?.get(sender) ?? 0;
    return mine === 0 || mine + size <= cap / 4;
  }

  /** Queues a stanza from another party (`el` when it is a message, to be routed again if never taken). */
  foreign(el: Element | null, sender: string, s: string): void {
    if (this.#stopped) return;
    const size = s.length;
    const map = (this.#foreign ??= new Map());
    map.set(sender, (map.get(sender) ?? 0) + size);
    this.#foreignTotal += size;
    this.#remember({ el, sender, size });
    this.write(s);
  }

  #remember(entry: Sent): void {
    if (this.#sent === NONE) this.#sent = [];
    this.#sent.push(entry);
  }

  /**
   * Resolves true once everything written so far has been taken by the
   * transport, false if output stops first: a caller with much to send (the
   * offline messages) sends a bounded batch at a time. Only what was written
   * before the call counts, so others' traffic that keeps coming cannot hold
   * it back.
   */
  drained(): Promise<boolean> {
    if (this.#stopped) return Promise.resolve(false);
    this.flush();
    if (this.#stopped) return Promise.resolve(false);
    const target = this.#writesHanded;
    if (this.#writesTaken >= target) return Promise.resolve(true);
    return new Promise((resolve) => (this.#drainWaiters ??= []).push({ target, resolve }));
  }

  #settleDrain(stopped: boolean): void {
    const waiters = this.#drainWaiters;
    if (waiters === null) return;
    const left = stopped ? [] : waiters.filter((w) => w.target > this.#writesTaken);
    this.#drainWaiters = left.length === 0 ? null : left;
    for (const w of waiters) {
      if (stopped) w.resolve(false);
      else if (w.target <= this.#writesTaken) w.resolve(true);
    }
  }

  /** Sessions with output to hand to their transports at the end of this turn. */
  static #toFlush: Output[] = [];

  static #flushAll(): void {
    const queue = Output.#toFlush;
    let i = 0;
    try {
      // Sessions given output meanwhile are appended and written in this same round.
      while (i < queue.length) queue[i++]!.flush();
    } finally {
      queue.splice(0, i);
      if (queue.length > 0) queueMicrotask(Output.#flushAll);
    }
  }

  /** Hands this turn's output to the transport now (also before STARTTLS and when closing). */
  flush(): void {
    this.#flushQueued = false;
    this.#handOver();
    this.#handedThisTurn = false;
  }

  #handOver(): void {
    const units = this.#units;
    let size: number;
    if (units === null) {
      size = this.#out.length;
      if (size === 0) return;
    } else {
      size = this.#unitsSize;
      this.#units = null;
      this.#unitsSize = 0;
    }
    const out = this.#out;
    this.#out = '';
    const sent = this.#sent;
    if (sent !== NONE) this.#sent = NONE;
    const transport = this.#transport;
    const waiting = transport.buffered;
    // A client that does not read: output already waits and this would take
    // it past the cap. (A burst onto an empty buffer is let through, so a
    // reading client is never cut off by one large hand-over; the later
    // pieces of a turn already checked are too.)
    if (!this.#handedThisTurn && waiting > 0 && waiting + size > this.#limits.maxOutputBuffer && !this.#stopped) {
      this.#sent = sent;
      this.#events.onSlowReader(`more than ${this.#limits.maxOutputBuffer} bytes wait to be sent`);
      return;
    }
    this.#handedThisTurn = true;
    const inFlight = (this.#inFlight ??= []);
    if (units === null) {
      inFlight.push(sent);
      this.#writesHanded++;
      transport.write(out);
    } else {
      this.#writesHanded += units.length;
      // The stanzas ride on the last write of the turn: writes are taken in order.
      const last = units.length - 1;
      for (let i = 0; i < last; i++) {
        inFlight.push(NONE);
        transport.write(units[i]!);
      }
      inFlight.push(sent);
      transport.write(units[last]!);
    }
    if (transport.buffered > 0 && this.#sendTimer === null && this.#limits.sendTimeout > 0 && !this.#stopped) {
      this.#lastProgress = nowMs();
      this.#sendTimer = setTimeout(Output.#checkSend, this.#limits.sendTimeout, this);
      this.#sendTimer.unref();
    }
  }

  /** The transport took the oldest write (TransportEvents.onWritten). */
  written(): void {
    const inFlight = this.#inFlight;
    if (inFlight !== null) {
      const batch = inFlight.shift()!;
      if (inFlight.length === 0) this.#inFlight = null;
      const map = this.#foreign;
      if (map !== null) {
        for (const e of batch) {
          if (e.size === 0) continue;
          const left = (map.get(e.sender) ?? 0) - e.size;
          if (left > 0) map.set(e.sender, left);
          else map.delete(e.sender);
          this.#foreignTotal -= e.size;
        }
        if (map.size === 0) {
          this.#foreign = null;
          this.#foreignTotal = 0;
        }
      }
      this.#writesTaken++;
      if (this.#drainWaiters !== null) this.#settleDrain(false);
    }
    // Progress only matters while the send timer runs; it was set when the timer started.
    if (this.#sendTimer !== null) this.#lastProgress = nowMs();
  }

  static #checkSend(o: Output): void {
    o.#sendTimer = null;
    if (o.#stopped || o.#transport.buffered === 0) return;
    const limit = o.#limits.sendTimeout;
    const idle = nowMs() - o.#lastProgress;
    if (idle >= limit) {
      o.#events.onSlowReader(`nothing could be sent for ${limit} ms`);
      return;
    }
    o.#sendTimer = setTimeout(Output.#checkSend, Math.ceil(limit - idle), o);
    o.#sendTimer.unref();
  }

  /** No more output: later writes are ignored and the send timer stops. */
  stop(): void {
    this.#stopped = true;
    if (this.#sendTimer !== null) clearTimeout(this.#sendTimer);
    this.#sendTimer = null;
    this.#settleDrain(true);
  }

  /**
   * The message stanzas the transport has not taken, oldest first, and
   * nothing more to write: what a dropped slow reader leaves undelivered.
   */
  takeUndelivered(): Element[] {
    const pending: Element[] = [];
    for (const batch of this.#inFlight ?? []) for (const e of batch) if (e.el !== null) pending.push(e.el);
    for (const e of this.#sent) if (e.el !== null) pending.push(e.el);
    this.#inFlight = null;
    this.#sent = NONE;
    this.#foreign = null;
    this.#foreignTotal = 0;
    this.#out = '';
    this.#units = null;
    this.#unitsSize = 0;
    return pending;
  }
}

/**
 * Routes again the messages a dropped client never got: to another resource
 * of the user or to offline storage, since the session is gone. Messages
 * the transport had taken count as delivered, as with any connection that
 * breaks without stream management (XEP-0198).
 */
export function rerouteUndelivered(router: Router, logger: Logger, session: number, messages: readonly Element[], domain: string, me: JID | null): void {
  for (const m of messages) {
    const from = tryParseJid(m.attrs.from ?? '') ?? tryParseJid(domain);
    const to = tryParseJid(m.attrs.to ?? '') ?? me;
    if (from === null || to === null) continue;
    try {
      router.route(from, to, m);
    } catch (err) {
      logger.error({ what: 'c2s_reroute_failed', session, err: String(err) }, 'could not route an undelivered message again');
    }
  }
}

/** Milliseconds of monotonic time, whole, so a field holding it stays a small integer. */
function nowMs(): number {
  return Math.floor(performance.now());
}
