// One client-to-server connection: the XML stream (RFC 6120 §4), STARTTLS
// (§5), SASL (§6), resource binding (§7), then stanzas until the stream ends.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Hooks } from '../hooks/hooks.ts';
import type { C2SListenerConfig } from '../config/types.ts';
import type { UserStore } from '../storage/types.ts';
import type { Router } from '../routing/router.ts';
import type { Presence, PresenceSession } from '../routing/presence.ts';
import type { SessionManager } from '../routing/sm.ts';
import { Element, escapeAttr, serialize } from '../xmpp/xml.ts';
import { StreamParser, type StreamHeader } from '../xmpp/stream-parser.ts';
import { StreamError, StanzaError, errorReply } from '../xmpp/errors.ts';
import { JID, makeJid, tryParseJid } from '../xmpp/jid.ts';
import { resourceprep } from '../xmpp/stringprep.ts';
import { NS_BIND, NS_CLIENT, NS_SASL, NS_SESSION, NS_STREAM, NS_TLS } from '../xmpp/ns.ts';
import { createSaslServer, isSaslMechanism, type SaslMechanismName, type SaslServer } from '../xmpp/sasl/index.ts';

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
}

export interface C2SLimits {
  /** Stanza size before authentication (bytes). */
  preAuthStanzaSize: number;
  maxDepth: number;
  /** Failed SASL attempts on one connection before it is closed. */
  maxAuthFailures: number;
  /** Milliseconds an unauthenticated connection may stay. */
  authTimeout: number;
}

type State = 'header' | 'auth' | 'bind' | 'bound' | 'closed';

const SASL_ERRORS = new Set(['aborted', 'account-disabled', 'credentials-expired', 'encryption-required', 'incorrect-encoding', 'invalid-authzid', 'invalid-mechanism', 'malformed-request', 'mechanism-too-weak', 'not-authorized', 'temporary-auth-failure']);

let sessionCounter = 0;

export class C2SSession implements PresenceSession {
  #socket: Socket;
  #ctx: C2SContext;
  #parser!: StreamParser;
  #state: State = 'header';
  #secure: boolean;
  #domain = '';
  #streamId = '';
  #headerSent = false;
  #sasl: SaslServer | null = null;
  #authFailures = 0;
  #username = '';
  #out = '';
  #flushQueued = false;
  #authTimer: NodeJS.Timeout | null = null;
  /** Stanzas read while an earlier one waits on a barrier; kept in order. */
  #held: Element[] | null = null;
  readonly id: number;
  readonly remote: string;

  jid!: JID;
  priority = 0;
  available = false;
  interested = false;
  presence: Element | null = null;

  constructor(socket: Socket, ctx: C2SContext, secure: boolean) {
    this.#socket = socket;
    this.#ctx = ctx;
    this.#secure = secure;
    this.#tokens = ctx.maxRate;
    this.#tokensAt = performance.now();
    this.id = ++sessionCounter;
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    this.#newParser();
    this.#attach(socket);
    if (ctx.limits.authTimeout > 0) {
      this.#authTimer = setTimeout(() => this.#streamError(new StreamError('connection-timeout', 'authentication took too long')), ctx.limits.authTimeout);
      this.#authTimer.unref();
    }
  }

  get state(): State {
    return this.#state;
  }

  #attach(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('error', this.#onSocketError);
    socket.on('close', this.#onClose);
    socket.on('end', this.#onEnd);
  }

  #detach(socket: Socket): void {
    socket.off('data', this.#onData);
    socket.off('error', this.#onSocketError);
    socket.off('close', this.#onClose);
    socket.off('end', this.#onEnd);
  }

  #newParser(): void {
    const authed = this.#state === 'bind' || this.#state === 'bound';
    const max = this.#ctx.listener.max_stanza_size;
    const pre = this.#ctx.limits.preAuthStanzaSize;
    this.#parser = new StreamParser(
      {
        onHeader: (h) => this.#onHeader(h),
        onStanza: (el) => this.#onStanza(el),
        onEnd: () => this.close(),
        onError: (condition, text) => this.#streamError(new StreamError(condition, text)),
      },
      { maxStanzaSize: authed ? max : max > 0 ? Math.min(max, pre) : pre, maxDepth: this.#ctx.limits.maxDepth },
    );
  }

  /** Token bucket of the traffic shaper (bytes). */
  #tokens = 0;
  #tokensAt = 0;

  #onData = (chunk: Buffer): void => {
    this.#parser.write(chunk);
    const rate = this.#ctx.maxRate;
    if (rate > 0) this.#shape(chunk.length, rate);
  };

  /**
   * A shaper pauses reading instead of buffering (as MongooseIM's does): past
   * the allowed rate, the socket stops being read until the budget refills,
   * and TCP flow control slows the sender down.
   */
  #shape(bytes: number, rate: number): void {
    const now = performance.now();
    // One second of burst at most.
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#tokensAt) * rate) / 1000) - bytes;
    this.#tokensAt = now;
    if (this.#tokens >= 0) return;
    const socket = this.#socket;
    socket.pause();
    setTimeout(() => {
      if (this.#state !== 'closed' && this.#held === null) socket.resume();
    }, Math.ceil((-this.#tokens * 1000) / rate)).unref();
  };

  #onSocketError = (err: Error): void => {
    this.#ctx.logger.debug({ what: 'c2s_socket_error', session: this.id, err: err.message }, 'socket error');
  };

  #onEnd = (): void => {
    this.close();
  };

  #onClose = (): void => {
    this.#cleanup('closed');
  };

  // --- output -------------------------------------------------------------

  #write(s: string): void {
    if (this.#state === 'closed') return;
    this.#out += s;
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      // Everything produced while handling one chunk of input goes out in one write.
      queueMicrotask(this.#flush);
    }
  }

  #flush = (): void => {
    this.#flushQueued = false;
    if (this.#out.length === 0) return;
    const out = this.#out;
    this.#out = '';
    if (!this.#socket.destroyed) this.#socket.write(out);
  };

  send(el: Element): void {
    this.#write(serialize(el));
  }

  #sendHeader(): void {
    if (this.#headerSent) return;
    this.#headerSent = true;
    this.#streamId = randomBytes(8).toString('hex');
    const from = this.#domain || this.#ctx.defaultDomain;
    this.#write(`<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' id='${this.#streamId}' from='${escapeAttr(from)}' version='1.0' xml:lang='en'>`);
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
    if (this.#authTimer !== null) clearTimeout(this.#authTimer);
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
    if (this.#domain === '') this.#domain = this.#ctx.hosts.has(domain) ? domain : '';
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
        this.#preAuth(el);
        return;
      case 'bind':
        if (el.name === 'iq' && el.attrs.type === 'set' && el.getChild('bind', NS_BIND) !== undefined) {
          this.#bind(el);
        } else {
          this.#streamError(new StreamError('not-authorized', 'bind a resource first'));
        }
        return;
      case 'bound':
        if (this.#held !== null) this.#hold(el);
        else this.#established(el);
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
        if (step.kind === 'challenge') {
          this.#write(`<challenge xmlns='${NS_SASL}'>${step.data.toString('base64')}</challenge>`);
        } else if (step.kind === 'success') {
          this.#sasl = null;
          this.#username = step.username;
          this.#state = 'bind';
          if (this.#authTimer !== null) clearTimeout(this.#authTimer);
          this.#authTimer = null;
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
    this.#state = 'bound';
    this.#ctx.sm.register(this);
    const reply = new Element('iq', { type: 'result', id: iq.attrs.id });
    reply.c('bind', { xmlns: NS_BIND }).c('jid').t(jid.full);
    this.send(reply);
    this.#ctx.hooks.run('sm_register_connection', jid.domain, { jid });
  }

  /** Routes once `barrier` settles; later stanzas of this session wait behind it, in order. */
  #waitFor(barrier: Promise<unknown>, route: () => void): void {
    this.#held = [];
    const resume = () => {
      if (this.#state === 'closed') return;
      route();
      const held = this.#held ?? [];
      this.#held = null;
      for (let i = 0; i < held.length; i++) {
        this.#established(held[i]!);
        if (this.#held !== null) {
          // Another barrier: the rest waits behind it.
          (this.#held as Element[]).push(...held.slice(i + 1));
          return;
        }
      }
      if (this.#socket.isPaused()) this.#socket.resume();
    };
    barrier.then(resume, (err) => {
      this.#ctx.logger.error({ what: 'c2s_barrier_failed', session: this.id, err: String(err) }, 'a hook could not finish before routing; routing anyway');
      resume();
    });
  }

  #hold(el: Element): void {
    this.#held!.push(el);
    // Bounded: reading stops while too much waits.
    if (this.#held!.length >= HOLD_PAUSE) this.#socket.pause();
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
    if (name === 'message') {
      if (!hooks.run('user_send_message', me.domain, { acc, from: me, to: acc.to, packet: el })) return;
      if (acc.barrier !== undefined) this.#waitFor(acc.barrier, () => this.#ctx.router.route(me, target!, el, acc));
      else this.#ctx.router.route(me, target!, el, acc);
    } else if (name === 'presence') {
      this.#ctx.presence.outbound(this, el, to, acc);
    } else if (to === null) {
      this.#ctx.router.handleOwnIq(me, el, this);
    } else {
      this.#ctx.router.route(me, to, el, acc);
    }
  }
}

const HOLD_PAUSE = 256;

function decodeBase64(s: string): Buffer | undefined {
  const t = s.trim();
  if (t === '=' || t === '') return Buffer.alloc(0);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t) || t.length % 4 !== 0) return undefined;
  return Buffer.from(t, 'base64');
}
