// Raw XMPP over a socket, for what a client library would never send:
// broken XML, stanzas out of order, spoofed addresses.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

export const NS_CLIENT = 'jabber:client';
export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';

export function streamHeader(to = 'localhost', attrs = `xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' version='1.0'`): string {
  return `<?xml version='1.0'?><stream:stream to='${to}' ${attrs}>`;
}

export class RawConnection {
  #socket: Socket;
  /** Everything received so far, as text. */
  data = '';
  #cursor = 0;
  #waiters: Array<() => void> = [];
  readonly closed: Promise<string>;

  #resolveClosed!: (data: string) => void;

  constructor(socket: Socket) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#attach(socket);
  }

  #attach(socket: Socket): void {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.data += chunk;
      for (const w of this.#waiters.slice()) w();
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      if (socket !== this.#socket) return;
      for (const w of this.#waiters.slice()) w();
      this.#resolveClosed(this.data);
    });
  }

  /** STARTTLS (RFC 6120 §5.4.3.3): after <proceed/>, the TLS handshake over the same socket. */
  upgradeTls(opts: ConnectionOptions = {}): Promise<void> {
    return new Promise((resolve, reject) => {
      const plain = this.#socket;
      plain.removeAllListeners('data');
      const secure = tlsConnect({ socket: plain, servername: 'localhost', rejectUnauthorized: false, ...opts }, () => resolve());
      secure.once('error', reject);
      this.#socket = secure;
      this.#attach(secure);
    });
  }

  static open(port: number, tls?: ConnectionOptions): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = tls
        ? tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ...tls }, () => resolve(new RawConnection(socket)))
        : netConnect({ host: '127.0.0.1', port }, () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  get socket(): Socket {
    return this.#socket;
  }

  get isClosed(): boolean {
    return this.#socket.destroyed || this.#socket.readyState === 'closed';
  }

  send(s: string): void {
    this.#socket.write(s);
  }

  /**
   * Waits for `pattern` in what arrived after the previous match; resolves
   * with the text from there up to the end of this match.
   */
  waitFor(pattern: string | RegExp, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const rest = this.data.slice(this.#cursor);
        let end = -1;
        if (typeof pattern === 'string') {
          const i = rest.indexOf(pattern);
          if (i >= 0) end = i + pattern.length;
        } else {
          const m = pattern.exec(rest);
          if (m !== null) end = m.index + m[0].length;
        }
        if (end < 0) return false;
        this.#cursor += end;
        resolve(rest.slice(0, end));
        return true;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${String(pattern)} within ${timeoutMs} ms; received:\n${this.data}`));
      }, timeoutMs);
      const waiter = () => {
        if (check()) done();
        else if (this.isClosed) {
          done();
          reject(new Error(`the connection closed before ${String(pattern)}; received:\n${this.data}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
      };
      this.#waiters.push(waiter);
    });
  }

  /** Waits for the server to close the connection (bounded), returning all received text. */
  async untilClosed(timeoutMs = 10_000): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the server did not close the connection within ${timeoutMs} ms; received:\n${this.data}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** Opens a stream and waits for the server's features. */
  async openStream(to = 'localhost'): Promise<string> {
    this.send(streamHeader(to));
    return this.waitFor('</stream:features>');
  }

  /** SASL PLAIN, stream restart and resource binding; resolves with the bound JID. */
  async login(user: string, password: string, resource = 'raw', domain = 'localhost'): Promise<string> {
    await this.openStream(domain);
    const creds = Buffer.from(`\0${user}\0${password}`).toString('base64');
    this.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${creds}</auth>`);
    await this.waitFor(/<success[^>]*(\/>|>[^<]*<\/success>)/);
    await this.openStream(domain);
    this.send(`<iq type='set' id='bind1'><bind xmlns='${NS_BIND}'><resource>${resource}</resource></bind></iq>`);
    const reply = await this.waitFor(/<\/iq>/);
    const m = /<jid>([^<]+)<\/jid>/.exec(reply);
    if (m === null) throw new Error(`binding failed: ${reply}`);
    return m[1]!;
  }
}

/** The condition of the stream error in `text`, if any (RFC 6120 §4.9.2). */
export function streamErrorCondition(text: string): string | undefined {
  const m = /<stream:error>\s*<([a-z-]+)[^>]*xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]/.exec(text);
  return m?.[1];
}
