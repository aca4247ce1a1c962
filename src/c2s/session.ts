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
import type { Acc, Barrier } from '../hooks/catalogue.ts';
import { STOP } from '../hooks/hooks.ts';
import type { Router } from '../routing/router.ts';
import type { Presence, PresenceSession } from '../routing/presence.ts';
import type { SessionManager } from '../routing/sm.ts';
import { Element } from '../xmpp/xml.ts';
import { StreamError, StanzaError, errorReply, type StreamErrorCondition } from '../xmpp/errors.ts';
import { JID, makeJid, tryParseJid } from '../xmpp/jid.ts';
import { resourceprep } from '../xmpp/stringprep.ts';
import { NS_BIND, NS_SASL, NS_SESSION, NS_TLS } from '../xmpp/ns.ts';
import { clientAddress, type AuthBans } from './auth-bans.ts';
import type { Transport, TransportEvents } from './transport.ts';
import type { Framing, FramingEvents, FramingFactory, FramingLimits, StreamHeader } from './framing.ts';
import { OUTPUT_CHUNK, Output, rerouteUndelivered, type OutputEvents } from './output.ts';
import { HOLD_BACKLOG, HOLD_SLICE, Shaper } from './shaper.ts';
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
  /** Failed logins per client address, shared by all listeners; absent: no per-address limit. */
  authBans?: AuthBans;
  /** Called once the session's connection has closed. */
  released?: (s: C2SSession) => void;
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
}

/** The parser limits of a listener: `maxStanzaSize` (max_stanza_size, 0 = none) after authentication, the tighter pre-auth limits before. */
export function framingLimits(maxStanzaSize: number, limits: C2SLimits): FramingLimits {
  const { maxDepth, preAuthStanzaSize: pre, preAuthElements } = limits;
  return {
    preAuth: { maxStanzaSize: maxStanzaSize > 0 ? Math.min(maxStanzaSize, pre) : pre, maxDepth, maxElements: preAuthElements },
    authed: { maxStanzaSize, maxDepth },
  };
}

export type SessionState = 'header' | 'auth' | 'bind' | 'bound' | 'closed';

/**
 * Bytes of one read a bound session handles per turn of the event loop; the
 * rest waits for the next turn, with reading held meanwhile. A read can be
 * 64 KiB of stanzas that are each costly to prepare (long JIDs that need
 * Unicode normalisation): handled at once, it would hold every other
 * connection's traffic for that long.
 */
const INPUT_SLICE = 8192;

/** Routing steps allowed to wait before the transport stops being read. */
const PENDING_PAUSE = 256;

let sessionCounter = 0;

export class C2SSession implements PresenceSession, TransportEvents, FramingEvents, OutputEvents {
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
  /** When input is read; made only once a shaper or the routing backlog needs it. */
  #shaper: Shaper | null = null;
  /**
   * Routing steps waiting, in the order the stanzas came, behind a stanza
   * whose user_send_message handlers set a barrier (the outbox write). Later
   * stanzas still run their hooks at once, so their writes join the same
   * batch; only their routing waits.
   */
  #pending: Array<{ ready: boolean; run: () => void }> | null = null;
  /** A presence broadcast of this session still running: later routing steps wait for it. */
  #busy: Promise<void> | null = null;
  /** The rest of a large read, handled a slice per turn (null: none waiting). */
  #slices: Uint8Array[] | null = null;
  readonly id: number;

  jid!: JID;
  priority = 0;
  available = false;
  interested = false;
  presence: Element | null = null;

  constructor(transport: Transport, ctx: C2SContext) {
    this.#transport = transport;
    this.#ctx = ctx;
    this.id = ++sessionCounter;
    this.#framing = ctx.framing(this, ctx.framingLimits);
    this.#output = new Output(transport, ctx.limits, this, this.#framing.elementPerWrite);
    transport.attach(this);
    const banned = ctx.authBans?.bannedFor(clientAddress(transport.remoteAddress)) ?? 0;
    if (banned > 0) {
      // Refused before any negotiation, so a banned address cannot even try.
      this.#streamError(new StreamError('policy-violation', `too many failed logins from this address; try again in ${Math.ceil(banned / 1000)} s`));
      return;
    }
    this.#armStateTimer();
  }

  get state(): SessionState {
    return this.#state;
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

  #stopStateTimer(): void {
    if (this.#stateTimer !== null) clearTimeout(this.#stateTimer);
    this.#stateTimer = null;
  }

  // --- the transport's events -----------------------------------------------

  onData(data: Uint8Array): void {
    const rate = this.#ctx.maxRate;
    if (rate > 0) (this.#shaper ??= new Shaper(this.#transport, rate)).received(data.length);
    if (this.#slices !== null) this.#slices.push(data);
    else this.#input(data);
  }

  /**
   * Hands `data` to the framing, a slice per turn once bound (INPUT_SLICE).
   * Before binding the whole read goes at once: a stream restart (STARTTLS,
   * SASL) drops the rest of the read it happened in, so a read must not be
   * cut there.
   */
  #input(data: Uint8Array): void {
    if (this.#state !== 'bound' || data.length <= INPUT_SLICE) {
      this.#framing.input(data);
      return;
    }
    this.#framing.input(data.subarray(0, INPUT_SLICE));
    if ((this.#state as SessionState) === 'closed') return;
    this.#slices = [data.subarray(INPUT_SLICE)];
    (this.#shaper ??= new Shaper(this.#transport, this.#ctx.maxRate)).hold(HOLD_SLICE);
    setImmediate(C2SSession.#nextSlice, this);
  }

  static #nextSlice(s: C2SSession): void {
    const slices = s.#slices;
    if (slices === null || s.#state === 'closed') {
      s.#slices = null;
      return;
    }
    const next = slices[0]!;
    if (next.length > INPUT_SLICE) {
      slices[0] = next.subarray(INPUT_SLICE);
      s.#framing.input(next.subarray(0, INPUT_SLICE));
    } else {
      slices.shift();
      s.#framing.input(next);
    }
    if ((s.#state as SessionState) === 'closed') {
      s.#slices = null;
      return;
    }
    if (slices.length > 0) {
      setImmediate(C2SSession.#nextSlice, s);
      return;
    }
    s.#slices = null;
    s.#shaper?.release(HOLD_SLICE);
  }

  onEnd(): void {
    this.close();
  }

  onError(err: Error): void {
    this.#ctx.logger.debug({ what: 'c2s_socket_error', session: this.id, err: err.message }, 'socket error');
  }

  onClose(): void {
    this.#cleanup('closed');
    this.#ctx.released?.(this);
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
    if (sender !== '') {
      const s = this.#framing.stanza(el, this.#ctx.limits.maxOutputBuffer);
      if (s === null) {
        this.#refuse(el, sender, 'the stanza is too large once serialised');
        return;
      }
      if (!this.#output.admits(sender, s.length)) {
        this.#refuse(el, sender, 'the recipient is not reading fast enough');
        return;
      }
      this.#output.foreign(isMessage ? el : null, sender, s);
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
    if (this.#state === 'closed') return;
    const pending = this.#output.takeUndelivered();
    const bound = this.#state === 'bound';
    this.#ctx.logger.warn(
      { what: 'c2s_slow_reader', session: this.id, remote: this.remote, jid: bound ? this.jid.full : undefined, reason, rerouted: pending.length },
      'client does not read; disconnected',
    );
    const me = bound ? this.jid : null;
    this.#cleanup('slow reader');
    // The output cannot reach the client, so no stream error is attempted.
    this.#transport.destroy();
    rerouteUndelivered(this.#ctx.router, this.#ctx.logger, this.id, pending, this.#domain, me);
  }

  // --- closing --------------------------------------------------------------

  #streamError(err: StreamError): void {
    if (this.#state === 'closed') return;
    this.#ctx.logger.info({ what: 'c2s_stream_error', session: this.id, remote: this.remote, condition: err.condition, text: err.text }, 'closing the stream with an error');
    // RFC 6120 §4.9.1.1: a stream header first if none was sent yet.
    this.#sendHeader();
    this.#output.write(this.#framing.error(err));
    this.close();
  }

  kick(condition: string, text?: string): void {
    this.#streamError(new StreamError(condition, text));
  }

  /** Ends the stream (RFC 6120 §4.4) and the connection. */
  close(): void {
    if (this.#state === 'closed') return;
    if (this.#headerSent) this.#output.write(this.#framing.close());
    this.#output.flush();
    this.#cleanup('stream closed');
    this.#transport.end();
  }

  #cleanup(reason: string): void {
    if (this.#state === 'closed') return;
    const wasBound = this.#state === 'bound';
    this.#state = 'closed';
    this.#stopStateTimer();
    this.#output.stop();
    this.#shaper?.stop();
    if (wasBound && this.#ctx.sm.unregister(this)) {
      this.#ctx.presence.sessionClosed(this);
      this.#ctx.hooks.run('sm_remove_connection', this.jid.domain, { jid: this.jid, reason });
    }
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
    if (this.#domain === '') this.#domain = servedHost(this.#ctx.hosts, domain);
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
    if (this.#state === 'header') this.#state = 'auth';
    this.#armStateTimer();
  }

  /** RFC 6120 §4.3.2: what the client may negotiate next. */
  #features(): string {
    let f = '';
    if (this.#state === 'header' || this.#state === 'auth') {
      const t = this.#transport;
      const required = this.#ctx.tlsRequired;
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
    }
    return this.#framing.features(f);
  }

  /** One first-level element, handled by what the current state accepts. */
  onStanza(el: Element): void {
    switch (this.#state) {
      case 'auth':
        this.#armStateTimer();
        this.#preAuth(el);
        return;
      case 'bind':
        this.#armStateTimer();
        if (el.name === 'iq' && el.attrs.type === 'set' && el.getChild('bind', NS_BIND) !== undefined) {
          this.#bind(el);
        } else {
          this.#streamError(new StreamError('not-authorized', 'bind a resource first'));
        }
        return;
      case 'bound':
        this.#established(el);
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
    const sasl = (this.#sasl ??= new SaslNegotiation(this.#ctx, this, this.#domain, clientAddress(this.#transport.remoteAddress)));
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
    if (o.xml !== '') this.#output.write(o.xml);
    if (o.kind === 'fatal') {
      this.#streamError(o.error);
    } else if (o.kind === 'success') {
      this.#sasl = null;
      this.#username = o.username;
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
    this.jid = jid;
    // The JID holds the user name from now on.
    this.#username = '';
    this.#state = 'bound';
    this.#stopStateTimer();
    this.#ctx.sm.register(this);
    const reply = new Element('iq', { type: 'result', id: iq.attrs.id });
    reply.c('bind', { xmlns: NS_BIND }).c('jid').t(jid.full);
    this.send(reply);
    this.#ctx.hooks.run('sm_register_connection', jid.domain, { jid });
  }

  // --- an established session: stanzas into the hooks and the router -------

  /** Queues a routing step behind those already waiting; `barrier` must settle first. */
  #enqueue(barrier: Promise<unknown> | undefined, run: () => void): void {
    const entry = { ready: barrier === undefined, run };
    const pending = (this.#pending ??= []);
    pending.push(entry);
    if (pending.length >= PENDING_PAUSE) (this.#shaper ??= new Shaper(this.#transport, this.#ctx.maxRate)).hold(HOLD_BACKLOG);
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
    if (this.#state !== 'closed' && (this.#pending === null || this.#pending.length < PENDING_PAUSE)) this.#shaper?.release(HOLD_BACKLOG);
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
      if (to === null && type === 'get' && el.getChild('query', 'jabber:iq:roster') !== undefined) this.interested = true;
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
