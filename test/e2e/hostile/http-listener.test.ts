// The [[listen.http]] listener against hostile clients: refused WebSocket
// handshakes are answered and closed (and give their connection slot back),
// HTTP connections count against max_c2s_connections_per_address from the
// moment they are accepted, and a request head that never completes is cut
// off after the listener's headers_timeout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import type { Petrel } from '../helpers/server.ts';
import { freePort } from '../helpers/server.ts';
import { RawConnection, startHostile } from './setup.ts';

const PER_ADDRESS = 5;
const OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";

function httpToml(port: number, protocol = ''): string {
  return `[[listen.http]]
  port = ${port}
  ip_address = "127.0.0.1"
${protocol}
  [[listen.http.handlers.mongoose_websocket_handler]]
    host = "_"
    path = "/ws-xmpp"
`;
}

/** A raw TCP connection from `localAddress`: what the server sent, and whether the server closed it. */
interface Raw {
  socket: Socket;
  data(): string;
  /** Resolves with everything received once the server has closed the connection; rejects after `ms`. */
  closedByServer(ms?: number): Promise<string>;
}

function rawFrom(port: number, localAddress: string, text?: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    let data = '';
    let closed = false;
    const closers: Array<() => void> = [];
    const socket = netConnect({ host: '127.0.0.1', port, localAddress }, () => {
      if (text !== undefined) socket.write(text);
      resolve({
        socket,
        data: () => data,
        closedByServer: (ms = 5000) =>
          new Promise((res, rej) => {
            if (closed) return res(data);
            const timer = setTimeout(() => rej(new Error(`the server did not close the connection within ${ms} ms; received: ${JSON.stringify(data)}`)), ms);
            closers.push(() => {
              clearTimeout(timer);
              res(data);
            });
          }),
      });
    });
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (data += d));
    // The server's FIN (or a reset): the connection is over from the client's side too.
    const end = (): void => {
      if (closed) return;
      closed = true;
      for (const c of closers.splice(0)) c();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.once('error', (err) => (closed ? undefined : reject(err)));
  });
}

function upgradeRequest(over: Record<string, string | null>): string {
  const h: Record<string, string | null> = {
    Host: 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Protocol': 'xmpp',
    ...over,
  };
  return 'GET /ws-xmpp HTTP/1.1\r\n' + Object.entries(h).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n';
}

/** Logs in over WebSocket from `localAddress` with PLAIN and binds a resource; resolves with the bound JID. */
async function wsLogin(port: number, localAddress: string, user: string, password: string): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws-xmpp`, ['xmpp'], { localAddress });
  const messages: string[] = [];
  let wake: (() => void) | null = null;
  ws.on('message', (d) => {
    messages.push(d.toString());
    wake?.();
  });
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake refused: ${res.statusCode}`)));
    });
    const next = async (re: RegExp): Promise<string> => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const i = messages.findIndex((m) => re.test(m));
        if (i >= 0) return messages.splice(0, i + 1)[i]!;
        if (ws.readyState !== ws.OPEN) throw new Error(`closed before ${re}; got ${messages.join(' ')}`);
        if (Date.now() > deadline) throw new Error(`no ${re}; got ${messages.join(' ')}`);
        await Promise.race([new Promise<void>((r) => (wake = r)), closed, new Promise((r) => setTimeout(r, 200))]);
      }
    };
    ws.send(OPEN);
    await next(/<stream:features/);
    ws.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`);
    await next(/^<success/);
    ws.send(OPEN);
    await next(/<stream:features/);
    ws.send(`<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r${Math.random().toString(36).slice(2, 8)}</resource></bind></iq>`);
    const bound = await next(/id=['"]b1['"]/);
    const jid = /<jid>([^<]+)<\/jid>/.exec(bound)?.[1];
    if (jid === undefined) throw new Error(`binding failed: ${bound}`);
    return jid;
  } finally {
    ws.terminate();
  }
}

/** Logs in over the TCP c2s listener from `localAddress`. */
async function tcpLogin(port: number, localAddress: string, user: string, password: string): Promise<string> {
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port, localAddress }, () => resolve(s));
    s.once('error', reject);
  });
  const raw = new RawConnection(socket);
  try {
    return await raw.login(user, password, 'tcp');
  } finally {
    raw.destroy();
  }
}

/**
 * A server with an HTTP listener (with `protocol` in its table) for the tests
 * of one describe block: started before them, stopped after, with the
 * sockets they held.
 */
function serverForBlock(protocol = ''): { server: Petrel; httpPort: number; held: Socket[] } {
  const srv = { server: undefined as unknown as Petrel, httpPort: 0, held: [] as Socket[] };
  before(async () => {
    srv.httpPort = await freePort();
    srv.server = await startHostile({
      general: { max_c2s_connections_per_address: PER_ADDRESS },
      users: [['alice', 'pw-alice']],
      extraToml: httpToml(srv.httpPort, protocol),
    });
  });
  after(async () => {
    for (const s of srv.held) s.destroy();
    await srv.server?.dispose();
  });
  return srv;
}

describe('refused WebSocket handshakes and per-address limits on the HTTP listener', () => {
  const srv = serverForBlock();

  const variants: Array<[string, Record<string, string | null>, RegExp]> = [
    ['no Sec-WebSocket-Key', { 'Sec-WebSocket-Key': null }, /^HTTP\/1\.1 400 /],
    ['a bad Sec-WebSocket-Key', { 'Sec-WebSocket-Key': 'short' }, /^HTTP\/1\.1 400 /],
    ['Sec-WebSocket-Version: 99', { 'Sec-WebSocket-Version': '99' }, /^HTTP\/1\.1 426 [^]*\r\nSec-WebSocket-Version: 13\r\n/i],
    ['no Sec-WebSocket-Version', { 'Sec-WebSocket-Version': null }, /^HTTP\/1\.1 426 [^]*\r\nSec-WebSocket-Version: 13\r\n/i],
    ['Upgrade: foo', { Upgrade: 'foo' }, /^HTTP\/1\.1 400 /],
    ['Sec-WebSocket-Protocol: xmpp, xmpp', { 'Sec-WebSocket-Protocol': 'xmpp, xmpp' }, /^HTTP\/1\.1 400 /],
  ];
  for (const [name, over, status] of variants) {
    test(`a handshake with ${name} gets its HTTP status and is closed by the server`, async () => {
      const c = await rawFrom(srv.httpPort, '127.0.0.1', upgradeRequest(over));
      srv.held.push(c.socket);
      const got = await c.closedByServer();
      assert.match(got, status);
    });
  }

  test('more refused handshakes from one address than max_c2s_connections_per_address do not lock it out', async () => {
    const from = '127.0.0.3';
    for (let i = 0; i < PER_ADDRESS * 2; i++) {
      // The client never closes its side: the server must.
      const c = await rawFrom(srv.httpPort, from, upgradeRequest({ 'Sec-WebSocket-Key': null }));
      srv.held.push(c.socket);
      assert.match(await c.closedByServer(), /^HTTP\/1\.1 400 /);
    }
    assert.equal(await wsLogin(srv.httpPort, from, 'alice', 'pw-alice').then((j) => j.split('/')[0]), 'alice@localhost');
    assert.equal((await tcpLogin(srv.server.port, from, 'alice', 'pw-alice')).split('/')[0], 'alice@localhost');
  });

  test('half-closed refused handshakes (the client sends its FIN at once) do not lock the address out', async () => {
    const from = '127.0.0.6';
    for (let i = 0; i < PER_ADDRESS * 2; i++) {
      const c = await rawFrom(srv.httpPort, from);
      srv.held.push(c.socket);
      c.socket.end(upgradeRequest({ 'Sec-WebSocket-Version': '99' }));
      await c.closedByServer();
    }
    assert.equal((await wsLogin(srv.httpPort, from, 'alice', 'pw-alice')).split('/')[0], 'alice@localhost');
  });

  test('idle partial HTTP requests count against the per-address limit: the next connection from that address is refused, another address logs in', async () => {
    const from = '127.0.0.4';
    const partial: Raw[] = [];
    for (let i = 0; i < PER_ADDRESS; i++) {
      const c = await rawFrom(srv.httpPort, from, 'GET /ws-xmpp HTTP/1.1\r\nHost: localhost\r\n');
      srv.held.push(c.socket);
      partial.push(c);
    }
    // A connection past the limit is answered 503 and closed, before any request.
    const next = await rawFrom(srv.httpPort, from);
    srv.held.push(next.socket);
    assert.match(await next.closedByServer(), /^HTTP\/1\.1 503 [^]*too many connections from this address/);
    await assert.rejects(wsLogin(srv.httpPort, from, 'alice', 'pw-alice'));
    assert.equal((await wsLogin(srv.httpPort, '127.0.0.2', 'alice', 'pw-alice')).split('/')[0], 'alice@localhost');
    // Once the partial requests go, the address is served again.
    for (const c of partial) c.socket.destroy();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await wsLogin(srv.httpPort, from, 'alice', 'pw-alice')).split('/')[0], 'alice@localhost');
  });
});

describe('headers_timeout of the HTTP listener', () => {
  const srv = serverForBlock('  [listen.http.protocol]\n    headers_timeout = 500\n');

  test('a request head that never completes is closed by the server, and the address can connect again', async () => {
    const from = '127.0.0.5';
    // As many as the address may hold, each dripping a header line now and then.
    const partial: Raw[] = [];
    for (let i = 0; i < PER_ADDRESS; i++) {
      const c = await rawFrom(srv.httpPort, from, 'GET /ws-xmpp HTTP/1.1\r\nHost: localhost\r\n');
      srv.held.push(c.socket);
      partial.push(c);
    }
    const drip = setInterval(() => {
      for (const c of partial) if (!c.socket.destroyed) c.socket.write('X-a: b\r\n');
    }, 100);
    try {
      for (const c of partial) assert.match(await c.closedByServer(5000), /^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(drip);
    }
    assert.equal((await wsLogin(srv.httpPort, from, 'alice', 'pw-alice')).split('/')[0], 'alice@localhost');
  });

  test('a connection that sends nothing at all is closed too', async () => {
    const c = await rawFrom(srv.httpPort, '127.0.0.7');
    srv.held.push(c.socket);
    await c.closedByServer(5000);
  });
});
