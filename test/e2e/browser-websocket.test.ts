// A real browser over XMPP over WebSocket: Debian's Chromium, driven by
// playwright-core, loads a page served by this test over loopback, logs in
// with strophe.js (served from node_modules), sends a message to a TCP user
// and receives the reply. The WebSocket handler allows only the page's
// origin, so the origin check is crossed as a browser crosses it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, REPO_ROOT, startPetrel, type Petrel } from './helpers/server.ts';
import { isMessage, type TestClient } from './helpers/client.ts';
import { online } from './pusher/helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium); the browser test is skipped`;
if (skip !== false) console.log(`# SKIP: ${skip}`);

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Petrel over WebSocket</title>
<script src="/strophe.js"></script></head>
<body><script>
  const lib = window.Strophe;
  const S = lib.Strophe || lib;
  const $msg = lib.$msg || window.$msg;
  const $pres = lib.$pres || window.$pres;
  const q = new URLSearchParams(location.search);
  window.received = [];
  window.status = 'starting';
  const conn = new S.Connection(q.get('ws'), { protocol: 'ws' });
  conn.addHandler((m) => {
    const body = m.getElementsByTagName('body')[0];
    if (body) window.received.push({ from: m.getAttribute('from'), body: body.textContent });
    return true;
  }, null, 'message');
  conn.connect(q.get('jid'), q.get('password'), (status) => {
    if (status === S.Status.CONNECTED) {
      window.status = 'connected';
      window.jid = conn.jid;
      conn.send($pres());
      conn.send($msg({ to: q.get('to'), type: 'chat' }).c('body').t(q.get('text')));
    } else if (status === S.Status.AUTHFAIL) window.status = 'authfail';
    else if (status === S.Status.CONNFAIL) window.status = 'connfail';
    else if (status === S.Status.DISCONNECTED && window.status !== 'connected') window.status = 'disconnected';
  });
</script></body></html>`;

let server: Petrel;
let page: http.Server;
let pagePort: number;
let httpPort: number;
let bob: TestClient;

before(async () => {
  if (skip !== false) return;
  pagePort = await freePort();
  httpPort = await freePort();
  const strophe = readFileSync(join(REPO_ROOT, 'node_modules', 'strophe.js', 'dist', 'strophe.umd.min.js'));
  page = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    } else if (path === '/strophe.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      res.end(strophe);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => page.listen(pagePort, '127.0.0.1', resolve));
  server = await startPetrel({
    users: [['alice', 'pw-alice'], ['bob', 'pw-bob']],
    extraToml:
      `[[listen.http]]\n  port = ${httpPort}\n  ip_address = "127.0.0.1"\n` +
      `  [[listen.http.handlers.mongoose_websocket_handler]]\n    host = "_"\n    path = "/ws-xmpp"\n` +
      `    allowed_origins = ["http://127.0.0.1:${pagePort}"]\n`,
  });
  bob = await online(server.port, 'bob', 'pw-bob', { resource: 'desk' });
});

after(async () => {
  await bob?.close();
  await server?.dispose();
  await new Promise<void>((resolve) => (page ? page.close(() => resolve()) : resolve()));
});

test('Chromium logs in with strophe.js over WebSocket, sends a message a TCP user receives and receives the reply', { skip, timeout: 120_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(join(tmpdir(), 'petrel-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const tab = context.pages()[0] ?? (await context.newPage());
    const q = new URLSearchParams({ ws: `ws://127.0.0.1:${httpPort}/ws-xmpp`, jid: 'alice@localhost/chromium', password: 'pw-alice', to: 'bob@localhost/desk', text: 'hello from Chromium' });
    await tab.goto(`http://127.0.0.1:${pagePort}/?${q}`);
    await tab.waitForFunction(() => (globalThis as unknown as { status: string }).status !== 'starting', undefined, { timeout: 60_000 });
    assert.equal(await tab.evaluate(() => (globalThis as unknown as { status: string }).status), 'connected');

    const got = await bob.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'hello from Chromium', 30_000);
    assert.equal(got.attrs.from, 'alice@localhost/chromium');

    const id = await bob.message('alice@localhost/chromium', 'hello back from TCP');
    assert.ok(!bob.queue.some(isMessage(id)));
    await tab.waitForFunction(() => (globalThis as unknown as { received: Array<{ body: string }> }).received.some((m) => m.body === 'hello back from TCP'), undefined, { timeout: 30_000 });
    const received = await tab.evaluate(() => (globalThis as unknown as { received: Array<{ from: string; body: string }> }).received);
    assert.deepEqual(received.find((m) => m.body === 'hello back from TCP'), { from: 'bob@localhost/desk', body: 'hello back from TCP' });
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
});
