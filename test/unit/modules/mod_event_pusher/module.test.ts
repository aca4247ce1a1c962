import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { ConfigError } from '../../../../src/config/schema.ts';
import { Hooks } from '../../../../src/hooks/hooks.ts';
import type { Acc } from '../../../../src/hooks/catalogue.ts';
import { createOutgoingPools } from '../../../../src/outgoing/pools.ts';
import type { HttpPoolConfig, OutgoingPools } from '../../../../src/outgoing/types.ts';
import { createEventPusher, definition } from '../../../../src/modules/mod_event_pusher/index.ts';
import { createHttpBackend } from '../../../../src/modules/mod_event_pusher/http/backend.ts';
import type { HandlerOpts } from '../../../../src/modules/mod_event_pusher/config.ts';
import { parseJid, type JID } from '../../../../src/xmpp/jid.ts';
import { Element } from '../../../../src/xmpp/xml.ts';

interface Req { url: string; headers: http.IncomingHttpHeaders; body: string }

const received: Req[] = [];
let waiters: Array<() => void> = [];
let status = 200;
let delayMs = 0;
const server = http.createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => (body += c));
  req.on('end', () => {
    const answer = () => {
      received.push({ url: req.url!, headers: req.headers, body });
      res.writeHead(status);
      res.end('ok');
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    };
    if (delayMs > 0) setTimeout(answer, delayMs).unref();
    else answer();
  });
});
let port = 0;
const dir = mkdtempSync(join(tmpdir(), 'petrel-ep-'));

before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
after(() => {
  server.closeAllConnections();
  server.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  received.length = 0;
  status = 200;
  delayMs = 0;
});

function until(n: number, ms = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`expected ${n} requests, got ${received.length}`)), ms);
    const check = () => {
      if (received.length >= n) { clearTimeout(t); resolve(); } else waiters.push(check);
    };
    check();
  });
}

const tick = (ms = 50) => new Promise((r) => setTimeout(r, ms));

function pools(prefix = '/webservice'): OutgoingPools {
  const cfg: HttpPoolConfig = {
    scope: 'global', workers: 2, strategy: 'best_worker', call_timeout: 5000,
    connection: { host: `http://127.0.0.1:${port}`, path_prefix: prefix, request_timeout: 2000 },
  };
  return createOutgoingPools({ http: { http_pool: cfg }, rabbit: {} });
}

function capture() {
  const lines: any[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { lines, logger };
}

function handler(over: Partial<HandlerOpts> = {}, i = 0): HandlerOpts {
  return { pool_name: 'http_pool', path: '/notifications', callback_module: 'mod_event_pusher_http_defaults', tomlPath: `modules.mod_event_pusher.backend.http[${i}]`, delivery: 'best_effort', ...over };
}

async function setup(handlers: HandlerOpts[], p = pools()) {
  const { lines, logger } = capture();
  const hooks = new Hooks((err) => { throw err; });
  const metrics = new Registry();
  const ctx: any = {
    config: { configDir: dir, modules: {} },
    hosts: ['localhost'],
    hooks,
    logger,
    metrics,
    pools: p,
    router: { newAcc: (from: JID, to: JID, element: Element) => acc(from, to, element) },
  };
  const inst = await createEventPusher(ctx, { backends: { http: handlers } });
  for (const reg of inst.hooks!()) hooks.add(reg);
  return { hooks, metrics, lines, inst, close: async () => { await inst.stop!(); await p.close(); } };
}

function acc(from: JID, to: JID, element: Element): Acc {
  return { ref: 'ref-' + Math.random(), timestamp: Date.now(), hostType: 'localhost', lserver: 'localhost', element, from, to };
}

function send(hooks: Hooks, hook: 'user_send_message' | 'filter_local_packet', attrs: Record<string, string>, body?: string) {
  const from = parseJid('Alice@LocalHost/res');
  const to = parseJid('bob@localhost');
  const packet = new Element('message', { from: from.full, to: to.full, ...attrs });
  if (body !== undefined) packet.c('body').t(body);
  return hooks.run(hook, 'localhost', { acc: acc(from, to, packet), from, to, packet });
}

async function metricValue(reg: Registry, name: string): Promise<number> {
  const m = await reg.getSingleMetricAsString(name);
  const line = m.split('\n').find((l) => l.startsWith(name + '{host_type="localhost"}') || l.startsWith(name + '_count{host_type="localhost"}'));
  return line === undefined ? NaN : Number(line.split(' ').pop());
}

describe('mod_event_pusher with the default callback module', () => {
  test('a chat message a user sends is POSTed with the exact default body and a webhook-id', async () => {
    const s = await setup([handler()]);
    send(s.hooks, 'user_send_message', { type: 'chat', id: 'm1' }, 'Hi Test!&escape=Hello');
    await until(1);
    await tick();
    const r = received[0]!;
    assert.equal(r.url, '/webservice/notifications');
    assert.equal(r.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(r.body, 'author=alice&server=localhost&receiver=bob&message=Hi+Test%21%26escape%3DHello');
    assert.match(String(r.headers['webhook-id']), /^msg_[A-Za-z0-9_-]{22}$/);
    assert.equal(await metricValue(s.metrics, 'mod_event_pusher_http_sent_count'), 1);
    assert.equal(await metricValue(s.metrics, 'mod_event_pusher_http_sent_failure_count'), 0);
    assert.equal(await metricValue(s.metrics, 'mod_event_pusher_http_sent_response_time'), 1);
    await s.close();
  });

  test('two messages with the same stanza id, sender, recipient and body carry different webhook-ids', async () => {
    const s = await setup([handler()]);
    send(s.hooks, 'user_send_message', { type: 'chat', id: 'same' }, 'a');
    send(s.hooks, 'user_send_message', { type: 'chat', id: 'same' }, 'a');
    send(s.hooks, 'user_send_message', { type: 'chat', id: 'other' }, 'a');
    await until(3);
    const ids = received.map((r) => r.headers['webhook-id']);
    assert.equal(new Set(ids).size, 3);
    await s.close();
  });

  test('the hook returns before the request is made', async () => {
    const s = await setup([handler()]);
    delayMs = 200;
    const t0 = performance.now();
    assert.equal(send(s.hooks, 'user_send_message', { type: 'chat' }, 'x'), true);
    assert.ok(performance.now() - t0 < 50);
    assert.equal(received.length, 0);
    await until(1);
    await s.close();
  });

  test('groupchat, headline, normal, error and outgoing messages are not pushed by the default', async () => {
    const s = await setup([handler()]);
    send(s.hooks, 'user_send_message', { type: 'groupchat' }, 'x');
    send(s.hooks, 'user_send_message', { type: 'headline' }, 'x');
    send(s.hooks, 'user_send_message', {}, 'x');
    send(s.hooks, 'user_send_message', { type: 'error' }, 'x');
    send(s.hooks, 'filter_local_packet', { type: 'chat' }, 'x');
    await tick(150);
    assert.equal(received.length, 0);
    await s.close();
  });

  test('a 500 answer counts as failed and logs one structured line without the body', async () => {
    const s = await setup([handler()]);
    status = 500;
    send(s.hooks, 'user_send_message', { type: 'chat' }, 'secret text');
    await until(1);
    await tick();
    assert.equal(await metricValue(s.metrics, 'mod_event_pusher_http_sent_failure_count'), 1);
    assert.equal(await metricValue(s.metrics, 'mod_event_pusher_http_sent_count'), 0);
    const failed = s.lines.filter((l) => l.what === 'event_pusher_http_failed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0].status, 500);
    assert.equal(failed[0].handler, 0);
    assert.equal(failed[0].url, `http://127.0.0.1:${port}/webservice/notifications`);
    assert.ok(!JSON.stringify(s.lines).includes('secret text'));
    const prom = await s.metrics.metrics();
    assert.match(prom, /petrel_event_pusher_http_responses_total\{host_type="localhost",handler="0",outcome="http_500"\} 1/);
    await s.close();
  });
});

describe('mod_event_pusher with other callback modules', () => {
  test('the JSON module pushes both directions and every chat type', async () => {
    const s = await setup([handler({ callback_module: 'mod_event_pusher_http_json', path: 'events' })]);
    send(s.hooks, 'user_send_message', { type: 'groupchat', id: 'g1' }, 'a');
    send(s.hooks, 'filter_local_packet', { type: 'chat', id: 'c1' }, 'b');
    await until(2);
    const bodies = received.map((r) => JSON.parse(r.body)).sort((x, y) => x.data.message.localeCompare(y.data.message));
    assert.equal(bodies[0].data.direction, 'in');
    assert.equal(bodies[0].data.message_type, 'groupchat');
    assert.equal(bodies[1].data.direction, 'out');
    assert.equal(received[0]!.url, '/webservice/events');
    assert.equal(received[0]!.headers['content-type'], 'application/json');
    await s.close();
  });

  test('asynchronous callbacks are awaited off the hook path', async () => {
    writeFileSync(join(dir, 'async_cb.mjs'), `
export async function shouldMakeReq(a) { await new Promise((r) => setTimeout(r, 10)); return a.dir === 'in'; }
export async function prepareHeaders(a) { return [['x-sender', a.sender]]; }
export function prepareBody(a) { return Promise.resolve(a.host + ':' + a.message); }
`);
    const s = await setup([handler({ callback_module: 'async_cb' })]);
    send(s.hooks, 'user_send_message', { type: 'normal' }, 'hello');
    await until(1);
    assert.equal(received[0]!.body, 'localhost:hello');
    assert.equal(received[0]!.headers['x-sender'], 'alice');
    assert.ok(received[0]!.headers['webhook-id']);
    await s.close();
  });

  test('a callback that throws is logged and counted, and the hook goes on', async () => {
    writeFileSync(join(dir, 'throwing.mjs'), `
export function shouldMakeReq() { throw new Error('bad'); }
export function prepareHeaders() { return []; }
export function prepareBody() { return ''; }
`);
    const s = await setup([handler({ callback_module: './throwing.mjs' }), handler({ path: '/second' }, 1)]);
    assert.equal(send(s.hooks, 'user_send_message', { type: 'chat' }, 'x'), true);
    await until(1);
    assert.equal(received[0]!.url, '/webservice/second');
    assert.equal(s.lines.filter((l) => l.what === 'event_pusher_http_callback_failed').length, 1);
    await s.close();
  });
});

describe('mod_event_pusher start-up errors', () => {
  test('a pool_name naming no pool is an error naming the handler path', async () => {
    await assert.rejects(setup([handler(), handler({ pool_name: 'x' }, 1)]), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.path, 'modules.mod_event_pusher.backend.http[1].pool_name');
      assert.match(e.message, /no outgoing pool "x" \(define \[outgoing_pools\.http\.x\]\)/);
      return true;
    });
  });

  test('a callback module lacking a function is an error naming the path and the function', async () => {
    writeFileSync(join(dir, 'half.mjs'), `export function shouldMakeReq() { return true; }`);
    await assert.rejects(setup([handler({ callback_module: 'half' })]), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.path, 'modules.mod_event_pusher.backend.http[0].callback_module');
      assert.match(e.message, /prepareHeaders, prepareBody/);
      return true;
    });
  });

  test('the module definition is named mod_event_pusher', () => {
    assert.equal(definition.name, 'mod_event_pusher');
  });
});

test('requests beyond the queue cap are dropped, counted as failed and logged', async () => {
  const { lines, logger } = capture();
  const p = pools('/');
  const metrics = new Registry();
  delayMs = 100;
  const backend = await createHttpBackend({ pools: p, configDir: dir, logger, metrics, hosts: ['localhost'], maxQueue: 1 }, [handler()]);
  const from = parseJid('alice@localhost');
  const to = parseJid('bob@localhost');
  for (let i = 0; i < 5; i++) {
    const packet = new Element('message', { type: 'chat', id: 'q' + i });
    packet.c('body').t('x');
    backend.handle(acc(from, to, packet), { kind: 'chat', direction: 'in', from, to, type: 'chat', packet }, undefined);
  }
  // Two go out at once (two workers), one waits, two are dropped.
  await until(3);
  await backend.close();
  await p.close();
  assert.equal(received.length, 3);
  assert.equal(await metricValue(metrics, 'mod_event_pusher_http_sent_failure_count'), 2);
  // The first drop is logged at once, the other in the summary line of its second (written at close at the latest).
  const dropped = lines.filter((l) => l.what === 'event_pusher_http_dropped');
  assert.equal(dropped.length, 2);
  assert.equal(dropped.reduce((n, l) => n + Number(l.dropped), 0), 2);
});
