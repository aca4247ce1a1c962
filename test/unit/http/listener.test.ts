// HTTP listeners over real sockets: handlers side by side on one listener,
// 404 and 405, a handler that throws, the loopback routes of Petrel's own,
// an Upgrade taken over by a handler, and HTTPS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Duplex } from 'node:stream';
import { Agent, request } from 'undici';
import { Registry, Counter } from 'prom-client';
import { startHttpListeners, type HttpListenersOptions } from '../../../src/http/listener.ts';
import { httpHandlerRegistry } from '../../../src/http/registry.ts';
import { section } from '../../../src/config/schema.ts';
import type { HttpHandlerDefinition, HttpHandlerOptions } from '../../../src/http/types.ts';
import { HTTP_HANDLERS, type HttpHandlersContext } from '../../../src/http-handlers.ts';
import { httpListener, makeCert, noC2S, rawExchange, silent } from './helpers.ts';

/**
 * A handler kind of the test's own: answers "echo <path>" to GET and POST,
 * and after an Upgrade to "echo" sends back in upper case what it reads.
 */
function echoHandler(sockets: Set<Duplex>): HttpHandlerDefinition<HttpHandlersContext, HttpHandlerOptions> {
  return {
    configSpec: section({}),
    methods: ['GET', 'POST'],
    create(_ctx, opts) {
      return {
        request(req, res) {
          if (req.url?.endsWith('/throw')) throw new Error('the handler failed');
          res.end(`echo ${opts.path} ${req.url}`);
        },
        upgrade(req, socket, head) {
          if (req.headers.upgrade !== 'echo') {
            socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
            return;
          }
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket));
          socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: Upgrade\r\n\r\n');
          if (head.length > 0) socket.write(head.toString().toUpperCase());
          socket.on('data', (d: Buffer) => socket.write(d.toString().toUpperCase()));
        },
        close() {
          for (const s of sockets) s.destroy();
        },
      };
    },
  };
}

type Cert = { certfile: string; keyfile: string };

/** GET /metrics over HTTPS trusting `serverCert`, presenting `cert` when given: the status, or "refused". */
async function httpsStatus(port: number, serverCert: string, cert?: Cert): Promise<number | 'refused'> {
  const agent = new Agent({
    connect: {
      ca: readFileSync(serverCert),
      servername: 'localhost',
      ...(cert ? { cert: readFileSync(cert.certfile), key: readFileSync(cert.keyfile) } : {}),
    },
  });
  try {
    const res = await request(`https://localhost:${port}/metrics`, { dispatcher: agent });
    await res.body.dump();
    return res.statusCode;
  } catch {
    return 'refused';
  } finally {
    await agent.close();
  }
}

function registryWithEcho(sockets = new Set<Duplex>()) {
  return httpHandlerRegistry<HttpHandlersContext>({ ...HTTP_HANDLERS, test_echo: echoHandler(sockets) });
}

function options(handlers = registryWithEcho(), metrics = new Registry()): HttpListenersOptions<HttpHandlersContext> {
  return { handlers, ctx: { logger: silent, metrics, c2s: noC2S }, logger: silent };
}

test('one listener serves two handler kinds side by side, each at its own paths', async () => {
  const metrics = new Registry();
  new Counter({ name: 'test_hits_total', help: 'h', registers: [metrics] }).inc(7);
  const l = await startHttpListeners(
    [httpListener({
      handlers: {
        mongoose_prometheus_handler: [{ host: '_', path: '/metrics' }, { host: '_', path: '/other-metrics' }],
        test_echo: [{ host: '_', path: '/echo' }, { host: 'api.example', path: '/api/[...]' }],
      },
    })],
    options(registryWithEcho(), metrics),
  );
  const { port } = l.addresses()[0]!;
  try {
    for (const p of ['/metrics', '/other-metrics']) {
      const res = await request(`http://127.0.0.1:${port}${p}`);
      assert.equal(res.statusCode, 200);
      assert.match(await res.body.text(), /^test_hits_total 7$/m);
    }
    const echo = await request(`http://127.0.0.1:${port}/echo?q=1`, { method: 'POST', body: 'x' });
    assert.equal(await echo.body.text(), 'echo /echo /echo?q=1');
    const api = await request(`http://127.0.0.1:${port}/api/users/alice`, { headers: { host: 'api.example' } });
    assert.equal(await api.body.text(), 'echo /api/[...] /api/users/alice');
    const otherHost = await request(`http://127.0.0.1:${port}/api/users/alice`, { headers: { host: 'else.example' } });
    await otherHost.body.dump();
    assert.equal(otherHost.statusCode, 404);
  } finally {
    await l.close();
  }
});

test('a path no handler serves is 404, and a method the handler does not take is 405 with Allow', async () => {
  const l = await startHttpListeners([httpListener({ handlers: { mongoose_prometheus_handler: [{ host: '_', path: '/metrics' }], test_echo: [{ host: '_', path: '/echo' }] } })], options());
  const { port } = l.addresses()[0]!;
  try {
    const missing = await request(`http://127.0.0.1:${port}/nothing`);
    assert.equal(missing.statusCode, 404);
    assert.equal(await missing.body.text(), 'not found\n');
    const post = await request(`http://127.0.0.1:${port}/metrics`, { method: 'POST', body: '' });
    await post.body.dump();
    assert.equal(post.statusCode, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    const del = await request(`http://127.0.0.1:${port}/echo`, { method: 'DELETE' });
    await del.body.dump();
    assert.equal(del.statusCode, 405);
    assert.equal(del.headers.allow, 'GET, POST');
    const head = await request(`http://127.0.0.1:${port}/metrics`, { method: 'HEAD' });
    assert.equal(head.statusCode, 200);
    assert.equal(await head.body.text(), '');
    assert.ok(Number(head.headers['content-length']) > 0);
  } finally {
    await l.close();
  }
});

test('a handler that throws answers 500 and the listener goes on serving', async () => {
  const l = await startHttpListeners([httpListener({ handlers: { test_echo: [{ host: '_', path: '/e/[...]' }] } })], options());
  const { port } = l.addresses()[0]!;
  try {
    const bad = await request(`http://127.0.0.1:${port}/e/throw`);
    await bad.body.dump();
    assert.equal(bad.statusCode, 500);
    const good = await request(`http://127.0.0.1:${port}/e/fine`);
    assert.equal(await good.body.text(), 'echo /e/[...] /e/fine');
  } finally {
    await l.close();
  }
});

test('loopback routes are answered on every listener before its handlers, to loopback clients', async () => {
  const o = options();
  o.loopbackRoutes = [{ path: '/_petrel/own', service: { request: (_req, res) => void res.end('own') } }];
  const l = await startHttpListeners([httpListener({ handlers: { test_echo: [{ host: '_', path: '/[...]' }] } }), httpListener()], o);
  try {
    for (const { port } of l.addresses()) {
      const res = await request(`http://127.0.0.1:${port}/_petrel/own`);
      assert.equal(await res.body.text(), 'own');
    }
    const below = await request(`http://127.0.0.1:${l.addresses()[0]!.port}/_petrel/other`);
    assert.equal(await below.body.text(), 'echo /[...] /_petrel/other');
  } finally {
    await l.close();
  }
});

test('an Upgrade request reaches the handler\'s upgrade with the bytes read after the header, over a real socket', async () => {
  const sockets = new Set<Duplex>();
  const l = await startHttpListeners(
    [httpListener({ handlers: { mongoose_prometheus_handler: [{ host: '_', path: '/metrics' }], test_echo: [{ host: '_', path: '/ws' }] } })],
    options(registryWithEcho(sockets)),
  );
  const { port } = l.addresses()[0]!;
  try {
    const upgrade = (path: string, extra = '') =>
      `GET ${path} HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n${extra}`;
    const switched = await rawExchange(port, upgrade('/ws', 'hello'), /HELLO$/);
    assert.match(switched, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(switched, /\r\n\r\nHELLO$/);

    // A route without an upgrade handler ignores the Upgrade header (RFC 9110 §7.8) and answers as usual.
    const plain = await rawExchange(port, upgrade('/metrics').replace('connection: Upgrade', 'connection: Upgrade, close'));
    assert.match(plain, /^HTTP\/1\.1 200 OK\r\n/);
    const none = await rawExchange(port, upgrade('/nothing').replace('connection: Upgrade', 'connection: Upgrade, close'));
    assert.match(none, /^HTTP\/1\.1 404 Not Found\r\n/);

    // Closing the listener closes the handler, which ends the upgraded connections it holds.
    const held = await new Promise<{ closed: Promise<void> }>((resolve, reject) => {
      const s = netConnect(port, '127.0.0.1', () => s.write(upgrade('/ws')));
      s.on('error', reject);
      const closed = new Promise<void>((r) => s.on('close', () => r()));
      s.once('data', () => resolve({ closed }));
    });
    // (The first exchange's connection may not have closed on the server's side yet.)
    assert.ok(sockets.size >= 1);
    await l.close();
    await held.closed;
    assert.equal(sockets.size, 0);
  } finally {
    await l.close();
  }
});

test('a listener with a tls table serves HTTPS with TLS 1.2 or later only', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-https-'));
  const { certfile, keyfile } = await makeCert(dir);
  const l = await startHttpListeners([httpListener({ tls: { certfile, keyfile, verify_mode: 'none' } })], options());
  const { port, secure } = l.addresses()[0]!;
  const agent = new Agent({ connect: { ca: readFileSync(certfile), servername: 'localhost' } });
  try {
    assert.equal(secure, true);
    const res = await request(`https://localhost:${port}/metrics`, { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    const cleartext = await rawExchange(port, 'GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n').catch(() => '');
    assert.doesNotMatch(cleartext, /^HTTP\/1\.1 200/);
    const refused = await new Promise<string>((resolve) => {
      const s = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
      s.on('secureConnect', () => {
        s.destroy();
        resolve('connected');
      });
      s.on('error', (err) => resolve(err.message));
    });
    assert.notEqual(refused, 'connected');
  } finally {
    await agent.close();
    await l.close();
  }
});

test('an HTTPS listener with verify_mode "peer" refuses clients without a certificate its cacertfile vouches for', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-https-'));
  const server = await makeCert(dir);
  const client = await makeCert(dir, 'client');
  const stranger = await makeCert(dir, 'stranger');
  const l = await startHttpListeners(
    [httpListener({ tls: { ...server, verify_mode: 'peer', cacertfile: client.certfile } })],
    options(),
  );
  const { port } = l.addresses()[0]!;
  const get = (cert?: Cert) => httpsStatus(port, server.certfile, cert);
  try {
    assert.equal(await get(client), 200);
    assert.equal(await get(), 'refused');
    assert.equal(await get(stranger), 'refused');
  } finally {
    await l.close();
  }
});

test('an HTTPS listener with verify_mode "selfsigned_peer" takes a self-signed client certificate but requires one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-https-'));
  const server = await makeCert(dir);
  const client = await makeCert(dir, 'client');
  const l = await startHttpListeners([httpListener({ tls: { ...server, verify_mode: 'selfsigned_peer' } })], options());
  const { port } = l.addresses()[0]!;
  const get = (cert?: Cert) => httpsStatus(port, server.certfile, cert);
  try {
    assert.equal(await get(client), 200);
    assert.equal(await get(), 'refused');
  } finally {
    await l.close();
  }
});

test('transport.max_connections closes connections past the limit on arrival', async () => {
  const l = await startHttpListeners([httpListener({ transport: { num_acceptors: 100, max_connections: 1 } })], options());
  const { port } = l.addresses()[0]!;
  const first = netConnect(port, '127.0.0.1');
  try {
    // The first connection is open and served (keep-alive keeps it).
    const answered = new Promise<string>((resolve) => first.once('data', (d) => resolve(String(d))));
    first.write('GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n');
    assert.match(await answered, /^HTTP\/1\.1 200 OK/);
    const second = await rawExchange(port, 'GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n').catch(() => '');
    assert.equal(second, '');
  } finally {
    first.destroy();
    await l.close();
  }
});

test('a listener whose port is taken fails to start and leaves nothing open', async () => {
  const first = await startHttpListeners([httpListener()], options());
  const { port } = first.addresses()[0]!;
  const sockets = new Set<Duplex>();
  try {
    await assert.rejects(
      startHttpListeners([httpListener({ handlers: { test_echo: [{ host: '_', path: '/ws' }] } }), httpListener({ port })], options(registryWithEcho(sockets))),
      (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE',
    );
  } finally {
    await first.close();
  }
});
