// One client-to-server session: the stream state machine of RFC 6120.
//
//   header ──stream open──► auth ──SASL success──► bind ──resource bound──► bound
//   (§4.2)                  (§6)  (restart, §6.4.6) (§7)                     (§8)
//                            ▲ │
//                            └─┘ STARTTLS (§5.4.3.3): the stream restarts over TLS
//
//   Any state ──► closed: the stream ends (§4.4), a stream error (§4.9), the
//   connection drops, the client stops reading, or, before bound, a step
//   takes longer than state_timeout.
//
// The session knows no socket and no stream syntax: it reads and writes
// through a Transport (transport.ts: TCP today, WebSocket next) and a
// Framing (framing.ts: how the stream opens and closes and stanzas are
// delimited). SASL is negotiated by sasl-negotiation.ts, output and its
// back-pressure are in output.ts, the pausing of input in shaper.ts. What is
// left here is the order of things: stream headers and features, what each
// state accepts, binding, and the dispatch of the stanzas of an established
// session into the hooks and the router.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Hooks } from '../hooks/hooks.ts';
import type { Acc, Barrier, C2SStream } from '../hooks/catalogue.ts';
import { STOP } from '../hooks/hooks.ts';
import type { Router } from '../routing/router.ts';
import type { Presence, PresenceSession } from '../routing/presence.ts';
import type { SessionManager } from '../routing/sm.ts';
import { Element } from '../xmpp/xml.ts';
import { StreamError, StanzaError, errorReply, receivedStreamError, type StreamErrorCondition } from '../xmpp/errors.ts';
import { JID, makeJid, tryParseJid } from '../xmpp/jid.ts';
import { resourceprep } from '../xmpp/stringprep.ts';
import { NS_BIND, NS_SASL, NS_SESSION, NS_TLS } from '../xmpp/ns.ts';
import { clientAddress, isLoopbackRemote, type AuthBans } from './auth-bans.ts';
import type { ConnectionLimits } from './connection-limits.ts';
import type { Transport, TransportEvents } from './transport.ts';
import type { Framing, FramingEvents, FramingFactory, FramingLimits, StreamHeader } from './framing.ts';
import { OUTPUT_CHUNK, Output, rerouteUndelivered, type OutputEvents } from './output.ts';
import { HOLD_BACKLOG, HOLD_FLOW, HOLD_SLICE, Shaper } from './shaper.ts';
import type { AccessRules, AccessSubject } from '../config/access.ts';
import { countElement, type HostC2SMetrics } from './metrics.ts';
import { WINDOW_MS, type HeavySender, type SenderMeter, type SenderRates } from './sender-rates.ts';
import { SaslNegotiation, type SaslContext, type SaslOutcome } from './sasl-negotiation.ts';

export interface C2SContext extends SaslContext {
  hosts: ReadonlySet<string>;
  defaultDomain: string;
  sm: SessionManager;
  router: Router;
  presence: Presence;
  hooks: Hooks;
  logger: Logger;
  limits: C2SLimits;
  /** The framing of this listener's transports (byte stream for TCP). */
  framing: FramingFactory;
  /** Parser limits before and after authentication (see framingLimits). */
  framingLimits: FramingLimits;
  /** Bytes per second this listener's shaper allows each connection to send (0 = unlimited). */
  maxRate: number;
  /** The [acl] and [access] sections. */
  access?: AccessRules;
  /** The listener's `access` rule: who may open a session ("all": anyone). */
  accessRule?: string;
  /** The listener's shaper as an access rule (MongooseIM's `c2s_shaper`): the rate for a user, after authentication. */
  rateFor?: (s: AccessSubject) => number;
  /** Failed logins per client address, shared by all listeners; absent: no per-address limit. */
  authBans?: AuthBans;
  /** Open connections, server-wide and per address, shared by every c2s transport's listener; absent: no limit. */
  connections?: ConnectionLimits;
  /**
   * The listener's allow_plaintext_auth is false: a client on another
   * machine gets no SASL over an unencrypted stream, as if STARTTLS were
   * required for it. Absent: no such rule.
   */
  loopbackOnlyPlaintextAuth?: boolean;
  /** Called once the session's connection has closed. */
  released?: (s: C2SSession) => void;
  /** Every account's rate against the others', server-wide; absent: no session is ever a heavy sender. */
  senderRates?: SenderRates;
}

/** Limits of one listener; the config options they come from are named beside each. */
export interface C2SLimits {
  /** max_stanza_size_before_auth: bytes of one stanza (and of the stream header) before authentication. */
  preAuthStanzaSize: number;
  /** max_elements_before_auth: elements in one stanza before authentication. */
  preAuthElements: number;
  /** max_element_depth */
  maxDepth: number;
  /** max_auth_failures: failed SASL attempts on one connection before it is closed. */
  maxAuthFailures: number;
  /** state_timeout: ms the server waits for the client at each step until a resource is bound (0 = no limit). */
  stateTimeout: number;
  /** tls.handshake_timeout: ms a TLS handshake may take. */
  handshakeTimeout: number;
  /** max_output_buffer: bytes waiting for a client that does not read, past which it is disconnected. */
  maxOutputBuffer: number;
  /** send_timeout: ms without a completed write, while output waits, before the client is disconnected (0 = no limit). */
  sendTimeout: number;
  /** negotiation_timeout: ms from connecting until a resource is bound, every step and restart together (0 = no limit). */
  negotiationTimeout: number;
  /** input_slice: bytes of one read a bound session handles per turn of the event loop. */
  inputSlice: number;
  /** routing_backlog: a bound session's routing steps allowed to wait before its input stops being read. */
  routingBacklog: number;
  /** heavy_sender_factor and heavy_sender_min_rate (per window): when a session has a quarter of the budget above. */
  heavySender: HeavySender;
}

/** The parser limits of a listener: `maxStanzaSize` (max_stanza_size, 0 = none) after authentication, the tighter pre-auth limits before. */
export function framingLimits(maxStanzaSize: number, limits: Pick<C2SLimits, 'preAuthStanzaSize' | 'preAuthElements' | 'maxDepth'>): FramingLimits {
  const { maxDepth, preAuthStanzaSize: pre, preAuthElements } = limits;
  return {
    preAuth: { maxStanzaSize: maxStanzaSize > 0 ? Math.min(maxStanzaSize, pre) : pre, maxDepth, maxElements: preAuthElements },
    authed: { maxStanzaSize, maxDepth },
  };
}

/** The input budget of a listener's bound sessions, from its options. */
export function inputBudget(o: { input_slice: number; routing_backlog: number; heavy_sender_factor: number; heavy_sender_min_rate: number }): Pick<C2SLimits, 'inputSlice' | 'routingBacklog' | 'heavySender'> {
  return {
    inputSlice: o.input_slice,
    routingBacklog: o.routing_backlog,
    heavySender: { factor: o.heavy_sender_factor, minBytes: Math.ceil((o.heavy_sender_min_rate * WINDOW_MS) / 1000) },
  };
}

export type SessionState = 'header' | 'auth' | 'bind' | 'bound' | 'closed';

/**
 * A bound session's input budget (the listener's input_slice and
 * routing_backlog). input_slice: bytes of one read handled per turn of the
 * event loop; the rest waits for the next turn, with reading held
 * meanwhile. A read can be 64 KiB of stanzas that are each costly to
 * prepare (long JIDs that need Unicode normalisation): handled at once, it
 * would hold every other connection's traffic for that long.
 * routing_backlog: routing steps allowed to wait before the transport stops
 * being read, and the input already read stops being parsed. A sender's
 * messages wait for their outbox commit; what it has waiting is what
 * everyone else's messages queue behind (in the commit and on this thread
 * when it is released), so a sender flooding as fast as its socket takes is
 * bounded by it. A heavy sender (sender-rates.ts) has a quarter of both.
 */
const HEAVY_SHARE = 4;
/** The smallest budget of a heavy sender: bytes of a slice. */
const MIN_SLICE = 512;

let sessionCounter = 0;

export class C2SSession implements PresenceSession, TransportEvents, FramingEvents, OutputEvents, C2SStream {
  #transport: Transport;
  #ctx: C2SContext;
  #framing: Framing;
  #output: Output;
  #state: SessionState = 'header';
  #domain = '';
  #headerSent = false;
  /** From the first SASL element until authenticated. */
  #sasl: SaslNegotiation | null = null;
  /** Between SASL success and binding: the authenticated user. */
  #username = '';
  #stateTimer: NodeJS.Timeout | null = null;
  /** Until a resource is bound: the deadline of the whole negotiation. */
  #negotiationTimer: NodeJS.Timeout | null = null;
  /** When input is read; made only once a shaper or the routing backlog needs it. */
  #shaper: Shaper | null = null;
  /**
   * Routing steps waiting, in the order the stanzas came, behind a stanza
   * whose user_send_message handlers set a barrier (the outbox write). Later
   * stanzas still run their hooks at once, so their writes join the same
   * batch; only their routing waits.
   */
  #pending: Array<{ ready: boolean; run: () => void }> | null = null;
  /**
   * Bound, but the connection is gone and a user_socket_closed handler keeps
   * the session for XEP-0198 resumption: stanzas still reach the
   * xmpp_presend_element hook (which buffers them), nothing is written.
   */
  #detached = false;
  /** The metrics of the session's host (of "" until the stream names a served one). */
  #m: HostC2SMetrics | undefined;
  /** Bytes per second this connection may send (0 = unshaped); the listener's, or its rule's for the user. */
  #maxRate: number;
  /** A presence broadcast of this session still running: later routing steps wait for it. */
  #busy: Promise<void> | null = null;
  /** The rest of a large read, handled a slice per turn (null: none waiting). */
  #slices: Uint8Array[] | null = null;
  /** #nextSlice is scheduled. */
  #sliceQueued = false;
  /** Bytes of input handled per turn and routing steps allowed to wait: the listener's, a quarter for a heavy sender. */
  #slice: number;
  #pause: number;
  /** Its account's rate against the others' (null until bound, or without SenderRates); shared by the account's sessions. */
  #meter: SenderMeter | null = null;
  /** Whether the session has a heavy sender's budget (#budget). */
  #heavy = false;
  readonly id: number;

  jid!: JID;
  priority = 0;
  available = false;
  interested = false;
  carbons = false;
  presence: Element | null = null;

  /** No SASL before TLS on this connection: the listener requires it, or the client is not on this machine and plaintext authentication is refused. */
  readonly #tlsRequired: boolean;

  /**
   * `refused`: the listener refuses the connection (connection-limits.ts);
   * the session only says so, with this stream error, and closes.
   */
  constructor(transport: Transport, ctx: C2SContext, refused?: StreamError) {
    this.#transport = transport;
    this.#ctx = ctx;
    this.id = ++sessionCounter;
    this.#maxRate = ctx.maxRate;
    this.#slice = ctx.limits.inputSlice;
    this.#pause = ctx.limits.routingBacklog;
    this.#m = ctx.metrics?.forHost('');
    this.#framing = ctx.framing(this, ctx.framingLimits);
    this.#output = new Output(transport, ctx.limits, this, this.#framing.elementPerWrite);
    transport.attach(this);
    const address = clientAddress(transport.remoteAddress);
    this.#tlsRequired = ctx.tlsRequired || (ctx.loopbackOnlyPlaintextAuth === true && !isLoopbackRemote(transport.remoteAddress));
    if (refused !== undefined) {
      this.#streamError(refused);
      return;
    }
    const banned = ctx.authBans?.bannedFor(address) ?? 0;
    if (banned > 0) {
      // Refused before any negotiation, so a banned address cannot even try.
      this.#streamError(new StreamError('policy-violation', `too many failed logins from this address; try again in ${Math.ceil(banned / 1000)} s`));
      return;
    }
    const whole = ctx.limits.negotiationTimeout;
    if (whole > 0) {
      this.#negotiationTimer = setTimeout(C2SSession.#negotiationTimedOut, whole, this);
      this.#negotiationTimer.unref();
    }
    this.#armStateTimer();
  }

  get state(): SessionState {
    return this.#state;
  }

  get domain(): string {
    return this.#domain;
  }

  get user(): string {
    return this.#state === 'bound' ? this.jid.local : this.#username;
  }

  get connected(): boolean {
    return this.#state !== 'closed' && !this.#detached;
  }

  /** The client's address and port, for logs. */
  get remote(): string {
    return this.#transport.remote;
  }

  // --- state_timeout --------------------------------------------------------

  /**
   * MongooseIM's state_timeout: until a resource is bound, the client has
   * this long to take each step (open the stream, answer a challenge, ...).
   * The number of steps before binding is bounded, so an unauthenticated
   * connection cannot stay for long by trickling bytes.
   */
  #armStateTimer(): void {
    const ms = this.#ctx.limits.stateTimeout;
    if (ms <= 0 || this.#state === 'bound' || this.#state === 'closed') {
      this.#stopStateTimer();
      return;
    }
    // The same timer starts over at each step.
    if (this.#stateTimer !== null) {
      this.#stateTimer.refresh();
      return;
    }
    this.#stateTimer = setTimeout(C2SSession.#stateTimedOut, ms, this);
    this.#stateTimer.unref();
  }

  static #stateTimedOut(s: C2SSession): void {
    s.#streamError(new StreamError('connection-timeout', `no answer within ${s.#ctx.limits.stateTimeout} ms`));
  }

  /**
   * state_timeout bounds each step; a client can still take steps forever
   * (restarting SASL, failing to bind), so the negotiation as a whole has a
   * deadline too.
   */
  static #negotiationTimedOut(s: C2SSession): void {
    s.#negotiationTimer = null;
    if (s.#state === 'bound' || s.#state === 'closed') return;
    s.#streamError(new StreamError('connection-timeout', `no resource bound within ${s.#ctx.limits.negotiationTimeout} ms of connecting`));
  }

  #stopNegotiationTimer(): void {
    if (this.#negotiationTimer !== null) clearTimeout(this.#negotiationTimer);
    this.#negotiationTimer = null;
  }

  #stopStateTimer(): void {
    if (this.#stateTimer !== null) clearTimeout(this.#stateTimer);
    this.#stateTimer = null;
  }

  // --- the transport's events -----------------------------------------------

  onData(data: Uint8Array): void {
    const metrics = this.#ctx.metrics;
    if (metrics !== undefined) (this.#transport.secure ? metrics.tlsIn : metrics.tcpIn).inc(data.length);
    const rate = this.#maxRate;
    if (rate > 0) (this.#shaper ??= new Shaper(this.#transport, rate)).received(data.length);
    const meter = this.#meter;
    if (meter !== null) {
      const heavy = this.#ctx.senderRates!.read(meter, data.length, this.#ctx.limits.heavySender);
      if (heavy !== this.#heavy) this.#budget(heavy);
    }
    if (this.#slices !== null) this.#slices.push(data);
    else this.#input(data);
  }

  /**
   * Hands `data` to the framing, a slice per turn once bound (#slice).
   * Before binding the whole read goes at once: a stream restart (STARTTLS,
   * SASL) drops the rest of the read it happened in, so a read must not be
   * cut there.
   */
  #input(data: Uint8Array): void {
    if (this.#state === 'bound' && this.#backlogFull()) {
      // Parsed once the routing backlog has room (#drain).
      this.#slices = [data];
      (this.#shaper ??= new Shaper(this.#transport, this.#maxRate)).hold(HOLD_SLICE);
      return;
    }
    const slice = this.#slice;
    // A WebSocket message is one element, bounded by the handler's max_frame_size: handled whole.
    if (this.#state !== 'bound' || data.length <= slice || !this.#framing.divisibleInput) {
      this.#framing.input(data);
      return;
    }
    this.#framing.input(data.subarray(0, slice));
    if ((this.#state as SessionState) === 'closed') return;
    this.#slices = [data.subarray(slice)];
    (this.#shaper ??= new Shaper(this.#transport, this.#maxRate)).hold(HOLD_SLICE);
    this.#queueSlice();
  }

  /** Whether the routing steps waiting have reached #pause: input is not parsed until they drain. */
  #backlogFull(): boolean {
    return this.#pending !== null && this.#pending.length >= this.#pause;
  }

  /** From binding on, the session's reads are counted with its account's other sessions, against the other accounts (sender-rates.ts). */
  #meterRates(): void {
    if (this.#ctx.senderRates !== undefined && this.#ctx.limits.heavySender.factor > 0) this.#meter = this.#ctx.senderRates.meter(this.jid.bare);
  }

  /** The listener's budget, or a quarter of it while the session is a heavy sender. */
  #budget(heavy: boolean): void {
    this.#heavy = heavy;
    const l = this.#ctx.limits;
    this.#slice = heavy ? Math.max(MIN_SLICE, Math.floor(l.inputSlice / HEAVY_SHARE)) : l.inputSlice;
    this.#pause = heavy ? Math.max(1, Math.floor(l.routingBacklog / HEAVY_SHARE)) : l.routingBacklog;
    // A larger backlog may have room now: reading resumes as when steps are routed.
    if (!heavy) this.#drain();
  }

  static #nextSlice(s: C2SSession): void {
    s.#sliceQueued = false;
    const slices = s.#slices;
    if (slices === null || s.#state === 'closed') {
      s.#slices = null;
      return;
    }
    if (s.#backlogFull()) return;
    const next = slices[0]!;
    const slice = s.#slice;
    if (next.length > slice && s.#framing.divisibleInput) {
      slices[0] = next.subarray(slice);
      s.#framing.input(next.subarray(0, slice));
    } else {
      slices.shift();
      s.#framing.input(next);
    }
    if ((s.#state as SessionState) === 'closed') {
      s.#slices = null;
      return;
    }
    if (slices.length > 0) {
      s.#queueSlice();
      return;
    }
    s.#slices = null;
    s.#shaper?.release(HOLD_SLICE);
  }

  onEnd(): void {
    // The peer closed its side without ending the stream: a lost connection.
    if (this.#connectionLost('connection ended by the client')) this.#transport.destroy();
    else this.close();
  }

  onError(err: Error): void {
    this.#ctx.logger.debug({ what: 'c2s_socket_error', session: this.id, err: err.message }, 'socket error');
  }

  onClose(): void {
    if (!this.#detached && !this.#connectionLost('connection closed')) this.#cleanup('closed');
    this.#ctx.released?.(this);
  }

  /**
   * The connection of a bound session is gone without a stream close: true
   * when a user_socket_closed handler (stream management) keeps the session
   * for resumption, which then lives on without a connection until resumed
   * or terminated.
   */
  #connectionLost(reason: string): boolean {
    if (this.#state !== 'bound' || this.#detached) return false;
    if (this.#ctx.hooks.run('user_socket_closed', this.#domain, { stream: this, reason })) return false;
    this.#detached = true;
    this.#output.stop();
    this.#output.takeUndelivered();
    this.#shaper?.stop();
    this.#ctx.logger.info({ what: 'c2s_session_detached', session: this.id, jid: this.jid.full, reason }, 'connection lost; session kept for resumption');
    return true;
  }

  onWritten(): void {
    this.#output.written();
  }

  // --- output ---------------------------------------------------------------

  /**
   * Writes a stanza to the client. Others' stanzas (those whose `from` is
   * another user) are bounded twice: one whose serialised form is longer
   * than max_output_buffer is never written, and while the client's output
   * waits, others may fill only their share of the cap (Output.admits). A
   * stanza refused either way goes back to its sender as a stanza error
   * (resource-constraint), or is dropped when it is presence, a result or
   * an error; the client itself is never cut off for what others send.
   * `held` marks a stanza the server kept for the user (offline messages):
   * its sender has nothing to do with the pace, and the caller paces it.
   */
  send(el: Element, held = false): void {
    if (this.#state === 'closed') return;
    const sender = held ? '' : this.#otherSender(el);
    const isMessage = el.name === 'message';
    // Another party's stanza is bounded before anything keeps it (the hooks
    // below may buffer it for resumption): too large once serialised, or
    // past the others' share of a client that is not reading, it goes back.
    let foreign: string | null = null;
    if (sender !== '' && this.connected) {
      const f = this.#framing.stanza(el, this.#ctx.limits.maxOutputBuffer);
      if (f === null) {
        this.#refuse(el, sender, 'the stanza is too large once serialised');
        return;
      }
      if (!this.#output.admits(sender, f.length)) {
        this.#refuse(el, sender, 'the recipient is not reading fast enough');
        return;
      }
      foreign = f;
    }
    // A handler may keep the stanza for later (client state indication) or,
    // for a session without a connection, only buffer it (stream management).
    if (!this.#ctx.hooks.run('xmpp_presend_element', this.#domain, { stream: this, el })) return;
    if (!this.connected) return;
    if (this.#m !== undefined) countElement(this.#m.out, el.name, el.attrs.type === 'error');
    if (foreign !== null) {
      this.#output.foreign(isMessage ? el : null, sender, foreign);
      return;
    }
    // The session's own output (results of its requests, pushes, what the
    // server kept for it): bounded by what made it (the roster's limits, the
    // offline store's); what is too large to build at once goes in pieces.
    const framing = this.#framing;
    const s = framing.stanzaPieces === undefined ? framing.stanza(el) : framing.stanza(el, OUTPUT_CHUNK);
    if (s === null) {
      framing.stanzaPieces!(el, OUTPUT_CHUNK, (piece) => this.#output.write(piece));
      if (isMessage) this.#output.message(el, '');
      return;
    }
    // Messages are remembered until the transport has taken them (see onSlowReader).
    if (isMessage) this.#output.message(el, s);
    else this.#output.write(s);
  }

  /** The bare JID of the other user a stanza comes from, or '' for the server's and the user's own. */
  #otherSender(el: Element): string {
    if (this.#state !== 'bound') return '';
    const from = el.attrs.from;
    if (from === undefined || from === '' || from === this.#domain) return '';
    const slash = from.indexOf('/');
    const bare = slash === -1 ? from : from.slice(0, slash);
    return bare === this.jid.bare || bare === this.#domain ? '' : bare;
  }

  /** Another party's stanza that is not written: a request or message gets an error back, anything else is dropped. */
  #refuse(el: Element, sender: string, text: string): void {
    const type = el.attrs.type;
    this.#ctx.logger.debug({ what: 'c2s_output_refused', session: this.id, jid: this.jid.full, sender, name: el.name, reason: text }, 'a stanza from another party was not written');
    const bounce = el.name === 'message' ? type !== 'error' : el.name === 'iq' && (type === 'get' || type === 'set');
    if (!bounce) return;
    const from = tryParseJid(el.attrs.from ?? '');
    if (from === null) return;
    // The error carries the stanza's addresses and id, not its payload: the
    // payload is what was too large, and would be refused on the way back.
    this.#ctx.router.routeError(new Element(el.name, el.attrs), from, this.jid, 'resource-constraint', 'wait', text);
  }

  /** Stops (true) or resumes (false) reading this session's input for the event pusher's flow control; idempotent. */
  throttle(on: boolean): void {
    if (this.#state === 'closed') return;
    if (on) (this.#shaper ??= new Shaper(this.#transport, this.#maxRate)).hold(HOLD_FLOW);
    else this.#shaper?.release(HOLD_FLOW);
  }

  /** Resolves true once everything written so far has been taken by the transport, false if the session ends first. */
  drained(): Promise<boolean> {
    return this.#output.drained();
  }

  #sendHeader(): void {
    if (this.#headerSent) return;
    this.#headerSent = true;
    this.#output.write(this.#framing.open(this.#domain || this.#ctx.defaultDomain, randomBytes(8).toString('hex')));
  }

  /**
   * Drops a client that does not read what it is sent (Output found it).
   * Every message stanza the transport has not yet taken, and any sent to it
   * from now on since the session is gone, is routed again: to another
   * resource of the user or to offline storage.
   */
  onSlowReader(reason: string): void {
    this.#drop('c2s_slow_reader', 'slow reader', reason, 'client does not read; disconnected');
  }

  /**
   * Drops a connection found dead (no answer to the server's pings), as a
   * slow reader is dropped: its undelivered messages, and those sent to the
   * user from now on, are routed again.
   */
  disconnect(reason: string): void {
    this.#drop('c2s_dead_connection', 'dead connection', reason, 'client does not answer; disconnected');
  }

  #drop(what: string, cause: string, reason: string, msg: string): void {
    if (this.#state === 'closed') return;
    const pending = this.#output.takeUndelivered();
    // With stream management the unacknowledged stanzas are its to route again (c2s_terminate).
    if (this.#managed) pending.length = 0;
    const bound = this.#state === 'bound';
    this.#ctx.logger.warn({ what, session: this.id, remote: this.remote, jid: bound ? this.jid.full : undefined, reason, rerouted: pending.length }, msg);
    const me = bound ? this.jid : null;
    this.#cleanup(cause);
    // The output cannot reach the client, so no stream error is attempted.
    this.#transport.destroy();
    rerouteUndelivered(this.#ctx.router, this.#ctx.logger, this.id, pending, this.#domain, me);
  }

  // --- closing --------------------------------------------------------------

  #streamError(err: StreamError): void {
    if (this.#state === 'closed') return;
    this.#ctx.metrics?.streamError(err.condition);
    this.#ctx.logger.info({ what: 'c2s_stream_error', session: this.id, remote: this.remote, condition: err.condition, text: err.text }, 'closing the stream with an error');
    // RFC 6120 §4.9.1.1: a stream header first if none was sent yet.
    this.#sendHeader();
    this.#output.write(this.#framing.error(err));
    this.close();
  }

  /** The client ended the stream with a stream error of its own. */
  #peerStreamError(condition: string, text: string | undefined): void {
    if (this.#state === 'closed') return;
    this.#ctx.logger.info(
      { what: 'c2s_stream_error_received', session: this.id, remote: this.remote, jid: this.#state === 'bound' ? this.jid.full : undefined, condition, text },
      'the client ended the stream with an error',
    );
    this.#ctx.metrics?.streamErrorReceived(condition);
    this.close();
  }

  kick(condition: string, text?: string): void {
    this.#streamError(new StreamError(condition, text));
  }

  /** Ends the stream (RFC 6120 §4.4) and the connection. */
  close(): void {
    if (this.#state === 'closed') return;
    if (this.#detached) {
      this.#cleanup('stream closed');
      return;
    }
    if (this.#headerSent) this.#output.write(this.#framing.close());
    this.#output.flush();
    this.#cleanup('stream closed');
    this.#transport.end();
  }

  /** C2SStream.terminate: a session kept without a connection ends now; a connected one closes its stream. */
  terminate(reason: string): void {
    if (this.#detached) this.#cleanup(reason);
    else this.close();
  }

  #cleanup(reason: string): void {
    if (this.#state === 'closed') return;
    const wasBound = this.#state === 'bound';
    this.#state = 'closed';
    this.#detached = false;
    this.#stopStateTimer();
    this.#stopNegotiationTimer();
    this.#output.stop();
    this.#shaper?.stop();
    if (this.#meter !== null) {
      this.#ctx.senderRates!.release(this.jid.bare, this.#meter);
      this.#meter = null;
    }
    if (wasBound) {
      this.#m?.logouts.inc();
      this.#ctx.logger.info({ what: 'c2s_session_ended', session: this.id, jid: this.jid.full, reason }, 'session ended');
    }
    if (wasBound) {
      // A session replaced in the table is gone from it already. Replaced by
      // another resource (max_user_sessions), it still leaves as any other
      // does: its contacts see it unavailable and modules drop what they
      // kept for it (rooms). A successor with the same full JID (a login
      // with its resource, a stream management resumption) takes its place.
      const replaced = !this.#ctx.sm.unregister(this);
      if (!replaced || this.#ctx.sm.byFull(this.jid.full) === undefined) {
        this.#ctx.presence.sessionClosed(this);
        this.#ctx.hooks.run('sm_remove_connection', this.jid.domain, { jid: this.jid, reason });
      }
    }
    // Also for a session replaced in the table: what it still holds is routed again.
    if (wasBound) this.#ctx.hooks.run('c2s_terminate', this.jid.domain, { stream: this, reason });
  }

  // --- extensions of the stream (C2SStream: stream management, CSI) --------

  /** Stream management routes again what the client did not acknowledge (C2SStream.manageDelivery). */
  #managed = false;

  manageDelivery(): void {
    this.#managed = true;
  }

  writeNonza(el: Element): void {
    if (this.#state === 'closed' || this.#detached) return;
    // Without a bound, stanza() always gives the text.
    this.#output.write(this.#framing.stanza(el)!);
  }

  takeOver(old: C2SStream): boolean {
    if (!(old instanceof C2SSession) || old === this || old.#state !== 'bound' || this.#state !== 'bind') return false;
    if (old.jid.local !== this.#username || old.#domain !== this.#domain) return false;
    this.jid = old.jid;
    this.priority = old.priority;
    this.available = old.available;
    this.interested = old.interested;
    this.carbons = old.carbons;
    this.presence = old.presence;
    this.#username = '';
    this.#state = 'bound';
    this.#meterRates();
    this.#managed = old.#managed;
    this.#stopStateTimer();
    this.#ctx.sm.replace(old, this);
    // The old session is out of the table, so its end changes no presence.
    if (old.#detached) old.#cleanup('resumed elsewhere');
    else old.#streamError(new StreamError('conflict', 'the session was resumed on another connection'));
    return true;
  }

  // --- the framing's events -------------------------------------------------

  onStreamClose(): void {
    this.close();
  }

  onStreamError(condition: StreamErrorCondition, text: string): void {
    this.#streamError(new StreamError(condition, text));
  }

  /** A stream header: the first one, or one after a restart (RFC 6120 §4.2, §4.3.3). */
  onStreamOpen(h: StreamHeader): void {
    if (this.#state === 'closed') return;
    const to = h.attrs.to;
    // RFC 6120 §4.7.1: 'to' names the service; without it, the default domain.
    const domain = to === undefined ? this.#ctx.defaultDomain : to.toLowerCase();
    if (this.#domain === '') {
      this.#domain = servedHost(this.#ctx.hosts, domain);
      this.#m = this.#ctx.metrics?.forHost(this.#domain);
    }
    const fault = this.#framing.headerFault(h);
    if (fault !== null) {
      this.#streamError(fault);
      return;
    }
    if (!this.#ctx.hosts.has(domain)) {
      this.#streamError(new StreamError('host-unknown', 'this server does not serve ' + domain));
      return;
    }
    if (domain !== this.#domain) {
      this.#streamError(new StreamError('host-unknown', 'the domain changed on stream restart'));
      return;
    }
    if (h.attrs.version === undefined || !/^1\.\d+$/.test(h.attrs.version)) {
      this.#streamError(new StreamError('unsupported-version', 'XMPP 1.0 streams only'));
      return;
    }
    this.#headerSent = false;
    this.#sendHeader();
    this.#output.write(this.#features());
    this.#m?.out.count.inc();
    if (this.#state === 'header') this.#state = 'auth';
    this.#armStateTimer();
  }

  /** RFC 6120 §4.3.2: what the client may negotiate next. */
  #features(): string {
    let f = '';
    if (this.#state === 'header' || this.#state === 'auth') {
      const t = this.#transport;
      const required = this.#tlsRequired;
      // Only where the transport can upgrade (RFC 7395 §3.8: never over WebSocket).
      if (!t.secure && t.startTls !== undefined) f += `<starttls xmlns='${NS_TLS}'>${required ? '<required/>' : ''}</starttls>`;
      // As in MongooseIM: with STARTTLS required, no SASL is offered before TLS.
      if (t.secure || !required) {
        f += `<mechanisms xmlns='${NS_SASL}'>`;
        for (const m of this.#ctx.mechanisms) f += `<mechanism>${m}</mechanism>`;
        f += '</mechanisms>';
      }
    } else if (this.#state === 'bind') {
      f += `<bind xmlns='${NS_BIND}'/><session xmlns='${NS_SESSION}'><optional/></session>`;
      const more = this.#ctx.hooks.fold('c2s_stream_features', this.#domain, { stream: this }, '');
      if (typeof more === 'string') f += more;
    }
    return this.#framing.features(f);
  }

  /** One first-level element, handled by what the current state accepts. */
  onStanza(el: Element): void {
    // RFC 6120 §4.9: a stream error is not a stanza and is understood in any
    // state; the stream is over, so this side ends it too (§4.4) and sends
    // no error of its own.
    if (el.name.endsWith('error')) {
      const received = receivedStreamError(el);
      if (received !== null) {
        this.#peerStreamError(received.condition, received.text);
        return;
      }
    }
    if (this.#m !== undefined) countElement(this.#m.in, el.name, el.attrs.type === 'error');
    switch (this.#state) {
      case 'auth':
        this.#armStateTimer();
        this.#preAuth(el);
        return;
      case 'bind':
        // A nonza a handler answers (a failed <resume/>, ...) is not a step:
        // state_timeout runs on, so retries cannot keep an unbound stream.
        if (!this.#ctx.hooks.run('user_send_xmlel', this.#domain, { stream: this, el })) return;
        // A handler may have resumed a session here (XEP-0198), or closed the stream.
        if (this.state !== 'bind') return;
        this.#armStateTimer();
        if (el.name === 'iq' && el.attrs.type === 'set' && el.getChild('bind', NS_BIND) !== undefined) {
          this.#bind(el);
        } else {
          this.#streamError(new StreamError('not-authorized', 'bind a resource first'));
        }
        return;
      case 'bound':
        if (!this.#ctx.hooks.run('user_send_xmlel', this.#domain, { stream: this, el })) return;
        if (this.state === 'bound') this.#established(el);
        return;
    }
  }

  // --- before authentication: STARTTLS and SASL -----------------------------

  #preAuth(el: Element): void {
    const xmlns = el.attrs.xmlns;
    if (el.name === 'starttls' && xmlns === NS_TLS) {
      this.#starttls();
      return;
    }
    if (xmlns === NS_SASL) {
      this.#negotiate(el);
      return;
    }
    // RFC 6120 §6.4: nothing but TLS and SASL negotiation before authentication.
    this.#streamError(new StreamError('not-authorized', 'authenticate first'));
  }

  #starttls(): void {
    const t = this.#transport;
    if (t.secure || t.startTls === undefined) {
      this.#output.write(`<failure xmlns='${NS_TLS}'/>`);
      this.close();
      return;
    }
    this.#output.write(`<proceed xmlns='${NS_TLS}'/>`);
    // <proceed/> goes out in plaintext, before the handshake.
    this.#output.flush();
    // The handshake has its own limit (tls.handshake_timeout); state_timeout resumes after it.
    this.#stopStateTimer();
    // RFC 6120 §5.4.3.3: nothing negotiated before TLS carries over, and the
    // stream restarts over TLS; the rest of this read is dropped with the old stream.
    this.#sasl?.reset();
    this.#headerSent = false;
    this.#framing.restart(false);
    t.startTls().then(
      () => this.#armStateTimer(),
      () => {},
    );
  }

  #negotiate(el: Element): void {
    const sasl = (this.#sasl ??= new SaslNegotiation(this.#ctx, this, this.#domain, clientAddress(this.#transport.remoteAddress), this.#tlsRequired));
    const outcome = sasl.handle(el, this.#transport.secure);
    if (!(outcome instanceof Promise)) {
      this.#saslOutcome(outcome);
      return;
    }
    outcome.then((o) => {
      if (o === null || this.#state !== 'auth' || this.#sasl !== sasl) return;
      this.#armStateTimer();
      this.#saslOutcome(o);
    });
  }

  #saslOutcome(o: SaslOutcome): void {
    if (o.xml !== '') {
      this.#output.write(o.xml);
      this.#m?.out.count.inc();
    }
    if (o.kind === 'fatal') {
      this.#streamError(o.error);
    } else if (o.kind === 'success') {
      this.#sasl = null;
      this.#username = o.username;
      const rateFor = this.#ctx.rateFor;
      if (rateFor !== undefined) {
        this.#maxRate = rateFor({ local: o.username, domain: this.#domain, resource: '' });
        this.#shaper?.setRate(this.#maxRate);
      }
      this.#state = 'bind';
      this.#armStateTimer();
      // RFC 6120 §6.4.6: the client opens a new stream. SASL outcomes that
      // end an exchange come in a promise callback, never inside the
      // framing's input, so nothing of the old stream is left to drop.
      this.#headerSent = false;
      this.#framing.restart(true);
    }
  }

  // --- resource binding (RFC 6120 §7) ---------------------------------------

  #bind(iq: Element): void {
    const asked = iq.getChild('bind', NS_BIND)!.getChildText('resource');
    let resource: string;
    try {
      resource = asked !== undefined && asked !== '' ? resourceprep(asked) : randomBytes(6).toString('hex');
    } catch {
      this.send(errorReply(iq, new StanzaError('bad-request', 'modify', 'invalid resource')));
      return;
    }
    let jid: JID;
    try {
      jid = makeJid(this.#username, this.#domain, resource);
    } catch {
      this.send(errorReply(iq, new StanzaError('bad-request', 'modify', 'invalid resource')));
      return;
    }
    const rule = this.#ctx.accessRule;
    if (rule !== undefined && rule !== 'all' && this.#ctx.access?.match(rule, { local: jid.local, domain: jid.domain, resource: jid.resource }) !== 'allow') {
      // As MongooseIM: the listener's access rule refuses the session; the
      // client may bind again (state_timeout still runs).
      this.#ctx.logger.info({ what: 'forbidden_session', session: this.id, remote: this.remote, jid: jid.full, rule }, 'user not allowed to open a session');
      this.send(errorReply(iq, new StanzaError('not-allowed', 'cancel', 'access denied by the listener\'s access rule')));
      return;
    }
    this.jid = jid;
    // The JID holds the user name from now on.
    this.#username = '';
    this.#state = 'bound';
    this.#meterRates();
    this.#stopStateTimer();
    this.#stopNegotiationTimer();
    this.#ctx.sm.register(this);
    const reply = new Element('iq', { type: 'result', id: iq.attrs.id });
    reply.c('bind', { xmlns: NS_BIND }).c('jid').t(jid.full);
    this.send(reply);
    this.#m?.logins.inc();
    this.#ctx.logger.info({ what: 'c2s_resource_bound', session: this.id, remote: this.remote, jid: jid.full }, 'resource bound');
    this.#ctx.hooks.run('sm_register_connection', jid.domain, { jid });
  }

  // --- an established session: stanzas into the hooks and the router -------

  routed(): Promise<void> | undefined {
    if (this.#pending === null && this.#busy === null) return undefined;
    return new Promise<void>((resolve) => this.#enqueue(undefined, resolve));
  }

  /** Parses the next slice of input at the next turn (once: a backlog that drains twice meanwhile schedules it once). */
  #queueSlice(): void {
    if (this.#sliceQueued) return;
    this.#sliceQueued = true;
    setImmediate(C2SSession.#nextSlice, this);
  }

  /** Queues a routing step behind those already waiting; `barrier` must settle first. */
  #enqueue(barrier: Promise<unknown> | undefined, run: () => void): void {
    const entry = { ready: barrier === undefined, run };
    const pending = (this.#pending ??= []);
    pending.push(entry);
    if (pending.length >= this.#pause) (this.#shaper ??= new Shaper(this.#transport, this.#maxRate)).hold(HOLD_BACKLOG);
    if (barrier === undefined) {
      this.#drain();
      return;
    }
    barrier.then(
      () => {
        entry.ready = true;
        this.#drain();
      },
      (err) => {
        this.#ctx.logger.error({ what: 'c2s_barrier_failed', session: this.id, err: String(err) }, 'a hook could not finish before routing; routing anyway');
        entry.ready = true;
        this.#drain();
      },
    );
  }

  #drain(): void {
    const pending = this.#pending;
    if (pending === null) return;
    let i = 0;
    while (i < pending.length && pending[i]!.ready && this.#busy === null) {
      if (this.#state === 'closed') break;
      pending[i++]!.run();
    }
    pending.splice(0, i);
    if (pending.length === 0 || this.#state === 'closed') this.#pending = null;
    if (this.#state !== 'closed' && (this.#pending === null || this.#pending.length < this.#pause)) {
      this.#shaper?.release(HOLD_BACKLOG);
      // Input read while the backlog was full is parsed again.
      if (this.#slices !== null) this.#queueSlice();
    }
  }

  #established(el: Element): void {
    const name = el.name;
    if (name !== 'message' && name !== 'presence' && name !== 'iq') {
      this.#streamError(new StreamError('unsupported-stanza-type', `<${name}/> is not a stanza`));
      return;
    }
    const me = this.jid;
    const claimed = el.attrs.from;
    // RFC 6120 §8.1.2.1: a 'from' that is not the sender's own JID is refused.
    if (claimed !== undefined && claimed !== me.full && claimed !== me.bare) {
      const j = tryParseJid(claimed);
      if (j === null || (j.full !== me.full && j.full !== me.bare)) {
        this.#streamError(new StreamError('invalid-from', 'the from attribute does not match the authenticated JID'));
        return;
      }
    }
    el.attrs.from = me.full;
    const rawTo = el.attrs.to;
    let to: JID | null = null;
    if (rawTo !== undefined) {
      to = tryParseJid(rawTo);
      if (to === null) {
        if (el.attrs.type !== 'error') this.send(errorReply(el, new StanzaError('jid-malformed', 'modify', 'the to address is not a valid JID')));
        return;
      }
    }
    if (name === 'iq') {
      const type = el.attrs.type;
      if (type !== 'get' && type !== 'set' && type !== 'result' && type !== 'error') {
        this.send(errorReply(el, new StanzaError('bad-request', 'modify', 'an IQ needs a type')));
        return;
      }
      if (to === null && type === 'set' && el.getChild('session', NS_SESSION) !== undefined) {
        // Legacy session establishment (RFC 3921 §3), kept for old clients.
        this.send(new Element('iq', { type: 'result', id: el.attrs.id, from: this.#domain }));
        return;
      }
      if (to === null && type === 'get' && el.getChild('query', 'jabber:iq:roster') !== undefined && !this.interested) {
        this.interested = true;
        this.#ctx.sm.changed(this);
      }
    }
    const target = to ?? (name === 'iq' ? null : me.bareJid());
    const acc = this.#ctx.router.newAcc(me, target ?? me.bareJid(), el);
    const hooks = this.#ctx.hooks;
    if (!hooks.run('user_send_packet', me.domain, { acc, from: me, to: acc.to, packet: el })) return;
    let barrier: Barrier;
    if (name === 'message') {
      const r = hooks.fold('user_send_message', me.domain, { acc, from: me, to: acc.to, packet: el }, undefined);
      if (r === STOP) return;
      barrier = r;
    }
    if (this.#pending === null && barrier === undefined && this.#busy === null) this.#route(el, to, acc);
    else this.#enqueue(barrier, () => this.#route(el, to, acc));
  }

  #route(el: Element, to: JID | null, acc: Acc): void {
    const me = this.jid;
    if (el.name === 'message') this.#ctx.router.route(me, acc.to, el, acc);
    else if (el.name === 'presence') {
      const busy = this.#ctx.presence.outbound(this, el, to, acc);
      if (busy !== undefined) {
        // Later stanzas are routed once this one's broadcast has ended.
        this.#busy = busy;
        busy.then(() => {
          if (this.#busy === busy) this.#busy = null;
          this.#drain();
        });
      }
    }
    else if (to === null) this.#ctx.router.handleOwnIq(me, el, this);
    else this.#ctx.router.route(me, to, el, acc);
  }
}

/** The served domain's own string (not one cut out of the client's input), or '' when it is not served. */
function servedHost(hosts: ReadonlySet<string>, domain: string): string {
  for (const h of hosts) if (h === domain) return h;
  return '';
}
