// SASL negotiation of a client-to-server stream (RFC 6120 §6.4): <auth/>,
// <challenge/>/<response/>, <abort/>, <success/> and <failure/>, with the
// limits on failed attempts (per connection: max_auth_failures; per client
// address across connections: AuthBans). The mechanisms themselves are in
// xmpp/sasl/. It answers with outcomes and does no output: the session
// writes them and moves its state machine, so that what happens on the
// stream stays in one place (session.ts).
import type { Logger } from 'pino';
import type { Element } from '../xmpp/xml.ts';
import { StreamError } from '../xmpp/errors.ts';
import { NS_SASL } from '../xmpp/ns.ts';
import { createSaslServer, isSaslMechanism, type SaslMechanismName, type SaslServer } from '../xmpp/sasl/index.ts';
import type { UserStore } from '../storage/types.ts';
import type { AuthBans } from './auth-bans.ts';
import type { C2SMetrics } from './metrics.ts';

/** What the negotiation needs of its listener (C2SContext has all of it). */
export interface SaslContext {
  /** SASL mechanisms offered, in order. */
  mechanisms: readonly SaslMechanismName[];
  /** Shown to unknown users too, so a SCRAM exchange does not reveal whether an account exists. */
  scramIterations: number;
  users: UserStore;
  logger: Logger;
  authBans?: AuthBans;
  /** starttls_required: no SASL before the stream is encrypted (RFC 6120 §5.3.1). */
  tlsRequired: boolean;
  limits: { maxAuthFailures: number };
  /** Authentications counted, by host. */
  metrics?: C2SMetrics;
}

/** The connection as the negotiation's logs name it. */
export interface SaslPeer {
  readonly id: number;
  readonly remote: string;
}

export type SaslOutcome =
  /** Send `xml` (a challenge, or a failure after which the client may try again). */
  | { kind: 'reply'; xml: string }
  /** Send `xml` (<success/>); the stream restarts, authenticated as `username`. */
  | { kind: 'success'; xml: string; username: string }
  /** Send `xml` if not empty, then close the stream with `error`. */
  | { kind: 'fatal'; xml: string; error: StreamError };

/** RFC 6120 §6.5 */
const SASL_ERRORS = new Set(['aborted', 'account-disabled', 'credentials-expired', 'encryption-required', 'incorrect-encoding', 'invalid-authzid', 'invalid-mechanism', 'malformed-request', 'mechanism-too-weak', 'not-authorized', 'temporary-auth-failure']);
/** Failures that count towards max_auth_failures; a server-side temporary failure does not. */
const COUNTED = new Set(['not-authorized', 'aborted', 'invalid-mechanism', 'malformed-request', 'incorrect-encoding', 'encryption-required', 'invalid-authzid']);

/** One per connection, from its first SASL element until it has authenticated. */
export class SaslNegotiation {
  #ctx: SaslContext;
  #peer: SaslPeer;
  #domain: string;
  /** The client's address, as auth bans count it. */
  #ip: string;
  /** The exchange in progress (one per <auth/>), or null. */
  #exchange: SaslServer | null = null;
  #failures = 0;

  constructor(ctx: SaslContext, peer: SaslPeer, domain: string, ip: string) {
    this.#ctx = ctx;
    this.#peer = peer;
    this.#domain = domain;
    this.#ip = ip;
  }

  /**
   * Handles one element in the SASL namespace that arrived over a stream
   * that is (or is not) `secure`. An answer that waits on the store comes as
   * a promise; null then means the exchange was abandoned meanwhile (an
   * <abort/>, a new <auth/>, STARTTLS) and nothing is to be sent.
   */
  handle(el: Element, secure: boolean): SaslOutcome | Promise<SaslOutcome | null> {
    if (this.#ctx.tlsRequired && !secure) return this.#failure('encryption-required', 'use STARTTLS first');
    switch (el.name) {
      case 'auth':
        return this.#auth(el);
      case 'response':
        return this.#response(el);
      case 'abort':
        this.#exchange = null;
        return this.#failure('aborted');
      default:
        return { kind: 'fatal', xml: '', error: new StreamError('bad-format', 'unknown SASL element') };
    }
  }

  /**
   * Forgets the exchange in progress, if any (after STARTTLS, RFC 6120
   * §5.4.3.3: nothing negotiated before TLS carries over). Failures stay counted.
   */
  reset(): void {
    this.#exchange = null;
  }

  #auth(el: Element): SaslOutcome | Promise<SaslOutcome | null> {
    const mech = el.attrs.mechanism ?? '';
    if (!isSaslMechanism(mech) || !this.#ctx.mechanisms.includes(mech)) return this.#failure('invalid-mechanism');
    const domain = this.#domain;
    const users = this.#ctx.users;
    this.#exchange = createSaslServer(mech, {
      domain,
      iterations: this.#ctx.scramIterations,
      lookup: (user) => users.getCredentials(user, domain),
    });
    const text = el.text();
    // RFC 6120 §6.4.2: "=" is an empty initial response; no text is none.
    const initial = text === '' ? null : text === '=' ? Buffer.alloc(0) : decodeBase64(text);
    if (initial === undefined) return this.#failure('incorrect-encoding');
    return this.#step(this.#exchange, initial);
  }

  #response(el: Element): SaslOutcome | Promise<SaslOutcome | null> {
    const exchange = this.#exchange;
    if (exchange === null) return this.#failure('malformed-request', 'no authentication in progress');
    const data = decodeBase64(el.text());
    if (data === undefined) return this.#failure('incorrect-encoding');
    return this.#step(exchange, data);
  }

  #step(sasl: SaslServer, data: Buffer | null): Promise<SaslOutcome | null> {
    return sasl.step(data).then(
      (step): SaslOutcome | null => {
        if (this.#exchange !== sasl) return null;
        if (step.kind === 'challenge') return { kind: 'reply', xml: `<challenge xmlns='${NS_SASL}'>${step.data.toString('base64')}</challenge>` };
        this.#exchange = null;
        if (step.kind === 'success') {
          this.#ctx.metrics?.forHost(this.#domain).authSucceeded.inc();
          this.#ctx.logger.info({ what: 'c2s_auth_ok', session: this.#peer.id, user: step.username, domain: this.#domain, mechanism: sasl.mechanism }, 'authenticated');
          return { kind: 'success', xml: `<success xmlns='${NS_SASL}'>${step.data ? step.data.toString('base64') : ''}</success>`, username: step.username };
        }
        this.#ctx.metrics?.forHost(this.#domain).authFailed.inc();
        this.#ctx.logger.info({ what: 'c2s_auth_failed', session: this.#peer.id, remote: this.#peer.remote, mechanism: sasl.mechanism, condition: step.condition }, 'authentication failed');
        return this.#failure(step.condition, step.text);
      },
      (err): SaslOutcome | null => {
        if (this.#exchange !== sasl) return null;
        this.#ctx.logger.error({ what: 'c2s_auth_error', session: this.#peer.id, err: String(err) }, 'authentication error');
        this.#exchange = null;
        return this.#failure('temporary-auth-failure');
      },
    );
  }

  /** A <failure/> (RFC 6120 §6.4.5), and whether it ends the stream. */
  #failure(condition: string, text?: string): SaslOutcome {
    const c = SASL_ERRORS.has(condition) ? condition : 'not-authorized';
    let xml = `<failure xmlns='${NS_SASL}'><${c}/>`;
    if (text !== undefined) xml += `<text xml:lang='en'>${text.replace(/[<&>]/g, '')}</text>`;
    xml += '</failure>';
    const bans = this.#ctx.authBans;
    // Wrong credentials also count against the client's address, across connections.
    if ((c === 'not-authorized' || c === 'invalid-authzid') && bans?.recordFailure(this.#ip) === true) {
      this.#ctx.logger.warn({ what: 'c2s_address_banned', remote: this.#peer.remote, ip: this.#ip, ms: bans.banDuration }, 'too many failed logins from one address; banned for a while');
      return { kind: 'fatal', xml, error: new StreamError('policy-violation', 'too many failed logins from this address; try again later') };
    }
    if (COUNTED.has(c) && ++this.#failures >= this.#ctx.limits.maxAuthFailures) {
      return { kind: 'fatal', xml, error: new StreamError('policy-violation', 'too many failed authentication attempts') };
    }
    return { kind: 'reply', xml };
  }
}

function decodeBase64(s: string): Buffer | undefined {
  const t = s.trim();
  if (t === '=' || t === '') return Buffer.alloc(0);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t) || t.length % 4 !== 0) return undefined;
  return Buffer.from(t, 'base64');
}
