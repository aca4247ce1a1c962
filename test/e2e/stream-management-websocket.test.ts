// XEP-0198 resumption across transports: a session that lost its WebSocket
// connection is resumed over TCP, and one that lost its TCP connection is
// resumed over WebSocket (RFC 7395). The messages the client had not
// acknowledged, and those sent while it was away, arrive once each.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { freePort, startPetrel, type Petrel } from './helpers/server.ts';
import { connect, type TestClient } from './helpers/client.ts';
import { RawConnection } from './helpers/raw.ts';

const NS_SM = 'urn:xmpp:sm:3';
const FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

/** An XMPP client over WebSocket, one element per message, text kept for matching. */
class WsClient {
  readonly ws: WebSocket;
  data = '';
  #waiters: Array<() => void> = [];
  readonly opened: Promise<void>;

  constructor(url: string) {
    this.ws = new WebSocket(url, ['xmpp']);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('message', (d) => {
      this.data += d.toString();
      for (const w of this.#waiters.slice()) w();
    });
    this.ws.on('error', () => {});
  }

  send(s: string): void {
    this.ws.send(s);
  }

  /** The text up to the first match of `pattern` after `from` (a position in `data`); resolves with its end. */
  waitFor(pattern: RegExp, from = 0, timeoutMs = 10_000): Promise<{ text: string; end: number }> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const rest = this.data.slice(from);
        const m = pattern.exec(rest);
        if (m === null) return false;
        resolve({ text: m[0], end: from + m.index + m[0].length });
        return true;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${pattern} within ${timeoutMs} ms; received:\n${this.data}`));
      }, timeoutMs);
      const waiter = () => {
        if (check()) {
          clearTimeout(timer);
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
        }
      };
      this.#waiters.push(waiter);
    });
  }

  async openStream(from: number): Promise<number> {
    this.send(`<open xmlns='${FRAMING}' to='localhost' version='1.0'/>`);
    return (await this.waitFor(/<\/stream:features>/, from)).end;
  }

  async auth(user: string, password: string): Promise<number> {
    let at = await this.openStream(0);
    this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`);
    at = (await this.waitFor(/<success[^>]*(\/>|>[^<]*<\/success>)/, at)).end;
    return this.openStream(at);
  }
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe('stream management across TCP and WebSocket', () => {
  let server: Petrel;
  let wsPort: number;
  let bob: TestClient;

  before(async () => {
    wsPort = await freePort();
    server = await startPetrel({
      users: [['alice', 'pw-alice'], ['bob', 'pw-bob']],
      sasl_mechanisms: ['scram_sha256', 'plain'],
      extraToml: `[modules.mod_stream_management]
[[listen.http]]
  port = ${wsPort}
  ip_address = "127.0.0.1"
  [[listen.http.handlers.mongoose_websocket_handler]]
    host = "_"
    path = "/ws-xmpp"
`,
    });
    bob = await connect(server, 'bob', 'pw-bob');
  });

  after(async () => {
    await bob?.close();
    await server?.dispose();
  });

  test('a session whose WebSocket dropped is resumed over TCP: nothing lost, nothing twice', async () => {
    const ws = new WsClient(`ws://127.0.0.1:${wsPort}/ws-xmpp`);
    await ws.opened;
    let at = await ws.auth('alice', 'pw-alice');
    ws.send(`<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>`);
    at = (await ws.waitFor(/<\/iq>/, at)).end;
    ws.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const enabled = await ws.waitFor(/<enabled [^>]*\/>/, at);
    const id = /id=['"]([^'"]+)['"]/.exec(enabled.text)![1]!;
    for (let i = 1; i <= 3; i++) await bob.message('alice@localhost/phone', `before drop ${i}`);
    await ws.waitFor(/before drop 3/, enabled.end);
    // Acknowledge the first one only (counting starts at <enabled/>), then the connection dies.
    ws.send(`<a xmlns='${NS_SM}' h='1'/>`);
    await new Promise((r) => setTimeout(r, 100));
    ws.ws.terminate();
    for (let i = 1; i <= 2; i++) await bob.message('alice@localhost/phone', `while away ${i}`);

    const tcp = await RawConnection.open(server.port);
    try {
      await tcp.openStream();
      tcp.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0alice\0pw-alice').toString('base64')}</auth>`);
      await tcp.waitFor('<success');
      await tcp.openStream();
      tcp.send(`<resume xmlns='${NS_SM}' previd='${id}' h='1'/>`);
      const resumed = await tcp.waitFor(/<resumed[^>]*\/>/);
      assert.match(resumed, new RegExp(`previd=['"]${id}['"]`));
      await tcp.waitFor('while away 2');
      await new Promise((r) => setTimeout(r, 200));
      const after = tcp.data.slice(tcp.data.indexOf('<resumed'));
      assert.equal(count(after, 'before drop 1'), 0, 'an acknowledged message is not sent again');
      for (const body of ['before drop 2', 'before drop 3', 'while away 1', 'while away 2']) assert.equal(count(after, body), 1, body);
      // The resumed session is alice@localhost/phone, now over TCP.
      await bob.message('alice@localhost/phone', 'over tcp now');
      await tcp.waitFor('over tcp now');
    } finally {
      tcp.destroy();
    }
  });

  test('a session whose TCP connection dropped is resumed over WebSocket: nothing lost, nothing twice', async () => {
    const tcp = await RawConnection.open(server.port);
    await tcp.login('alice', 'pw-alice', 'laptop');
    tcp.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const id = /id=['"]([^'"]+)['"]/.exec(await tcp.waitFor(/<enabled[^>]*\/>/))![1]!;
    for (let i = 1; i <= 2; i++) await bob.message('alice@localhost/laptop', `tcp unacked ${i}`);
    await tcp.waitFor('tcp unacked 2');
    tcp.destroy();
    await bob.message('alice@localhost/laptop', 'tcp away');

    const ws = new WsClient(`ws://127.0.0.1:${wsPort}/ws-xmpp`);
    try {
      await ws.opened;
      const at = await ws.auth('alice', 'pw-alice');
      ws.send(`<resume xmlns='${NS_SM}' previd='${id}' h='0'/>`);
      const resumed = await ws.waitFor(/<resumed [^>]*\/>/, at);
      assert.match(resumed.text, new RegExp(`previd=['"]${id}['"]`));
      await ws.waitFor(/tcp away/, resumed.end);
      await new Promise((r) => setTimeout(r, 200));
      const after = ws.data.slice(resumed.end);
      for (const body of ['tcp unacked 1', 'tcp unacked 2', 'tcp away']) assert.equal(count(after, body), 1, body);
      // Each stanza is a complete element of its own (RFC 7395 §3.3.1), the stream management ones too.
      assert.match(ws.data, /<r xmlns=['"]urn:xmpp:sm:3['"]\/>/);
    } finally {
      ws.ws.terminate();
    }
  });
});
