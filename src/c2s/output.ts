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

/** Shared and never written to: stands for "no messages" without an array per session. */
const NO_MESSAGES: Element[] = [];

export class Output {
  #transport: Transport;
  #limits: OutputLimits;
  #events: OutputEvents;
  #elementPerWrite: boolean;
  /** Output of this turn, not yet handed to the transport. */
  #out = '';
  /** Element-per-write framings only: the elements of this turn, in order (null: none yet). */
  #units: string[] | null = null;
  #flushQueued = false;
  #stopped = false;
  /** Message stanzas in #out and not yet handed to the transport. */
  #messages: Element[] = NO_MESSAGES;
  /** Message stanzas of each transport write not yet taken, oldest write first (null: no write pending). */
  #inFlight: Element[][] | null = null;
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

  /** Queues `s` (one complete element, or a stream's framing) for the end of this turn. */
  write(s: string): void {
    if (this.#stopped) return;
    if (this.#elementPerWrite) (this.#units ??= []).push(s);
    else this.#out += s;
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      const queue = Output.#toFlush;
      if (queue.length === 0) queueMicrotask(Output.#flushAll);
      queue.push(this);
    }
  }

  /** Queues a serialised message stanza, remembered until the transport has taken it (see takeUndelivered). */
  message(el: Element, s: string): void {
    if (this.#stopped) return;
    if (this.#messages === NO_MESSAGES) this.#messages = [];
    this.#messages.push(el);
    this.write(s);
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
    const units = this.#units;
    let size: number;
    if (units === null) {
      size = this.#out.length;
      if (size === 0) return;
    } else {
      size = 0;
      for (const u of units) size += u.length;
      this.#units = null;
    }
    const out = this.#out;
    this.#out = '';
    const messages = this.#messages;
    if (messages !== NO_MESSAGES) this.#messages = NO_MESSAGES;
    const transport = this.#transport;
    const waiting = transport.buffered;
    // A client that does not read: output already waits and this would take
    // it past the cap. (A burst onto an empty buffer is let through, so a
    // reading client is never cut off by one large hand-over.)
    if (waiting > 0 && waiting + size > this.#limits.maxOutputBuffer && !this.#stopped) {
      this.#messages = messages;
      this.#events.onSlowReader(`more than ${this.#limits.maxOutputBuffer} bytes wait to be sent`);
      return;
    }
    const inFlight = (this.#inFlight ??= []);
    if (units === null) {
      inFlight.push(messages);
      transport.write(out);
    } else {
      // The messages ride on the last write of the turn: writes are taken in order.
      const last = units.length - 1;
      for (let i = 0; i < last; i++) {
        inFlight.push(NO_MESSAGES);
        transport.write(units[i]!);
      }
      inFlight.push(messages);
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
      inFlight.shift();
      if (inFlight.length === 0) this.#inFlight = null;
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
  }

  /**
   * The message stanzas the transport has not taken, oldest first, and
   * nothing more to write: what a dropped slow reader leaves undelivered.
   */
  takeUndelivered(): Element[] {
    const pending: Element[] = [];
    for (const batch of this.#inFlight ?? []) for (const m of batch) pending.push(m);
    for (const m of this.#messages) pending.push(m);
    this.#inFlight = null;
    this.#messages = NO_MESSAGES;
    this.#out = '';
    this.#units = null;
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
