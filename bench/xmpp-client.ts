// A deliberately small XMPP client for load generation: raw TCP or XMPP over
// WebSocket (RFC 7395, through the ws library), plaintext, SASL PLAIN (RFC
// 4616) on loopback, resource binding (RFC 6120 §7), and a scanner that only
// looks for the benchmark's body markers. It is a measuring tool, so it
// builds no XML trees; it finds the few markers the login sequence needs in
// the text it has received.
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';

export interface LoginOptions {
  host: string;
  port: number;
  domain: string;
  user: string;
  password: string;
  resource: string;
  /** Create the account first with in-band registration (XEP-0077), for servers that offer it. */
  register?: boolean;
  /** Send initial presence after binding, so messages to the bare JID are delivered (RFC 6121 §8.5.2.1). */
  presence?: boolean;
  timeoutMs?: number;
  /** Connect over WebSocket to ws://host:port<path> (RFC 7395) instead of TCP to `port`. */
  ws?: { port: number; path: string };
}

const NS_STREAM = 'http://etherx.jabber.org/streams';

function header(domain: string, ws: boolean): string {
  if (ws) return `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='${domain}' version='1.0'/>`;
  return `<?xml version='1.0'?><stream:stream to='${domain}' xmlns='jabber:client' xmlns:stream='${NS_STREAM}' version='1.0'>`;
}

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');
}

export class Conn {
  /** One write for a TCP socket; each element in a message of its own over WebSocket. */
  readonly #send: (s: string) => void;
  readonly #kill: () => void;
  /** Over WebSocket every write is one element: writeAll sends each part on its own. */
  readonly framed: boolean;
  #buf = '';
  #waiter: { markers: string[]; resolve: (i: number) => void } | null = null;
  /** Set once logged in: receives every later chunk as text. */
  onText: ((text: string) => void) | null = null;
  closed = false;
  /** The TCP socket (null over WebSocket), for writers that wait for 'drain'. */
  socket: Socket | null = null;

  private constructor(send: (s: string) => void, kill: () => void, framed: boolean) {
    this.#send = send;
    this.#kill = kill;
    this.framed = framed;
  }

  static tcp(socket: Socket): Conn {
    const c = new Conn((s) => socket.write(s), () => socket.destroy(), false);
    c.socket = socket;
    socket.setEncoding('utf8');
    socket.setNoDelay(true);
    socket.on('data', (text: string) => c.#received(text));
    socket.on('close', () => c.#gone());
    socket.on('error', () => {});
    return c;
  }

  static ws(ws: WebSocket): Conn {
    const c = new Conn((s) => ws.send(s), () => ws.terminate(), true);
    ws.on('message', (data) => c.#received(data.toString()));
    ws.on('close', () => c.#gone());
    ws.on('error', () => {});
    return c;
  }

  #received(text: string): void {
    if (this.onText !== null) {
      this.onText(text);
      return;
    }
    this.#buf += text;
    this.#check();
  }

  #gone(): void {
    this.closed = true;
    this.#check();
  }

  #check(): void {
    const w = this.#waiter;
    if (w === null) return;
    for (let i = 0; i < w.markers.length; i++) {
      const at = this.#buf.indexOf(w.markers[i]!);
      if (at !== -1) {
        this.#buf = this.#buf.slice(at + w.markers[i]!.length);
        this.#waiter = null;
        w.resolve(i);
        return;
      }
    }
    if (this.closed) {
      this.#waiter = null;
      w.resolve(-1);
    }
  }

  /** Index of the first marker seen in the text received so far; -1 if the connection closed first. */
  waitFor(...markers: string[]): Promise<number> {
    return new Promise((resolve) => {
      this.#waiter = { markers, resolve };
      this.#check();
    });
  }

  write(s: string): void {
    if (!this.closed) this.#send(s);
  }

  /** Several stanzas: one write over TCP, one message each over WebSocket (RFC 7395 §3.3.1). */
  writeAll(parts: readonly string[]): void {
    if (this.closed) return;
    if (!this.framed) this.#send(parts.join(''));
    else for (const p of parts) this.#send(p);
  }

  /** Hands any text received after the last marker to onText. */
  drain(): void {
    const rest = this.#buf;
    this.#buf = '';
    if (rest !== '' && this.onText !== null) this.onText(rest);
  }

  destroy(): void {
    this.closed = true;
    this.#kill();
  }
}

async function open(o: LoginOptions): Promise<Conn> {
  if (o.ws !== undefined) {
    const ws = new WebSocket(`ws://${o.host}:${o.ws.port}${o.ws.path}`, ['xmpp'], { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return Conn.ws(ws);
  }
  const socket = connect({ host: o.host, port: o.port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return Conn.tcp(socket);
}

export async function login(o: LoginOptions): Promise<Conn> {
  const c = await open(o);
  const ws = o.ws !== undefined;
  const timer = setTimeout(() => c.destroy(), o.timeoutMs ?? 60_000);
  try {
    const step = async (out: string, ...markers: string[]) => {
      c.write(out);
      const i = await c.waitFor(...markers);
      if (i < 0) throw new Error(`${o.user}: connection closed while waiting for ${markers.join(' or ')}`);
      return i;
    };
    await step(header(o.domain, ws), '</stream:features>');
    if (o.register) {
      // XEP-0077 §3.1: registering an existing account answers <conflict/>, which is fine here.
      await step(
        `<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>${escape(o.user)}</username><password>${escape(o.password)}</password></query></iq>`,
        "id='reg1'",
        'id="reg1"',
      );
    }
    const token = Buffer.from(`\0${o.user}\0${o.password}`).toString('base64');
    const r = await step(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${token}</auth>`, '<success', '<failure');
    if (r !== 0) throw new Error(`${o.user}: authentication failed`);
    // RFC 6120 §6.4.6: a new stream after SASL success.
    await step(header(o.domain, ws), '</stream:features>');
    await step(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${escape(o.resource)}</resource></bind></iq>`, '</jid>');
    if (o.presence) c.write('<presence/>');
    return c;
  } catch (err) {
    c.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
