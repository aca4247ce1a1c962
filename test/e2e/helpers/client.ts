// XMPP clients for end-to-end tests: @xmpp/client logged in and bound, with
// every stanza it receives kept in a queue the test can wait on.
import { client, xml, type Client, type XmlElement, type XmppError } from '@xmpp/client';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { ScramSha256Mechanism } from './scram.ts';

export { xml, type XmlElement } from '@xmpp/client';

export type Mechanism = 'PLAIN' | 'SCRAM-SHA-1' | 'SCRAM-SHA-256';

export interface Target {
  port: number;
  domain?: string;
}

export interface ConnectOptions {
  resource?: string;
  /** The SASL mechanism to use; by default SCRAM-SHA-256 when offered. */
  mechanism?: Mechanism;
  /** "xmpps" for TLS from the first byte; the default is xmpp:// (STARTTLS when offered). */
  scheme?: 'xmpp' | 'xmpps';
  /** A full service URL instead (e.g. "ws://127.0.0.1:5280/ws-xmpp" for XMPP over WebSocket); the target's port is then unused. */
  service?: string;
}

const DEFAULT_TIMEOUT = 10_000;

export class TestClient {
  readonly xmpp: Client;
  /** Received stanzas nobody has waited for yet. */
  readonly queue: XmlElement[] = [];
  /** Every error the library reported (stream errors carry their condition). */
  readonly errors: XmppError[] = [];
  /** Resolves when the connection is gone. */
  readonly disconnected: Promise<void>;
  #waiters: Array<{ pred: (el: XmlElement) => boolean; resolve: (el: XmlElement) => void }> = [];
  #counter = 0;

  constructor(xmpp: Client) {
    this.xmpp = xmpp;
    xmpp.on('stanza', (el) => this.#onStanza(el));
    xmpp.on('error', (err) => {
      this.errors.push(err);
    });
    this.disconnected = new Promise((resolve) => xmpp.once('disconnect', () => resolve()));
  }

  /** The bound full JID. */
  get jid(): string {
    return this.xmpp.jid!.toString();
  }

  get bare(): string {
    const j = this.xmpp.jid!;
    return `${j.local}@${j.domain}`;
  }

  #onStanza(el: XmlElement): void {
    const i = this.#waiters.findIndex((w) => w.pred(el));
    if (i >= 0) {
      const [w] = this.#waiters.splice(i, 1);
      w!.resolve(el);
      return;
    }
    this.queue.push(el);
  }

  /** The first received stanza (queued or to come) that matches; it leaves the queue. */
  waitFor(pred: (el: XmlElement) => boolean, timeoutMs = DEFAULT_TIMEOUT, what = 'a matching stanza'): Promise<XmlElement> {
    const i = this.queue.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.xmpp.jid?.toString() ?? 'client'}: no ${what} within ${timeoutMs} ms; unclaimed stanzas:\n${this.queue.map(String).join('\n')}`));
      }, timeoutMs);
      const waiter = {
        pred,
        resolve: (el: XmlElement) => {
          clearTimeout(timer);
          resolve(el);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  /** Removes and returns every queued stanza that matches. */
  take(pred: (el: XmlElement) => boolean): XmlElement[] {
    const out: XmlElement[] = [];
    for (let i = 0; i < this.queue.length; ) {
      if (pred(this.queue[i]!)) out.push(...this.queue.splice(i, 1));
      else i++;
    }
    return out;
  }

  send(el: XmlElement): Promise<void> {
    return this.xmpp.send(el);
  }

  /** An IQ get/set and its result; a stanza error rejects with its condition. */
  iq(el: XmlElement): Promise<XmlElement> {
    return this.xmpp.iqCaller.request(el, DEFAULT_TIMEOUT);
  }

  /** A message with a body, returning its id. */
  async message(to: string, body: string, type = 'chat'): Promise<string> {
    const id = `m${++this.#counter}-${Math.random().toString(36).slice(2, 8)}`;
    await this.send(xml('message', { to, type, id }, xml('body', {}, body)));
    return id;
  }

  /**
   * Available presence (optionally with a priority); resolves once the
   * server has handled it, which it shows by sending it back to this resource
   * (RFC 6121 §4.2.2).
   */
  async available(priority?: number): Promise<void> {
    const echo = this.waitFor((el) => el.name === 'presence' && el.attrs.from === this.jid && el.attrs.type === undefined, DEFAULT_TIMEOUT, 'own presence');
    await this.send(xml('presence', {}, priority === undefined ? null : xml('priority', {}, String(priority))));
    await echo;
  }

  /** Closes the stream and the connection. */
  async close(): Promise<void> {
    if (this.xmpp.status === 'offline' || this.xmpp.status === 'disconnect') return;
    try {
      await this.xmpp.stop();
    } catch {
      // Already gone.
    }
  }
}

/**
 * Logs in as user@domain and binds a resource; resolves once online. A
 * login the server refuses rejects with the library's error (its
 * `condition` is the SASL or stream condition).
 */
export async function connect(target: Target, user: string, password: string, opts: ConnectOptions = {}): Promise<TestClient> {
  const domain = target.domain ?? 'localhost';
  const xmpp = client({
    service: opts.service ?? `${opts.scheme ?? 'xmpp'}://127.0.0.1:${target.port}`,
    domain,
    resource: opts.resource,
    timeout: DEFAULT_TIMEOUT,
    credentials: async (authenticate, offered) => {
      // SCRAM-SHA-256 by default: node:crypto runs its key derivation much faster than the library's SCRAM-SHA-1.
      const mechanism = opts.mechanism ?? (offered.includes('SCRAM-SHA-256') ? 'SCRAM-SHA-256' : offered.find((m) => m !== 'PLAIN') ?? offered[0]!);
      if (!offered.includes(mechanism)) throw new Error(`${mechanism} is not offered (offered: ${offered.join(', ')})`);
      await authenticate({ username: user, password }, mechanism);
    },
  });
  xmpp.reconnect.stop();
  xmpp.saslFactory.use('SCRAM-SHA-256', ScramSha256Mechanism);
  const c = new TestClient(xmpp);
  try {
    await xmpp.start();
  } catch (err) {
    await c.close();
    throw err;
  }
  return c;
}

/** A message stanza with this id. */
export function isMessage(id: string): (el: XmlElement) => boolean {
  return (el) => el.name === 'message' && el.attrs.id === id;
}

/** The stanza error condition of an error stanza, or undefined. */
export function errorCondition(el: XmlElement): string | undefined {
  const e = el.getChild('error');
  if (e === undefined) return undefined;
  return e.getChildElements().find((c) => c.attrs.xmlns === 'urn:ietf:params:xml:ns:xmpp-stanzas')?.name;
}

/**
 * Waits until everything the server routed to `to` before now has arrived:
 * `from` sends `to` a marker message at its full JID and waits for it. Used
 * to show that something did NOT arrive, without a timing assumption.
 */
export async function settle(from: TestClient, to: TestClient): Promise<void> {
  const id = await from.message(to.jid, 'marker', 'chat');
  await to.waitFor(isMessage(id), DEFAULT_TIMEOUT, 'the marker message');
}

/**
 * Makes this process's TLS clients (@xmpp/client among them, which takes no
 * TLS options) trust the certificate in `pem` besides the usual CAs, as a user
 * who adds a server's self-signed certificate to their trust store does.
 */
export function trustCertificate(pem: string): void {
  setDefaultCACertificates([...getCACertificates('default'), pem]);
}
