// XMPP over WebSocket (RFC 7395) end to end: a real server with a
// [[listen.http]] listener serving mongoose_websocket_handler beside the
// Prometheus handler, @xmpp/client's WebSocket transport, a TCP user on the
// same server, and WebSocket clients of the `ws` library for what a library
// that follows the protocol never sends.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { freePort, makeCert, preparePetrel, startPetrel, tempDir, type Petrel } from './helpers/server.ts';
import { connect, isMessage, xml, type TestClient } from './helpers/client.ts';

const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

let server: Petrel;
let httpPort: number;
const open: TestClient[] = [];

function websocketToml(port: number, handlerExtra = ''): string {
  return `[[listen.http]]
  port = ${port}
  ip_address = "127.0.0.1"
  [[listen.http.handlers.mongoose_websocket_handler]]
    host = "_"
    path = "/ws-xmpp"
${handlerExtra}
  [[listen.http.handlers.mongoose_prometheus_handler]]
    host = "_"
    path = "/metrics"
`;
}

function wsUrl(): string {
  return `ws://127.0.0.1:${httpPort}/ws-xmpp`;
}

async function loginWs(user: string, resource?: string): Promise<TestClient> {
  const c = await connect(server, user, `pw-${user}`, { resource, service: wsUrl() });
  open.push(c);
  return c;
}

async function loginTcp(user: string, resource?: string): Promise<TestClient> {
  const c = await connect(server, user, `pw-${user}`, { resource });
  open.push(c);
  return c;
}

/** A raw WebSocket client: every message it gets, in order, and the close code. */
class RawWs {
  readonly ws: WebSocket;
  readonly messages: string[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: Array<() => void> = [];

  constructor(url: string, protocols: string[] = ['xmpp'], headers: Record<string, string> = {}) {
    this.ws = new WebSocket(url, protocols, { headers });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.ws.on('message', (data) => {
      this.messages.push(data.toString());
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  send(text: string | Buffer, binary = false): void {
    this.ws.send(text, { binary });
  }

  /** Waits until a message matching `pred` has arrived; returns it. */
  async waitFor(pred: (m: string) => boolean, ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = this.messages.find(pred);
      if (m !== undefined) return m;
      if (Date.now() > deadline) throw new Error(`no matching message; got:\n${this.messages.join('\n')}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }
}

const OPEN = `<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`;

before(async () => {
  httpPort = await freePort();
  server = await startPetrel({
    users: [['alice', 'pw-alice'], ['bob', 'pw-bob'], ['carol', 'pw-carol'], ['dave', 'pw-dave']],
    extraToml: websocketToml(httpPort),
  });
});

after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await server.dispose();
});

describe('XMPP over WebSocket with @xmpp/client', () => {
  test('a WebSocket user logs in, binds a resource and chats both ways with a TCP user', async () => {
    const ws = await loginWs('alice', 'browser');
    const tcp = await loginTcp('bob', 'desk');
    assert.equal(ws.jid, 'alice@localhost/browser');
    const id = await ws.message('bob@localhost/desk', 'hello from a WebSocket');
    const got = await tcp.waitFor(isMessage(id));
    assert.equal(got.getChildText('body'), 'hello from a WebSocket');
    assert.equal(got.attrs.from, 'alice@localhost/browser');
    const back = await tcp.message('alice@localhost/browser', 'hello from TCP');
    const reply = await ws.waitFor(isMessage(back));
    assert.equal(reply.getChildText('body'), 'hello from TCP');
  });

  test('a message of 100 KB, larger than the input slice a bound session handles per turn, reaches the other user whole', async () => {
    const ws = await loginWs('alice', 'big');
    const tcp = await loginTcp('bob', 'big');
    const body = 'b'.repeat(100_000);
    const id = await ws.message('bob@localhost/big', body);
    const got = await tcp.waitFor(isMessage(id));
    assert.equal(got.getChildText('body'), body);
    const back = await tcp.message('alice@localhost/big', body);
    assert.equal((await ws.waitFor(isMessage(back))).getChildText('body'), body);
  });

  test('every SASL mechanism the TCP listener offers works over WebSocket', async () => {
    for (const mechanism of ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'] as const) {
      const c = await connect(server, 'alice', 'pw-alice', { resource: `sasl-${mechanism}`, mechanism, service: wsUrl() });
      open.push(c);
      assert.equal(c.jid, `alice@localhost/sasl-${mechanism}`);
      await c.close();
    }
  });

  test('roster and presence work over WebSocket as over TCP', async () => {
    const ws = await loginWs('carol', 'tab');
    await ws.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: 'jabber:iq:roster' }, xml('item', { jid: 'bob@localhost', name: 'Bob' }))));
    const roster = await ws.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
    const items = roster.getChild('query')!.getChildren('item');
    assert.deepEqual(items.map((i) => i.attrs.jid), ['bob@localhost']);
    await ws.available();
  });

  test('a message to a WebSocket user who is offline is stored and delivered at the next login', async () => {
    const tcp = await loginTcp('bob', 'offline-sender');
    const id = await tcp.message('dave@localhost', 'while you were away');
    // The message is stored once the server has handled it; a ping round trip after it shows that.
    await tcp.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    const ws = await loginWs('dave', 'later');
    await ws.available();
    const got = await ws.waitFor(isMessage(id));
    assert.equal(got.getChildText('body'), 'while you were away');
  });

  test('the same listener serves Prometheus metrics beside the WebSocket endpoint', async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /# TYPE /);
    const plain = await fetch(`http://127.0.0.1:${httpPort}/ws-xmpp`);
    assert.equal(plain.status, 426);
    await plain.text();
  });
});

describe('RFC 7395 framing', () => {
  test('the xmpp subprotocol is chosen, and the stream opens with <open/> and features in their own messages', async () => {
    const c = new RawWs(wsUrl(), ['chat', 'xmpp']);
    await c.opened;
    assert.equal(c.ws.protocol, 'xmpp');
    c.send(OPEN);
    const opened = await c.waitFor((m) => m.startsWith('<open'));
    assert.match(opened, new RegExp(`^<open xmlns='${NS_FRAMING}' [^>]*from='localhost'[^>]*version='1.0'[^>]*/>$`));
    const features = await c.waitFor((m) => m.includes('features'));
    assert.match(features, /^<stream:features xmlns:stream='http:\/\/etherx.jabber.org\/streams'>.*<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>/);
    assert.doesNotMatch(features, /starttls/, 'STARTTLS is never offered over WebSocket (RFC 7395 §3.8)');
    c.ws.close();
    await c.closed;
  });

  test('a handshake that does not offer the xmpp subprotocol is refused with 400', async () => {
    const c = new RawWs(wsUrl(), []);
    await assert.rejects(c.opened, (err: Error & { status?: number }) => err.status === 400);
  });

  test('<close/> is answered with <close/> and the WebSocket close handshake', async () => {
    const c = new RawWs(wsUrl());
    await c.opened;
    c.send(OPEN);
    await c.waitFor((m) => m.includes('features'));
    c.send(`<close xmlns='${NS_FRAMING}'/>`);
    await c.waitFor((m) => m === `<close xmlns='${NS_FRAMING}'/>`);
    const { code } = await c.closed;
    assert.equal(code, 1000);
  });

  test('a stanza before <open/> ends the stream with a stream error and <close/>', async () => {
    const c = new RawWs(wsUrl());
    await c.opened;
    c.send("<message xmlns='jabber:client' to='bob@localhost'><body>hi</body></message>");
    const err = await c.waitFor((m) => m.startsWith('<stream:error'));
    assert.match(err, /xmlns:stream='http:\/\/etherx.jabber.org\/streams'/);
    assert.match(err, /invalid-namespace/);
    await c.waitFor((m) => m.startsWith('<close'));
    await c.closed;
  });

  test('a stream opened with <stream:stream> instead of <open/> gets policy-violation', async () => {
    const c = new RawWs(wsUrl());
    await c.opened;
    c.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'/>");
    const err = await c.waitFor((m) => m.startsWith('<stream:error'));
    assert.match(err, /policy-violation/);
    const last = await c.waitFor((m) => m.startsWith('<close'));
    assert.equal(last, `<close xmlns='${NS_FRAMING}'/>`);
    await c.closed;
  });
});

describe('hostile input over WebSocket', () => {
  async function opened(): Promise<RawWs> {
    const c = new RawWs(wsUrl());
    await c.opened;
    c.send(OPEN);
    await c.waitFor((m) => m.includes('features'));
    return c;
  }

  async function expectStreamError(c: RawWs, condition: string): Promise<void> {
    const err = await c.waitFor((m) => m.startsWith('<stream:error'));
    assert.match(err, new RegExp(`<${condition} `));
    await c.waitFor((m) => m.startsWith('<close'));
    await c.closed;
  }

  test('malformed XML in a message is not-well-formed, then <close/>', async () => {
    const c = await opened();
    c.send("<message xmlns='jabber:client'><body>unclosed</message>");
    await expectStreamError(c, 'not-well-formed');
  });

  test('a message cut off in the middle of an element is not-well-formed', async () => {
    const c = await opened();
    c.send("<message xmlns='jabber:client'><body>half");
    await expectStreamError(c, 'not-well-formed');
  });

  test('two elements in one message are refused', async () => {
    const c = await opened();
    c.send("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>");
    await expectStreamError(c, 'not-well-formed');
  });

  test('a message larger than max_stanza_size_before_auth gets policy-violation', async () => {
    const c = await opened();
    c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${'A'.repeat(20_000)}</auth>`);
    await expectStreamError(c, 'policy-violation');
  });

  test('a frame larger than max_frame_size is refused by the WebSocket layer with close code 1009', async () => {
    const c = await opened();
    c.send(`<message xmlns='jabber:client'><body>${'x'.repeat(300_000)}</body></message>`);
    const { code } = await c.closed;
    assert.equal(code, 1009);
  });

  test('a binary frame closes the connection with code 1003', async () => {
    const c = await opened();
    c.send(Buffer.from("<presence xmlns='jabber:client'/>"), true);
    const { code } = await c.closed;
    assert.equal(code, 1003);
  });

  test('a comment in a message is restricted-xml', async () => {
    const c = await opened();
    c.send("<presence xmlns='jabber:client'><!-- hi --></presence>");
    await expectStreamError(c, 'restricted-xml');
  });

  test('a second <open/> inside an open stream is policy-violation', async () => {
    const c = await opened();
    c.send(OPEN);
    await expectStreamError(c, 'policy-violation');
  });

  test('</stream:stream> over WebSocket is refused', async () => {
    const c = await opened();
    c.send('</stream:stream>');
    await expectStreamError(c, 'not-well-formed');
  });

  test('a client that opens the stream and then says nothing is dropped after state_timeout', async () => {
    const c = await opened();
    await expectStreamError(c, 'connection-timeout');
  });
});

/** Logs in over a raw WebSocket with PLAIN and binds `resource`; the connection is ready for stanzas. */
async function rawLogin(url: string, user: string, password: string, resource: string, headers: Record<string, string> = {}): Promise<RawWs> {
  const c = new RawWs(url, ['xmpp'], headers);
  await c.opened;
  c.send(OPEN);
  await c.waitFor((m) => m.includes('features'));
  c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`);
  await c.waitFor((m) => m.startsWith('<success'));
  // RFC 7395 §3.5: the stream restarts with a fresh <open/>.
  c.messages.length = 0;
  c.send(OPEN);
  await c.waitFor((m) => m.includes('features'));
  c.send(`<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`);
  await c.waitFor((m) => m.includes("id='b1'") || m.includes('id="b1"'));
  return c;
}

describe('the limits of a WebSocket handler', () => {
  let limited: Petrel;
  let port: number;
  const url = (path: string) => `ws://127.0.0.1:${port}${path}`;

  before(async () => {
    port = await freePort();
    limited = await startPetrel({
      users: [['erin', 'pw-erin'], ['frank', 'pw-frank']],
      extraToml: `[[listen.http]]
  port = ${port}
  ip_address = "127.0.0.1"
  [listen.http.transport]
    max_connections = 6
  [[listen.http.handlers.mongoose_websocket_handler]]
    host = "_"
    path = "/idle"
    timeout = 1500
  [[listen.http.handlers.mongoose_websocket_handler]]
    host = "_"
    path = "/pinged"
    timeout = 1500
    ping_rate = 300
  [[listen.http.handlers.mongoose_websocket_handler]]
    host = "_"
    path = "/origin"
    allowed_origins = ["https://chat.example"]
  [[listen.http.handlers.mongoose_websocket_handler]]
    host = "_"
    path = "/small"
    max_output_buffer = 65536
    max_auth_failures = 2
  [[listen.http.handlers.mod_websockets]]
    host = "_"
    path = "/legacy"
`,
    });
  });

  after(async () => {
    await limited.dispose();
  });

  test('the pre-6.6 name mod_websockets serves the same endpoint, and start and check-config warn that it is deprecated', async () => {
    assert.match(limited.stderr, /petrel: warning: listen\.http\[0\]\.handlers\.mod_websockets\[0\]: mod_websockets is the name MongooseIM used before 6\.6/);
    const check = await limited.cli(['check-config']);
    assert.match(check.stdout + check.stderr, /listen\.http\[0\]\.handlers\.mod_websockets\[0\]: mod_websockets is the name MongooseIM used before 6\.6/);
    const c = await rawLogin(url('/legacy'), 'erin', 'pw-erin', 'legacy');
    c.ws.close();
    await c.closed;
  });

  test('an origin in allowed_origins connects; any other origin, or none, gets 403', async () => {
    const ok = new RawWs(url('/origin'), ['xmpp'], { origin: 'https://chat.example' });
    await ok.opened;
    ok.ws.close();
    await ok.closed;
    for (const headers of [{ origin: 'https://evil.example' }, {}] as Array<Record<string, string>>) {
      const c = new RawWs(url('/origin'), ['xmpp'], headers);
      await assert.rejects(c.opened, (err: Error & { status?: number }) => err.status === 403);
    }
  });

  test('timeout closes a connection that sends nothing for that long', async () => {
    const c = await rawLogin(url('/idle'), 'erin', 'pw-erin', 'idle');
    const { code } = await c.closed;
    assert.equal(code, 1000);
    assert.ok(c.messages.includes(`<close xmlns='${NS_FRAMING}'/>`), 'the stream is closed with <close/> first');
  });

  test('with ping_rate the client answers the server pings and stays connected past timeout', async () => {
    const c = await rawLogin(url('/pinged'), 'erin', 'pw-erin', 'pinged');
    let pings = 0;
    c.ws.on('ping', () => pings++);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    assert.ok(pings >= 3, `pings: ${pings}`);
    c.ws.close();
    await c.closed;
  });

  test('max_auth_failures applies to WebSocket logins', async () => {
    const c = new RawWs(url('/small'));
    await c.opened;
    c.send(OPEN);
    await c.waitFor((m) => m.includes('features'));
    const bad = `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0erin\0wrong').toString('base64')}</auth>`;
    c.send(bad);
    await c.waitFor((m) => m.startsWith('<failure'));
    c.send(bad);
    await c.waitFor((m) => m.startsWith('<stream:error'));
    await c.waitFor((m) => m.startsWith('<close'));
    await c.closed;
  });

  test("a WebSocket client that stops reading is not cut off by another user's flood, which comes back to its sender; past max_output_buffer of its own output it is disconnected", async () => {
    const reader = await rawLogin(url('/small'), 'frank', 'pw-frank', 'stalled');
    reader.ws.pause();
    const sender = await rawLogin(url('/small'), 'erin', 'pw-erin', 'flood');
    const body = 'q'.repeat(4000);
    let kicked = false;
    void limited.waitForLog((l) => l.what === 'c2s_slow_reader' && String(l.jid).startsWith('frank@localhost/stalled'), 60_000).then(() => (kicked = true), () => {});
    const bounced = () => sender.messages.some((m) => m.includes('<resource-constraint'));
    for (let i = 0; i < 20_000 && !bounced(); i++) {
      sender.send(`<message xmlns='jabber:client' to='frank@localhost/stalled' type='chat' id='f${i}'><body>${body}</body></message>`);
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5));
    }
    await sender.waitFor((m) => m.includes('<resource-constraint'), 20_000);
    assert.equal(kicked, false, "the reader is not disconnected for another user's traffic");
    // Its own requests, whose answers it does not read, take it past the cap.
    for (let i = 0; i < 200_000 && !kicked; i++) {
      reader.send(`<iq xmlns='jabber:client' type='get' id='p${i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 2));
    }
    await limited.waitForLog((l) => l.what === 'c2s_slow_reader' && String(l.jid).startsWith('frank@localhost/stalled'), 20_000);
    reader.ws.terminate();
    sender.ws.close();
    await sender.closed;
  });

  test('transport.max_connections of the HTTP listener bounds WebSocket connections', async () => {
    const held: RawWs[] = [];
    let refused = 0;
    for (let i = 0; i < 9; i++) {
      const c = new RawWs(url('/origin'), ['xmpp'], { origin: 'https://chat.example' });
      try {
        await c.opened;
        held.push(c);
      } catch {
        refused++;
      }
    }
    assert.ok(held.length <= 6, `${held.length} connections were accepted`);
    assert.ok(refused >= 3, `${refused} connections were refused`);
    for (const c of held) c.ws.terminate();
  });
});

describe('the c2s connection limits over WebSocket', () => {
  let capped: Petrel;
  let port: number;

  before(async () => {
    port = await freePort();
    capped = await preparePetrel({
      extraToml: `[[listen.http]]\n  port = ${port}\n  ip_address = "127.0.0.1"\n  [[listen.http.handlers.mongoose_websocket_handler]]\n    host = "_"\n    path = "/ws"\n`,
    });
    const toml = await readFile(capped.configPath, 'utf8');
    await writeFile(capped.configPath, toml.replace('[general]\n', '[general]\n  max_c2s_connections_per_address = 2\n'));
    await capped.start();
  });

  after(async () => {
    await capped?.dispose();
  });

  test('max_c2s_connections_per_address counts WebSocket connections: past it the upgrade is refused with 503, and a closed one frees its slot', async () => {
    const url = `ws://127.0.0.1:${port}/ws`;
    const a = new RawWs(url, ['xmpp']);
    const b = new RawWs(url, ['xmpp']);
    await a.opened;
    await b.opened;
    const c = new RawWs(url, ['xmpp']);
    await assert.rejects(c.opened, /503/);
    a.ws.close();
    await a.closed;
    // The slot is given back once the socket is gone.
    let d: RawWs | undefined;
    for (let i = 0; i < 50 && d === undefined; i++) {
      const t = new RawWs(url, ['xmpp']);
      try {
        await t.opened;
        d = t;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    assert.ok(d !== undefined, 'a new connection got in after one closed');
    b.ws.terminate();
    d.ws.terminate();
  });
});

describe('wss: a WebSocket listener with TLS', () => {
  let secure: Petrel;
  let port: number;
  let ca: Buffer;

  before(async () => {
    port = await freePort();
    const dir = await tempDir();
    const cert = await makeCert(dir);
    ca = readFileSync(cert.certfile);
    secure = await startPetrel({
      users: [['gina', 'pw-gina']],
      extraToml: `[[listen.http]]
  port = ${port}
  ip_address = "127.0.0.1"
  [listen.http.tls]
    certfile = ${JSON.stringify(cert.certfile)}
    keyfile = ${JSON.stringify(cert.keyfile)}
  [[listen.http.handlers.mongoose_websocket_handler]]
    host = "_"
    path = "/ws-xmpp"
`,
    }, dir);
  });

  after(async () => {
    await secure.dispose();
  });

  test('a client logs in over wss://, with no STARTTLS offered', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/ws-xmpp`, ['xmpp'], {
      ca,
      // The certificate names localhost; the connection goes to 127.0.0.1. (Node wants undefined for a match; the ws types say boolean.)
      checkServerIdentity: (() => undefined) as unknown as () => boolean,
    });
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(d.toString()));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const next = async (pred: (m: string) => boolean) => {
      const deadline = Date.now() + 10_000;
      while (!messages.some(pred)) {
        if (Date.now() > deadline) throw new Error(`nothing matched; got:\n${messages.join('\n')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return messages.find(pred)!;
    };
    ws.send(OPEN);
    const features = await next((m) => m.includes('features'));
    assert.doesNotMatch(features, /starttls/);
    ws.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0gina\0pw-gina').toString('base64')}</auth>`);
    await next((m) => m.startsWith('<success'));
    ws.close();
    await new Promise((r) => ws.once('close', r));
  });
});
