import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHttpPool } from '../../../src/outgoing/http.ts';
import type { HttpPoolConfig, HttpPoolTlsConfig } from '../../../src/outgoing/types.ts';

function poolConfig(host: string, over: Partial<HttpPoolConfig['connection']> = {}): HttpPoolConfig {
  return {
    scope: 'global',
    workers: 2,
    strategy: 'best_worker',
    call_timeout: 5000,
    connection: { host, path_prefix: '/', request_timeout: 2000, ...over },
  };
}

function tlsConfig(over: Partial<HttpPoolTlsConfig>): HttpPoolTlsConfig {
  return {
    verify_mode: 'peer',
    crl_files: [],
    disconnect_on_failure: true,
    server_name_indication: { enabled: true, protocol: 'default' },
    ...over,
  };
}

interface Seen { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function handler(seen: Seen[]) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      if (req.url!.includes('fail')) { res.writeHead(500); res.end('boom'); return; }
      if (req.url!.includes('slow')) { setTimeout(() => { res.writeHead(200); res.end('late'); }, 1500).unref(); return; }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('OK');
    });
  };
}

describe('an http pool talking to a plain http server', () => {
  const seen: Seen[] = [];
  const server = http.createServer(handler(seen));
  let port = 0;
  before(async () => { port = await listen(server); });
  after(() => { server.closeAllConnections(); server.close(); });

  test('a 2xx answer is ok once its status arrives (its body is not waited for) and the request carries method, path, headers and body', async () => {
    const pool = createHttpPool('p', poolConfig(`http://127.0.0.1:${port}`, { path_prefix: '/webservice' }));
    const out = await pool.post('/notifications', { 'content-type': 'application/x-www-form-urlencoded' }, 'a=b');
    await pool.close();
    assert.equal(out.kind, 'ok');
    if (out.kind !== 'ok') return;
    assert.equal(out.status, 200);
    assert.equal(out.body, '');
    assert.ok(out.timeMs > 0);
    const last = seen.at(-1)!;
    assert.equal(last.method, 'POST');
    assert.equal(last.url, '/webservice/notifications');
    assert.equal(last.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(last.body, 'a=b');
  });

  test('headers given as pairs are all sent', async () => {
    const pool = createHttpPool('p', poolConfig(`http://127.0.0.1:${port}`));
    const out = await pool.post('x', [['x-one', '1'], ['x-two', '2']], '');
    await pool.close();
    assert.equal(out.kind, 'ok');
    assert.equal(seen.at(-1)!.headers['x-one'], '1');
    assert.equal(seen.at(-1)!.headers['x-two'], '2');
  });

  test('a 500 answer is an http_status outcome with the status and body', async () => {
    const pool = createHttpPool('p', poolConfig(`http://127.0.0.1:${port}`));
    const out = await pool.post('/fail', {}, 'x');
    await pool.close();
    assert.equal(out.kind, 'http_status');
    if (out.kind === 'http_status') {
      assert.equal(out.status, 500);
      assert.equal(out.body, 'boom');
    }
  });

  test('a server slower than request_timeout gives a timeout outcome', async () => {
    const pool = createHttpPool('p', poolConfig(`http://127.0.0.1:${port}`, { request_timeout: 200 }));
    const out = await pool.post('/slow', {}, 'x');
    await pool.close();
    assert.equal(out.kind, 'timeout');
  });

  test('call_timeout bounds the whole call even without a request_timeout', async () => {
    const pool = createHttpPool('p', { ...poolConfig(`http://127.0.0.1:${port}`, { request_timeout: 0 }), call_timeout: 150 });
    const t0 = performance.now();
    const out = await pool.post('/slow', {}, 'x');
    await pool.close();
    assert.equal(out.kind, 'timeout', JSON.stringify(out));
    assert.ok(performance.now() - t0 < 1000);
  });

  test('call_timeout also ends a call still waiting for a connection', async () => {
    const pool = createHttpPool('p', { ...poolConfig(`http://127.0.0.1:${port}`, { request_timeout: 0, pipelining: 1 }), workers: 1, call_timeout: 150 });
    const t0 = performance.now();
    const outs = await Promise.all([pool.post('/slow', {}, 'x'), pool.post('/slow', {}, 'y')]);
    const took = performance.now() - t0;
    await pool.close();
    assert.deepEqual(outs.map((o) => o.kind), ['timeout', 'timeout']);
    assert.ok(took < 1000, `${took} ms`);
  });

  test('url() shows the full address a handler path is sent to', () => {
    const pool = createHttpPool('p', poolConfig('https://localhost:8000', { path_prefix: '/webservice' }));
    assert.equal(pool.url('/notifications'), 'https://localhost:8000/webservice/notifications');
    assert.equal(pool.baseUrl, 'https://localhost:8000/webservice');
    void pool.close();
  });
});

describe('an http pool with pipelining', () => {
  // Answers nothing until `want` requests are on one connection, then all of them at once.
  const want = 3;
  const perSocket: number[] = [];
  const server = net.createServer((sock) => {
    const i = perSocket.push(0) - 1;
    let text = '';
    sock.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const n = text.split('POST ').length - 1;
      if (n > perSocket[i]!) perSocket[i] = n;
      if (n === want) sock.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'.repeat(want));
    });
    sock.on('error', () => {});
  });
  let port = 0;
  before(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  test('requests share one connection before the first is answered, and each gets its own answer', async () => {
    const pool = createHttpPool('p', { ...poolConfig(`http://127.0.0.1:${port}`, { pipelining: want }), workers: 1, call_timeout: 3000 });
    const outs = await Promise.all(Array.from({ length: want }, (_, i) => pool.post('/n', [['content-type', 'text/plain']], `event ${i}`)));
    await pool.close();
    assert.deepEqual(outs.map((o) => o.kind), Array(want).fill('ok'));
    assert.deepEqual(perSocket, [want]);
  });

  test('with pipelining = 1 a connection carries one request at a time', async () => {
    perSocket.length = 0;
    const pool = createHttpPool('p', { ...poolConfig(`http://127.0.0.1:${port}`, { pipelining: 1, request_timeout: 0 }), workers: 1, call_timeout: 300 });
    const outs = await Promise.all(Array.from({ length: want }, (_, i) => pool.post('/n', {}, `event ${i}`)));
    await pool.close();
    // The server waits for three requests that never come together: every call times out.
    assert.deepEqual(outs.map((o) => o.kind), Array(want).fill('timeout'));
    // A timed-out call closes its connection; no connection ever held two requests.
    assert.equal(Math.max(...perSocket), 1);
  });
});

test('a closed port gives a refused outcome', async () => {
  const server = http.createServer();
  const port = await listen(server);
  await new Promise<void>((r) => server.close(() => r()));
  const pool = createHttpPool('p', poolConfig(`http://127.0.0.1:${port}`));
  const out = await pool.post('/x', {}, 'x');
  await pool.close();
  assert.equal(out.kind, 'refused', JSON.stringify(out));
});

test('post never rejects, even after the pool is closed', async () => {
  const pool = createHttpPool('p', poolConfig('http://127.0.0.1:9'));
  await pool.close();
  const out = await pool.post('/x', {}, 'x');
  assert.equal(out.kind, 'error');
});

describe('an http pool talking to an https server with a self-signed certificate', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore' });
  const seen: Seen[] = [];
  const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, handler(seen));
  let port = 0;
  before(async () => { port = await listen(server); });
  after(() => { server.closeAllConnections(); server.close(); rmSync(dir, { recursive: true, force: true }); });

  test('the certificate trusted through cacertfile is accepted', async () => {
    const pool = createHttpPool('p', { ...poolConfig(`https://localhost:${port}`), connection: { host: `https://localhost:${port}`, path_prefix: '/', request_timeout: 2000, tls: tlsConfig({ cacertfile: cert }) } });
    const out = await pool.post('/n', {}, 'x');
    await pool.close();
    assert.equal(out.kind, 'ok', JSON.stringify(out));
  });

  test('an untrusted certificate gives a tls outcome', async () => {
    const pool = createHttpPool('p', poolConfig(`https://localhost:${port}`));
    const out = await pool.post('/n', {}, 'x');
    await pool.close();
    assert.equal(out.kind, 'tls', JSON.stringify(out));
  });

  test('a certificate for another name gives a tls outcome even when trusted', async () => {
    const host = `https://127.0.0.1:${port}`;
    const pool = createHttpPool('p', { ...poolConfig(host), connection: { host, path_prefix: '/', request_timeout: 2000, tls: tlsConfig({ cacertfile: cert, server_name_indication: { enabled: true, host: 'example.org', protocol: 'default' } }) } });
    const out = await pool.post('/n', {}, 'x');
    await pool.close();
    assert.equal(out.kind, 'tls', JSON.stringify(out));
  });

  test('verify_mode "selfsigned_peer" accepts a self-signed server without cacertfile', async () => {
    const host = `https://localhost:${port}`;
    const pool = createHttpPool('p', { ...poolConfig(host), connection: { host, path_prefix: '/', request_timeout: 2000, tls: tlsConfig({ verify_mode: 'selfsigned_peer' }) } });
    const out = await pool.post('/n', {}, 'x');
    await pool.close();
    assert.equal(out.kind, 'ok', JSON.stringify(out));
  });

  test('verify_mode "none" accepts any certificate', async () => {
    const host = `https://127.0.0.1:${port}`;
    const pool = createHttpPool('p', { ...poolConfig(host), connection: { host, path_prefix: '/', request_timeout: 2000, tls: tlsConfig({ verify_mode: 'none' }) } });
    const out = await pool.post('/n', {}, 'x');
    await pool.close();
    assert.equal(out.kind, 'ok', JSON.stringify(out));
  });
});
