// One client-to-server connection: the XML stream (RFC 6120 §4), STARTTLS
// (§5), SASL (§6), resource binding (§7), then stanzas until the stream ends.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Hooks } from '../hooks/hooks.ts';
import type { Acc, Barrier } from '../hooks/catalogue.ts';
import { STOP } from '../hooks/hooks.ts';
import type { C2SListenerConfig } from '../config/types.ts';
import type { UserStore } from '../storage/types.ts';
import type { Router } from '../routing/router.ts';
import type { Presence, PresenceSession } from '../routing/presence.ts';
import type { SessionManager } from '../routing/sm.ts';
import { Element, escapeAttr, serialize } from '../xmpp/xml.ts';
import { StreamParser, type StreamHeader, type StreamParserEvents, type StreamParserLimits } from '../xmpp/stream-parser.ts';
import { StreamError, StanzaError, errorReply } from '../xmpp/errors.ts';
import { JID, makeJid, tryParseJid } from '../xmpp/jid.ts';
import { resourceprep } from '../xmpp/stringprep.ts';
import { NS_BIND, NS_CLIENT, NS_SASL, NS_SESSION, NS_STREAM, NS_TLS } from '../xmpp/ns.ts';
import { createSaslServer, isSaslMechanism, type SaslMechanismName, type SaslServer } from '../xmpp/sasl/index.ts';
import { clientAddress, type AuthBans } from './auth-bans.ts';

export interface C2SContext {
  listener: C2SListenerConfig;
  hosts: ReadonlySet<string>;
  defaultDomain: string;
  /** SASL mechanisms offered, in order. */
  mechanisms: readonly SaslMechanismName[];
  /** Shown to unknown users too, so a SCRAM exchange does not reveal whether an account exists. */
  scramIterations: number;
  users: UserStore;
  sm: SessionManager;
  router: Router;
  presence: Presence;
  hooks: Hooks;
  logger: Logger;
  tls: SecureContext | null;
  limits: C2SLimits;
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

type State = 'header' | 'auth' | 'bind' | 'bound' | 'closed';

const SASL_ERRORS = new Set(['aborted', 'account-disabled', 'credentials-expired', 'encryption-required', 'incorrect-encoding', 'invalid-authzid', 'invalid-mechanism', 'malformed-request', 'mechanism-too-weak', 'not-authorized', 'temporary-auth-failure']);

let sessionCounter = 0;

/**
 * The session a socket belongs to. One set of listener functions then serves
 * every connection, instead of a closure per event per connection.
 */
const SESSION = Symbol('c2s session');
type SessionSocket = Socket & { [SESSION]?: C2SSession };

/** Token bucket of a shaped connection (bytes, and when it was last refilled). */
interface Bucket {
  tokens: number;
  at: number;
}

export class C2SSession implements PresenceSession {
  #socket: Socket;
  #ctx: C2SContext;
  #parser!: StreamParser;
  #state: State = 'header';
  #secure: boolean;
  #domain = '';
  #headerSent = false;
  #sasl: SaslServer | null = null;
  #authFailures = 0;
  #username = '';
  #out = '';
  #flushQueued = false;
  #stateTimer: NodeJS.Timeout | null = null;
  /** Message stanzas serialised into #out and not yet handed to the socket. */
  #outMessages: Element[] = NO_MESSAGES;
  /** Message stanzas of each socket write not yet completed, oldest write first (null: no write pending). */
  #inFlight: Element[][] | null = null;
  #sendTimer: NodeJS.Timeout | null = null;
  /**
   * While the send timer runs: when a socket write last completed (or output
   * last started waiting), in whole ms, so it stays a small integer.
   */
  #lastProgress = 0;
  /**
   * Routing steps waiting, in the order the stanzas came, behind a stanza
   * whose user_send_message handlers set a barrier (the outbox write). Later
   * stanzas still run their hooks at once, so their writes join the same
   * batch; only their routing waits.
   */
  #pending: Array<{ ready: boolean; run: () => void }> | null = null;
  readonly id: number;

  jid!: JID;
  priority = 0;
  available = false;
  interested = false;
  presence: Element | null = null;

  constructor(socket: Socket, ctx: C2SContext, secure: boolean) {
    this.#socket = socket;
    this.#ctx = ctx;
    this.#secure = secure;
    this.id = ++sessionCounter;
    socket.setNoDelay(true);
    this.#newParser();
    this.#attach(socket);
    const banned = ctx.authBans?.bannedFor(this.#ip()) ?? 0;
    if (banned > 0) {
      // Refused before any negotiation, so a banned address cannot even try.
      this.#streamError(new StreamError('policy-violation', `too many failed logins from this address; try again in ${Math.ceil(banned / 1000)} s`));
      return;
    }
    this.#armStateTimer();
  }

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
    this.#stateTimer = setTimeout(() => this.#streamError(new StreamError('connection-timeout', `no answer within ${ms} ms`)), ms);
    this.#stateTimer.unref();
  }

  #stopStateTimer(): void {
    if (this.#stateTimer !== null) clearTimeout(this.#stateTimer);
    this.#stateTimer = null;
  }

  get state(): State {
    return this.#state;
  }

  /** The client's address and port, for logs. */
  get remote(): string {
    return `${this.#socket.remoteAddress}:${this.#socket.remotePort}`;
  }

  /** The client's address, as auth bans count it. */
  #ip(): string {
    return clientAddress(this.#socket.remoteAddress);
  }

  #attach(socket: Socket): void {
    (socket as SessionSocket)[SESSION] = this;
    socket.on('data', C2SSession.#onSocketData);
    socket.on('error', C2SSession.#onSocketError);
    socket.on('close', C2SSession.#onSocketClose);
    socket.on('end', C2SSession.#onSocketEnd);
  }

  #detach(socket: Socket): void {
    socket.off('data', C2SSession.#onSocketData);
    socket.off('error', C2SSession.#onSocketError);
    socket.off('close', C2SSession.#onSocketClose);
    socket.off('end', C2SSession.#onSocketEnd);
    (socket as SessionSocket)[SESSION] = undefined;
  }

  static #onSocketData(this: Socket, chunk: Buffer): void {
    const s = (this as SessionSocket)[SESSION];
    if (s !== undefined) s.#onData(chunk);
  }

  static #onSocketError(this: Socket, err: Error): void {
    const s = (this as SessionSocket)[SESSION];
    if (s !== undefined) s.#ctx.logger.debug({ what: 'c2s_socket_error', session: s.id, err: err.message }, 'socket error');
  }

  static #onSocketEnd(this: Socket): void {
    (this as SessionSocket)[SESSION]?.close();
  }

  static #onSocketClose(this: Socket): void {
    const s = (this as SessionSocket)[SESSION];
    if (s === undefined) return;
    s.#cleanup('closed');
    s.#ctx.released?.(s);
  }

  /** Passes parser events on to a session: one small object per parser rather than a closure per event. */
  static #ParserEvents = class implements StreamParserEvents {
    readonly #s: C2SSession;
    constructor(s: C2SSession) {
      this.#s = s;
    }
    onHeader(h: StreamHeader): void {
      this.#s.#onHeader(h);
    }
    onStanza(el: Element): void {
      this.#s.#onStanza(el);
    }
    onEnd(): void {
      this.#s.close();
    }
    onError(condition: Parameters<StreamParserEvents['onError']>[0], text: string): void {
      this.#s.#streamError(new StreamError(condition, text));
    }
  };

  #newParser(): void {
    const authed = this.#state === 'bind' || this.#state === 'bound';
    this.#parser = new StreamParser(new C2SSession.#ParserEvents(this), parserLimits(this.#ctx, authed));
  }

  /** Shaped connections only: the traffic shaper's token bucket. */
  #bucket: Bucket | null = null;

  #onData(chunk: Buffer): void {
    this.#parser.write(chunk);
    const rate = this.#ctx.maxRate;
    if (rate > 0) this.#shape(chunk.length, rate);
  }

  /**
   * A shaper pauses reading instead of buffering (as MongooseIM's does): past
   * the allowed rate, the socket stops being read until the budget refills,
   * and TCP flow control slows the sender down.
   */
  #shape(bytes: number, rate: number): void {
    const now = performance.now();
    // The bucket starts full.
    const b = (this.#bucket ??= { tokens: rate, at: now });
    // One second of burst at most.
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) * rate) / 1000) - bytes;
    b.at = now;
    if (b.tokens >= 0) return;
    const socket = this.#socket;
    socket.pause();
    setTimeout(() => {
      if (this.#state !== 'closed' && (this.#pending === null || this.#pending.length < PENDING_PAUSE)) socket.resume();
    }, Math.ceil((-b.tokens * 1000) / rate)).unref();
  }

  // --- output -------------------------------------------------------------

  #write(s: string): void {
    if (this.#state === 'closed') return;
    this.#out += s;
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      // Everything produced while handling one chunk of input goes out in one write.
      const queue = C2SSession.#toFlush;
      if (queue.length === 0) queueMicrotask(C2SSession.#flushAll);
      queue.push(this);
    }
  }

  /** Sessions with output to hand to their sockets at the end of this turn. */
  static #toFlush: C2SSession[] = [];

  static #flushAll(): void {
    const queue = C2SSession.#toFlush;
    let i = 0;
    try {
      // Sessions given output meanwhile are appended and written in this same round.
      while (i < queue.length) queue[i++]!.#flush();
    } finally {
      queue.splice(0, i);
      if (queue.length > 0) queueMicrotask(C2SSession.#flushAll);
    }
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#out.length === 0) return;
    const out = this.#out;
    this.#out = '';
    const messages = this.#outMessages.length === 0 ? NO_MESSAGES : this.#outMessages;
    if (messages !== NO_MESSAGES) this.#outMessages = NO_MESSAGES;
    const socket = this.#socket;
    if (socket.destroyed) return;
    const waiting = socket.writableLength;
    // A client that does not read: output already waits and this would take
    // it past the cap. (A burst onto an empty buffer is let through, so a
    // reading client is never cut off by one large hand-over.)
    if (waiting > 0 && waiting + out.length > this.#ctx.limits.maxOutputBuffer && this.#state !== 'closed') {
      this.#outMessages = messages;
      this.#slowReader(`more than ${this.#ctx.limits.maxOutputBuffer} bytes wait to be sent`);
      return;
    }
    (this.#inFlight ??= []).push(messages);
    socket.write(out, () => this.#onWritten());
    if (socket.writableLength > 0 && this.#sendTimer === null && this.#ctx.limits.sendTimeout > 0 && this.#state !== 'closed') {
      this.#lastProgress = nowMs();
      this.#sendTimer = setTimeout(() => this.#checkSend(), this.#ctx.limits.sendTimeout);
      this.#sendTimer.unref();
    }
  }

  /** Socket writes complete in order: the oldest one is done. */
  #onWritten(): void {
    const inFlight = this.#inFlight;
    if (inFlight !== null) {
      inFlight.shift();
      if (inFlight.length === 0) this.#inFlight = null;
    }
    // Progress only matters while the send timer runs; it was set when the timer started.
    if (this.#sendTimer !== null) this.#lastProgress = nowMs();
  }

  #checkSend(): void {
    this.#sendTimer = null;
    if (this.#state === 'closed' || this.#socket.writableLength === 0) return;
    const limit = this.#ctx.limits.sendTimeout;
    const idle = nowMs() - this.#lastProgress;
    if (idle >= limit) {
      this.#slowReader(`nothing could be sent for ${limit} ms`);
      return;
    }
    this.#sendTimer = setTimeout(() => this.#checkSend(), Math.ceil(limit - idle));
    this.#sendTimer.unref();
  }

  /**
   * Drops a client that does not read what it is sent. Every message stanza
   * the operating system has not yet accepted for this connection (and any
   * sent to it from now on, since the session is gone) is routed again: to
   * another resource of the user or to offline storage. Messages already
   * accepted by the operating system count as delivered, as with any
   * connection that breaks without stream management (XEP-0198).
   */
  #slowReader(reason: string): void {
    if (this.#state === 'closed') return;
    const pending: Element[] = [];
    for (const batch of this.#inFlight ?? []) for (const m of batch) pending.push(m);
    for (const m of this.#outMessages) pending.push(m);
    this.#inFlight = null;
    this.#outMessages = NO_MESSAGES;
    this.#out = '';
    this.#ctx.logger.warn(
      { what: 'c2s_slow_reader', session: this.id, remote: this.remote, jid: this.#state === 'bound' ? this.jid.full : undefined, reason, rerouted: pending.length },
      'client does not read; disconnected',
    );
    const me = this.#state === 'bound' ? this.jid : null;
    this.#cleanup('slow reader');
    // The output cannot reach the client, so no stream error is attempted.
    this.#socket.destroy();
    const router = this.#ctx.router;
    for (const m of pending) {
      const from = tryParseJid(m.attrs.from ?? '') ?? tryParseJid(this.#domain);
      const to = tryParseJid(m.attrs.to ?? '') ?? me;
      if (from === null || to === null) continue;
      try {
        router.route(from, to, m);
      } catch (err) {
        this.#ctx.logger.error({ what: 'c2s_reroute_failed', session: this.id, err: String(err) }, 'could not route an undelivered message again');
      }
    }
  }

  send(el: Element): void {
    if (this.#state === 'closed') return;
    // Messages are remembered until the socket has taken them (see #slowReader).
    if (el.name === 'message') {
      if (this.#outMessages === NO_MESSAGES) this.#outMessages = [];
      this.#outMessages.push(el);
    }
    this.#write(serialize(el));
  }

  #sendHeader(): void {
    if (this.#headerSent) return;
    this.#headerSent = true;
    const id = randomBytes(8).toString('hex');
    const from = this.#domain || this.#ctx.defaultDomain;
    this.#write(`<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' id='${id}' from='${escapeAttr(from)}' version='1.0' xml:lang='en'>`);
  }

  #streamError(err: StreamError): void {
    if (this.#state === 'closed') return;
    this.#ctx.logger.info({ what: 'c2s_stream_error', session: this.id, remote: this.remote, condition: err.condition, text: err.text }, 'closing the stream with an error');
    this.#sendHeader();
    this.#write(err.toXml());
    this.close();
  }

  kick(condition: string, text?: string): void {
    this.#streamError(new StreamError(condition, text));
  }

  /** Ends the stream (RFC 6120 §4.4) and the connection. */
  close(): void {
    if (this.#state === 'closed') return;
    if (this.#headerSent) this.#write('</stream:stream>');
    this.#flush();
    this.#cleanup('stream closed');
    this.#socket.end();
    // A peer that never closes its side does not keep the socket.
    setTimeout(() => this.#socket.destroy(), 2000).unref();
  }

  #cleanup(reason: string): void {
    if (this.#state === 'closed') return;
    const wasBound = this.#state === 'bound';
    this.#state = 'closed';
    this.#stopStateTimer();
    if (this.#sendTimer !== null) clearTimeout(this.#sendTimer);
    this.#sendTimer = null;
    if (wasBound && this.#ctx.sm.unregister(this)) {
      this.#ctx.presence.sessionClosed(this);
      this.#ctx.hooks.run('sm_remove_connection', this.jid.domain, { jid: this.jid, reason });
    }
  }

  // --- stream header ------------------------------------------------------

  #onHeader(h: StreamHeader): void {
    const to = h.attrs.to;
    // RFC 6120 §4.7.1: 'to' names the service; without it, the default domain.
    const domain = to === undefined ? this.#ctx.defaultDomain : to.toLowerCase();
    if (this.#domain === '') this.#domain = servedHost(this.#ctx.hosts, domain);
    if (h.name !== 'stream:stream' || h.attrs['xmlns:stream'] !== NS_STREAM) {
      this.#streamError(new StreamError('invalid-namespace', 'the stream element must be stream:stream in ' + NS_STREAM));
      return;
    }
    if (h.attrs.xmlns !== NS_CLIENT) {
      this.#streamError(new StreamError('invalid-namespace', 'the content namespace must be jabber:client'));
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
    this.#write(this.#features());
    if (this.#state === 'header') this.#state = 'auth';
    this.#armStateTimer();
  }

  #features(): string {
    let f = '<stream:features>';
    if (this.#state === 'header' || this.#state === 'auth') {
      const tls = this.#ctx.listener.tls;
      const required = tls?.mode === 'starttls_required';
      if (!this.#secure && tls !== undefined && tls.mode !== 'tls') {
        f += `<starttls xmlns='${NS_TLS}'>${required ? '<required/>' : ''}</starttls>`;
      }
      // As in MongooseIM: with STARTTLS required, no SASL is offered before TLS.
      if (this.#secure || !required) {
        f += `<mechanisms xmlns='${NS_SASL}'>`;
        for (const m of this.#ctx.mechanisms) f += `<mechanism>${m}</mechanism>`;
        f += '</mechanisms>';
      }
    } else if (this.#state === 'bind') {
      f += `<bind xmlns='${NS_BIND}'/><session xmlns='${NS_SESSION}'><optional/></session>`;
    }
    return f + '</stream:features>';
  }

  // --- stanzas ------------------------------------------------------------

  #onStanza(el: Element): void {
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

  #preAuth(el: Element): void {
    const xmlns = el.attrs.xmlns;
    if (el.name === 'starttls' && xmlns === NS_TLS) {
      this.#starttls();
      return;
    }
    if (xmlns === NS_SASL) {
      const tls = this.#ctx.listener.tls;
      if (tls?.mode === 'starttls_required' && !this.#secure) {
        this.#saslFailure('encryption-required', 'use STARTTLS first');
        return;
      }
      if (el.name === 'auth') this.#saslAuth(el);
      else if (el.name === 'response') this.#saslResponse(el);
      else if (el.name === 'abort') {
        this.#sasl = null;
        this.#saslFailure('aborted');
      } else this.#streamError(new StreamError('bad-format', 'unknown SASL element'));
      return;
    }
    // RFC 6120 §6.4: nothing but TLS and SASL negotiation before authentication.
    this.#streamError(new StreamError('not-authorized', 'authenticate first'));
  }

  #starttls(): void {
    const tls = this.#ctx.listener.tls;
    if (this.#secure || tls === undefined || tls.mode === 'tls' || this.#ctx.tls === null) {
      this.#write(`<failure xmlns='${NS_TLS}'/>`);
      this.close();
      return;
    }
    this.#write(`<proceed xmlns='${NS_TLS}'/>`);
    this.#flush();
    const raw = this.#socket;
    this.#detach(raw);
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.#ctx.tls });
    this.#socket = secure;
    this.#secure = true;
    this.#attach(secure);
    // A client that never finishes the handshake is dropped (the direct TLS
    // listener has the same limit through tls.Server's handshakeTimeout).
    this.#stopStateTimer();
    const handshake = setTimeout(() => {
      this.#ctx.logger.info({ what: 'c2s_tls_error', session: this.id, remote: this.remote, err: 'TLS handshake timed out' }, 'TLS handshake failed');
      this.#cleanup('TLS handshake timed out');
      secure.destroy();
    }, this.#ctx.limits.handshakeTimeout);
    handshake.unref();
    secure.once('secure', () => {
      clearTimeout(handshake);
      this.#armStateTimer();
    });
    secure.once('close', () => clearTimeout(handshake));
    // RFC 6120 §5.4.3.3: the stream restarts over TLS.
    this.#headerSent = false;
    this.#newParser();
  }

  #saslAuth(el: Element): void {
    const mech = el.attrs.mechanism ?? '';
    if (!isSaslMechanism(mech) || !this.#ctx.mechanisms.includes(mech)) {
      this.#saslFailure('invalid-mechanism');
      return;
    }
    this.#sasl = createSaslServer(mech, {
      domain: this.#domain,
      iterations: this.#ctx.scramIterations,
      lookup: (user) => this.#ctx.users.getCredentials(user, this.#domain),
    });
    const text = el.text();
    // RFC 6120 §6.4.2: "=" is an empty initial response; no text is none.
    const initial = text === '' ? null : text === '=' ? Buffer.alloc(0) : decodeBase64(text);
    if (initial === undefined) {
      this.#saslFailure('incorrect-encoding');
      return;
    }
    this.#saslStep(initial);
  }

  #saslResponse(el: Element): void {
    if (this.#sasl === null) {
      this.#saslFailure('malformed-request', 'no authentication in progress');
      return;
    }
    const data = decodeBase64(el.text());
    if (data === undefined) {
      this.#saslFailure('incorrect-encoding');
      return;
    }
    this.#saslStep(data);
  }

  #saslStep(data: Buffer | null): void {
    const sasl = this.#sasl!;
    sasl.step(data).then(
      (step) => {
        if (this.#state !== 'auth' || this.#sasl !== sasl) return;
        this.#armStateTimer();
        if (step.kind === 'challenge') {
          this.#write(`<challenge xmlns='${NS_SASL}'>${step.data.toString('base64')}</challenge>`);
        } else if (step.kind === 'success') {
          this.#sasl = null;
          this.#username = step.username;
          this.#state = 'bind';
          this.#armStateTimer();
          this.#write(`<success xmlns='${NS_SASL}'>${step.data ? step.data.toString('base64') : ''}</success>`);
          this.#ctx.logger.info({ what: 'c2s_auth_ok', session: this.id, user: step.username, domain: this.#domain, mechanism: sasl.mechanism }, 'authenticated');
          // RFC 6120 §6.4.6: the client opens a new stream. SASL steps end in
          // a promise callback, never inside parser.write, so the parser can be replaced here.
          this.#headerSent = false;
          this.#newParser();
        } else {
          this.#sasl = null;
          this.#ctx.logger.info({ what: 'c2s_auth_failed', session: this.id, remote: this.remote, mechanism: sasl.mechanism, condition: step.condition }, 'authentication failed');
          this.#saslFailure(step.condition, step.text);
        }
      },
      (err) => {
        this.#ctx.logger.error({ what: 'c2s_auth_error', session: this.id, err: String(err) }, 'authentication error');
        this.#sasl = null;
        this.#saslFailure('temporary-auth-failure');
      },
    );
  }

  #saslFailure(condition: string, text?: string): void {
    const c = SASL_ERRORS.has(condition) ? condition : 'not-authorized';
    let f = `<failure xmlns='${NS_SASL}'><${c}/>`;
    if (text !== undefined) f += `<text xml:lang='en'>${text.replace(/[<&>]/g, '')}</text>`;
    this.#write(f + '</failure>');
    // Wrong credentials also count against the client's address, across connections.
    if ((c === 'not-authorized' || c === 'invalid-authzid') && this.#ctx.authBans?.recordFailure(this.#ip()) === true) {
      this.#ctx.logger.warn({ what: 'c2s_address_banned', remote: this.remote, ip: this.#ip(), ms: this.#ctx.authBans.banDuration }, 'too many failed logins from one address; banned for a while');
      this.#streamError(new StreamError('policy-violation', 'too many failed logins from this address; try again later'));
      return;
    }
    if (c === 'not-authorized' || c === 'aborted' || c === 'invalid-mechanism' || c === 'malformed-request' || c === 'incorrect-encoding' || c === 'encryption-required' || c === 'invalid-authzid') {
      if (++this.#authFailures >= this.#ctx.limits.maxAuthFailures) {
        this.#streamError(new StreamError('policy-violation', 'too many failed authentication attempts'));
      }
    }
  }

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

  /** Queues a routing step behind those already waiting; `barrier` must settle first. */
  #enqueue(barrier: Promise<unknown> | undefined, run: () => void): void {
    const entry = { ready: barrier === undefined, run };
    const pending = (this.#pending ??= []);
    pending.push(entry);
    if (pending.length >= PENDING_PAUSE) this.#socket.pause();
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
    while (i < pending.length && pending[i]!.ready) {
      if (this.#state === 'closed') break;
      pending[i++]!.run();
    }
    pending.splice(0, i);
    if (pending.length === 0 || this.#state === 'closed') this.#pending = null;
    if (this.#state !== 'closed' && this.#socket.isPaused() && (this.#pending === null || this.#pending.length < PENDING_PAUSE)) this.#socket.resume();
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
    if (this.#pending === null && barrier === undefined) this.#route(el, to, acc);
    else this.#enqueue(barrier, () => this.#route(el, to, acc));
  }

  #route(el: Element, to: JID | null, acc: Acc): void {
    const me = this.jid;
    if (el.name === 'message') this.#ctx.router.route(me, acc.to, el, acc);
    else if (el.name === 'presence') this.#ctx.presence.outbound(this, el, to, acc);
    else if (to === null) this.#ctx.router.handleOwnIq(me, el, this);
    else this.#ctx.router.route(me, to, el, acc);
  }
}

/** Routing steps allowed to wait before the socket stops being read. */
const PENDING_PAUSE = 256;
/** Shared and never written to: stands for "no messages" without an array per session. */
const NO_MESSAGES: Element[] = [];

/** Milliseconds of monotonic time, whole, so a field holding it stays a small integer. */
function nowMs(): number {
  return Math.floor(performance.now());
}

/** The served domain's own string (not one cut out of the client's input), or '' when it is not served. */
function servedHost(hosts: ReadonlySet<string>, domain: string): string {
  for (const h of hosts) if (h === domain) return h;
  return '';
}

/** Parser limits by context and phase, shared by every session of a listener. */
const LIMITS = new WeakMap<C2SContext, { pre: StreamParserLimits; authed: StreamParserLimits }>();

function parserLimits(ctx: C2SContext, authed: boolean): StreamParserLimits {
  let l = LIMITS.get(ctx);
  if (l === undefined) {
    const max = ctx.listener.max_stanza_size;
    const { maxDepth, preAuthStanzaSize: pre, preAuthElements } = ctx.limits;
    l = {
      pre: { maxStanzaSize: max > 0 ? Math.min(max, pre) : pre, maxDepth, maxElements: preAuthElements },
      authed: { maxStanzaSize: max, maxDepth },
    };
    LIMITS.set(ctx, l);
  }
  return authed ? l.authed : l.pre;
}

function decodeBase64(s: string): Buffer | undefined {
  const t = s.trim();
  if (t === '=' || t === '') return Buffer.alloc(0);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t) || t.length % 4 !== 0) return undefined;
  return Buffer.from(t, 'base64');
}
