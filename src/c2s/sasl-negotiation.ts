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
import type { WorkLimit } from './auth-work.ts';

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
  /** Failed logins per account ("user@domain"), shared by all listeners; absent: no per-account limit. */
  accountLocks?: AuthBans;
  /** Server-wide bound on password hashing running at once; absent: no bound. */
  hashWork?: WorkLimit;
  /** Key of the SCRAM salts made up for unknown users (kept under the data directory, so stable across restarts). */
  scramSecret?: Buffer;
  /** Counters of authentications by host, and of failures and refusals by reason; absent: nothing is counted. */
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

/** An account that is locked (max_auth_failures_per_account): its login is refused without looking at the credentials. */
class AccountLocked extends Error {}

/** One <auth/> and what the negotiation learned of it. */
interface Exchange {
  server: SaslServer;
  /** "user@domain" once the mechanism has looked the user up. */
  account: string | null;
  /** The account was locked when it was looked up. */
  locked: boolean;
}

/** One per connection, from its first SASL element until it has authenticated. */
export class SaslNegotiation {
  #ctx: SaslContext;
  #peer: SaslPeer;
  #domain: string;
  /** The client's address, as auth bans count it. */
  #ip: string;
  /** The exchange in progress (one per <auth/>), or null. */
  #exchange: Exchange | null = null;
  #failures = 0;
  /** The last piece of password hashing of this connection: the next one waits for it (one at a time per connection). */
  #hashTail: Promise<unknown> = Promise.resolve();
  /** No SASL before TLS on this connection (the listener's tlsRequired, or a stricter rule for this client). */
  #tlsRequired: boolean;
  /** Whether the stream the last SASL element came over is encrypted (for the log). */
  #secure = false;

  constructor(ctx: SaslContext, peer: SaslPeer, domain: string, ip: string, tlsRequired = ctx.tlsRequired) {
    this.#ctx = ctx;
    this.#tlsRequired = tlsRequired;
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
    if (this.#tlsRequired && !secure) return this.#failure('encryption-required', 'use STARTTLS first');
    this.#secure = secure;
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
    const bans = this.#ctx.authBans;
    // Banned while this connection was open (by failures on others): no more tries here either.
    if (bans !== undefined && bans.bannedFor(this.#ip) > 0) return this.#addressBanned('');
    const running = this.#exchange;
    if (running !== null) {
      // A new <auth/> before the last one was answered (RFC 6120 §6.4.1
      // leaves this undefined). Its answer is never sent, but the guess was
      // made: it counts as a failed attempt, so pipelining many <auth/>
      // elements gains no tries over waiting for each answer.
      this.#exchange = null;
      const xml = `<failure xmlns='${NS_SASL}'><not-authorized/><text xml:lang='en'>a new authentication was started before the last one was answered</text></failure>`;
      const ended = this.#countFailure('not-authorized', running.account, xml, 'superseded');
      if (ended !== null) return ended;
      // The replaced exchange's <failure/> goes out ahead of whatever the new one answers.
      const next = this.#start(el);
      if (!(next instanceof Promise)) return { ...next, xml: xml + next.xml };
      return next.then((o): SaslOutcome => (o === null ? { kind: 'reply', xml } : { ...o, xml: xml + o.xml }));
    }
    return this.#start(el);
  }

  #start(el: Element): SaslOutcome | Promise<SaslOutcome | null> {
    const mech = el.attrs.mechanism ?? '';
    if (!isSaslMechanism(mech) || !this.#ctx.mechanisms.includes(mech)) return this.#failure('invalid-mechanism');
    const domain = this.#domain;
    const users = this.#ctx.users;
    const locks = this.#ctx.accountLocks;
    const exchange: Exchange = { server: null as unknown as SaslServer, account: null, locked: false };
    exchange.server = createSaslServer(mech, {
      domain,
      iterations: this.#ctx.scramIterations,
      ...(this.#ctx.scramSecret === undefined ? {} : { secret: this.#ctx.scramSecret }),
      lookup: (user) => {
        exchange.account = `${user}@${domain}`;
        if (locks !== undefined && locks.bannedFor(exchange.account) > 0) {
          exchange.locked = true;
          return Promise.reject(new AccountLocked());
        }
        return users.getCredentials(user, domain);
      },
      hashing: (work) => this.#hash(exchange, work),
    });
    this.#exchange = exchange;
    const text = el.text();
    // RFC 6120 §6.4.2: "=" is an empty initial response; no text is none.
    const initial = text === '' ? null : text === '=' ? Buffer.alloc(0) : decodeBase64(text);
    if (initial === undefined) return this.#failure('incorrect-encoding');
    return this.#step(exchange, initial);
  }

  /**
   * One piece of password hashing of `exchange`: after this connection's
   * previous piece, and only if the exchange is still the current one (an
   * abandoned exchange costs nothing more), within the server-wide limit.
   */
  #hash<T>(exchange: Exchange, work: () => Promise<T>): Promise<T> {
    const limit = this.#ctx.hashWork;
    const run = (): Promise<T> => {
      if (this.#exchange !== exchange) return Promise.reject(new Error('the exchange was abandoned'));
      return limit === undefined ? work() : limit.run(() => (this.#exchange === exchange ? work() : Promise.reject(new Error('the exchange was abandoned'))));
    };
    const p = this.#hashTail.then(run, run);
    this.#hashTail = p.catch(() => {});
    return p;
  }

  #response(el: Element): SaslOutcome | Promise<SaslOutcome | null> {
    const exchange = this.#exchange;
    if (exchange === null) return this.#failure('malformed-request', 'no authentication in progress');
    const data = decodeBase64(el.text());
    if (data === undefined) return this.#failure('incorrect-encoding');
    return this.#step(exchange, data);
  }

  #step(exchange: Exchange, data: Buffer | null): Promise<SaslOutcome | null> {
    const sasl = exchange.server;
    return sasl.step(data).then(
      (step): SaslOutcome | null => {
        if (this.#exchange !== exchange) return null;
        if (step.kind === 'challenge') return { kind: 'reply', xml: `<challenge xmlns='${NS_SASL}'>${step.data.toString('base64')}</challenge>` };
        this.#exchange = null;
        if (exchange.locked) return this.#accountLocked(exchange.account!);
        if (step.kind === 'success') {
          // The limits may have been reached by other attempts while this one was checked.
          const bans = this.#ctx.authBans;
          if (bans !== undefined && bans.bannedFor(this.#ip) > 0) return this.#addressBanned('');
          const locks = this.#ctx.accountLocks;
          if (locks !== undefined && exchange.account !== null && locks.bannedFor(exchange.account) > 0) return this.#accountLocked(exchange.account);
          this.#ctx.metrics?.forHost(this.#domain).authSucceeded.inc();
          this.#ctx.logger.info({ what: 'c2s_auth_ok', session: this.#peer.id, user: step.username, domain: this.#domain, mechanism: sasl.mechanism, tls: this.#secure }, 'authenticated');
          return { kind: 'success', xml: `<success xmlns='${NS_SASL}'>${step.data ? step.data.toString('base64') : ''}</success>`, username: step.username };
        }
        this.#ctx.metrics?.forHost(this.#domain).authFailed.inc();
        this.#ctx.logger.info({ what: 'c2s_auth_failed', session: this.#peer.id, remote: this.#peer.remote, mechanism: sasl.mechanism, condition: step.condition }, 'authentication failed');
        return this.#failure(step.condition, step.text, exchange.account);
      },
      (err): SaslOutcome | null => {
        if (this.#exchange !== exchange) return null;
        this.#ctx.logger.error({ what: 'c2s_auth_error', session: this.#peer.id, err: String(err) }, 'authentication error');
        this.#exchange = null;
        return this.#failure('temporary-auth-failure');
      },
    );
  }

  /** The account is locked: refused, counted against this connection only (the credentials were not checked). */
  #accountLocked(account: string): SaslOutcome {
    this.#ctx.metrics?.authFailure('account_locked');
    this.#ctx.logger.info({ what: 'c2s_auth_account_locked', session: this.#peer.id, remote: this.#peer.remote, account }, 'login refused: too many failed logins for this account');
    const xml = `<failure xmlns='${NS_SASL}'><temporary-auth-failure/><text xml:lang='en'>too many failed logins for this account; try again later</text></failure>`;
    if (++this.#failures >= this.#ctx.limits.maxAuthFailures) {
      return { kind: 'fatal', xml, error: new StreamError('policy-violation', 'too many failed authentication attempts') };
    }
    return { kind: 'reply', xml };
  }

  #addressBanned(xml: string): SaslOutcome {
    this.#ctx.metrics?.authFailure('address_banned');
    return { kind: 'fatal', xml, error: new StreamError('policy-violation', 'too many failed logins from this address; try again later') };
  }

  /** A <failure/> (RFC 6120 §6.4.5), and whether it ends the stream. */
  #failure(condition: string, text?: string, account: string | null = null): SaslOutcome {
    const c = SASL_ERRORS.has(condition) ? condition : 'not-authorized';
    let xml = `<failure xmlns='${NS_SASL}'><${c}/>`;
    if (text !== undefined) xml += `<text xml:lang='en'>${text.replace(/[<&>]/g, '')}</text>`;
    xml += '</failure>';
    return this.#countFailure(c, account, xml) ?? { kind: 'reply', xml };
  }

  /**
   * Counts a failed attempt with condition `c` against the limits: the
   * client's address and the account for wrong credentials, this connection
   * for every condition in COUNTED. The fatal outcome when a limit is
   * reached, else null.
   */
  #countFailure(c: string, account: string | null, xml: string, reason: 'failure' | 'superseded' = 'failure'): SaslOutcome | null {
    const wrong = c === 'not-authorized' || c === 'invalid-authzid';
    if (wrong) this.#ctx.metrics?.authFailure(reason);
    const locks = this.#ctx.accountLocks;
    if (wrong && account !== null && locks?.recordFailure(account) === true) {
      this.#ctx.logger.warn({ what: 'c2s_account_locked', account, remote: this.#peer.remote, ms: locks.banDuration }, 'too many failed logins for one account; its logins are refused for a while');
    }
    const bans = this.#ctx.authBans;
    // Wrong credentials also count against the client's address, across connections.
    if (wrong && bans?.recordFailure(this.#ip) === true) {
      this.#ctx.logger.warn({ what: 'c2s_address_banned', remote: this.#peer.remote, ip: this.#ip, ms: bans.banDuration }, 'too many failed logins from one address; banned for a while');
      return this.#addressBanned(xml);
    }
    if (COUNTED.has(c) && ++this.#failures >= this.#ctx.limits.maxAuthFailures) {
      return { kind: 'fatal', xml, error: new StreamError('policy-violation', 'too many failed authentication attempts') };
    }
    return null;
  }
}

function decodeBase64(s: string): Buffer | undefined {
  const t = s.trim();
  if (t === '=' || t === '') return Buffer.alloc(0);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t) || t.length % 4 !== 0) return undefined;
  return Buffer.from(t, 'base64');
}
