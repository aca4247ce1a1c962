import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pino from 'pino';
import { Registry } from 'prom-client';
import { parse } from 'smol-toml';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { ConfigError, validate } from '../../../../src/config/schema.ts';
import type { Acc } from '../../../../src/hooks/catalogue.ts';
import { createOutgoingPools } from '../../../../src/outgoing/pools.ts';
import type { HttpOutcome, OutgoingPools } from '../../../../src/outgoing/types.ts';
import { openSqliteOutbox } from '../../../../src/storage/outbox/sqlite.ts';
import { eventPusherSpec, type HandlerOpts } from '../../../../src/modules/mod_event_pusher/config.ts';
import { createDeliveryEngine, MAX_PAGE, type SenderThread } from '../../../../src/modules/mod_event_pusher/delivery/outbox.ts';
import { deliveryMetrics } from '../../../../src/modules/mod_event_pusher/delivery/metrics.ts';
import { createHttpBackend, handlerKey } from '../../../../src/modules/mod_event_pusher/http/backend.ts';
import { backoffMs, retryAfterMs, verdictOf } from '../../../../src/modules/mod_event_pusher/http/retry.ts';
import { createSigner, parseSecret } from '../../../../src/modules/mod_event_pusher/http/signing.ts';
import { parseJid } from '../../../../src/xmpp/jid.ts';
import { openPostgresOutbox } from '../../../../src/storage/outbox/postgres.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE } from '../../../e2e/postgres/db.ts';
import { Element } from '../../../../src/xmpp/xml.ts';

const dir = mkdtempSync(join(tmpdir(), 'petrel-delivery-'));
let status = 200;
let hits = 0;
let inFlight = 0;
let maxInFlight = 0;
let holdMs = 0;
const server = http.createServer((req, res) => {
  hits++;
  inFlight++;
  maxInFlight = Math.max(maxInFlight, inFlight);
  req.resume();
  req.on('end', () =>
    setTimeout(() => {
      inFlight--;
      res.writeHead(status);
      res.end();
    }, holdMs),
  );
});
let port = 0;
// Awaited before the file's hooks and tests are declared (see test/e2e/muc.test.ts).
const pgUp = await pgReachable();

before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
after(() => {
  server.closeAllConnections();
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

function pools(targetPort = port, workers = 2): OutgoingPools {
  return createOutgoingPools({
    rabbit: {},
    http: {
      http_pool: {
        scope: 'global', workers, strategy: 'best_worker', call_timeout: 5000,
        connection: { host: `http://127.0.0.1:${targetPort}`, path_prefix: '/', request_timeout: 2000 },
      },
    },
  });
}

function handler(over: Partial<HandlerOpts> = {}): HandlerOpts {
  return {
    pool_name: 'http_pool', path: '/n', callback_module: 'mod_event_pusher_http_defaults', tomlPath: 'modules.mod_event_pusher.backend.http',
    retry: { max_attempts: 100, initial_delay: 5, max_delay: 20, max_age: 60_000 }, ...over,
  };
}

function event(id: string) {
  const from = parseJid('alice@localhost/r');
  const to = parseJid('bob@localhost');
  const packet = new Element('message', { type: 'chat', id, from: from.full, to: to.full });
  packet.c('body').t('hello ' + id);
  const acc: Acc = { ref: 'ref-' + id, timestamp: Date.now(), hostType: 'localhost', lserver: 'localhost', element: packet, from, to };
  return { acc, ev: { kind: 'chat' as const, direction: 'in' as const, from, to, type: 'chat', packet } };
}

function count(file: string, sql: string): number {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    return Number((db.prepare(sql).get() as { n: number }).n);
  } finally {
    db.close();
  }
}

const until = async (pred: () => boolean, ms = 5000) => {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

async function backend(file: string, handlers: HandlerOpts[], o: { pools?: OutgoingPools; maxEvents?: number; pageSize?: number; senderThread?: SenderThread } = {}) {
  const lines: any[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const p = o.pools ?? pools();
  const metrics = new Registry();
  const engine = createDeliveryEngine({
    open: () => openSqliteOutbox(file), senderThread: o.senderThread ?? 'worker', logger, metrics: deliveryMetrics(metrics),
    maxEvents: o.maxEvents ?? 1_000_000, pollMs: 100, pageSize: o.pageSize,
  });
  const b = await createHttpBackend({ pools: p, configDir: dir, logger, metrics, hosts: ['localhost'], outbox: engine }, handlers);
  await engine.start();
  return { b, lines, metrics, close: async () => { await b.close(); await engine.close(); await p.close(); } };
}

describe('the outbox barrier', () => {
  test('a message a user sent waits for its event to be committed', async () => {
    const file = join(dir, 'barrier.sqlite');
    const s = await backend(file, [handler()]);
    const { acc, ev } = event('b1');
    const barrier = s.b.handle(acc, ev, undefined);
    assert.ok(barrier instanceof Promise);
    await barrier;
    // Committed before the barrier settled: another connection sees it at once (or already delivered).
    assert.equal(count(file, "SELECT seq AS n FROM sqlite_sequence WHERE name = 'event_outbox'"), 1);
    await s.close();
  });

  test('an asynchronous callback module sets no barrier, and its event is still delivered', async () => {
    writeFileSync(join(dir, 'slow_cb.mjs'), `
export async function shouldMakeReq() { return true; }
export function prepareHeaders() { return []; }
export function prepareBody(a) { return a.message; }
`);
    const file = join(dir, 'async.sqlite');
    const before = hits;
    const s = await backend(file, [handler({ callback_module: 'slow_cb' })]);
    const { acc, ev } = event('a1');
    const barrier = s.b.handle(acc, ev, undefined);
    assert.equal(barrier, undefined);
    await until(() => hits > before);
    await s.close();
  });

  test('best_effort delivery sets no barrier', async () => {
    const s = await backend(join(dir, 'be.sqlite'), [handler({ delivery: 'best_effort' })]);
    const { acc, ev } = event('e1');
    const barrier = s.b.handle(acc, ev, undefined);
    assert.equal(barrier, undefined);
    await s.close();
  });

  test('with the SQLite outbox the request leaves from the outbox thread, and its results reach the metrics and logs here', async () => {
    const p = pools();
    const ours = p.http('http_pool')!;
    let postedHere = 0;
    const post = ours.post;
    Object.assign(ours, { post: (...a: Parameters<typeof post>) => (postedHere++, post(...a)) });
    const s = await backend(join(dir, 'thread.sqlite'), [handler()], { pools: p });
    const before = hits;
    status = 503;
    const { acc, ev } = event('t1');
    const barrier = s.b.handle(acc, ev, undefined);
    await barrier;
    await until(() => s.lines.some((l) => l.what === 'event_pusher_http_failed'));
    status = 200;
    let text = '';
    for (const t0 = Date.now(); !/mod_event_pusher_http_sent_count\{host_type="localhost"\} 1/.test(text); await new Promise((r) => setTimeout(r, 10))) {
      assert.ok(Date.now() - t0 < 5000, 'the retry was not reported');
      text = await s.metrics.metrics();
    }
    assert.equal(postedHere, 0);
    assert.ok(hits - before >= 2);
    assert.match(text, /petrel_event_pusher_delivery_responses_total\{host_type="localhost",handler="0",status="503"\} [1-9]/);
    assert.match(text, /petrel_event_pusher_delivery_retries_total\{host_type="localhost",handler="0"\} [1-9]/);
    assert.match(text, /petrel_event_pusher_http_responses_total\{host_type="localhost",handler="0",outcome="ok"\} 1/);
    await s.close();
  });
});

describe('where the sender runs (sender_thread), with either store', () => {
  for (const store of ['internal', 'rdbms'] as const) {
    for (const thread of ['worker', 'main'] as const) {
      test(`${store} outbox, sender_thread = "${thread}": a failed attempt is retried and both reach the metrics here`, { skip: store === 'rdbms' && !pgUp ? PG_UNREACHABLE : false }, async () => {
        const p = pools();
        const ours = p.http('http_pool')!;
        let postedHere = 0;
        const post = ours.post;
        Object.assign(ours, { post: (...a: Parameters<typeof post>) => (postedHere++, post(...a)) });
        const lines: any[] = [];
        const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
        const metrics = new Registry();
        const db = store === 'rdbms' ? await createTestDatabase() : undefined;
        const file = join(dir, `thread-${store}-${thread}.sqlite`);
        const engine = createDeliveryEngine({
          open: () => (db !== undefined ? openPostgresOutbox(db.settings) : openSqliteOutbox(file)),
          pgSettings: db?.settings,
          senderThread: thread, logger, metrics: deliveryMetrics(metrics), maxEvents: 1000, pollMs: 100,
        });
        const b = await createHttpBackend({ pools: p, configDir: dir, logger, metrics, hosts: ['localhost'], outbox: engine }, [handler({ path: `/${store}-${thread}` })]);
        await engine.start();
        try {
          const before = hits;
          status = 503;
          const { acc, ev } = event(`st-${store}-${thread}`);
          const barrier = b.handle(acc, ev, undefined);
          await barrier;
          await until(() => lines.some((l) => l.what === 'event_pusher_http_failed'));
          status = 200;
          let text = '';
          for (const t0 = Date.now(); !/mod_event_pusher_http_sent_count\{host_type="localhost"\} 1/.test(text); await new Promise((r) => setTimeout(r, 10))) {
            assert.ok(Date.now() - t0 < 5000, 'the retry was not reported');
            text = await metrics.metrics();
          }
          assert.ok(hits - before >= 2);
          // At least one: the backoff may run out before the test turns the endpoint back on.
          assert.match(text, /petrel_event_pusher_delivery_retries_total\{host_type="localhost",handler="0"\} [1-9]/);
          if (thread === 'worker') assert.equal(postedHere, 0, 'sent from the sender thread');
          else assert.ok(postedHere >= 2, 'sent from this thread');
        } finally {
          status = 200;
          await b.close();
          await engine.close();
          await p.close();
          await db?.drop();
        }
      });
    }
  }
});

describe('the outbox under a long outage', () => {
  test('while the endpoint refuses connections, at most one page of a handler is claimed, the rest waits on disk', async () => {
    const down = http.createServer();
    await new Promise<void>((r) => down.listen(0, '127.0.0.1', () => r()));
    const downPort = (down.address() as AddressInfo).port;
    await new Promise<void>((r) => down.close(() => r()));
    const file = join(dir, 'outage.sqlite');
    const p = pools(downPort, 4);
    const s = await backend(file, [handler({ retry: { max_attempts: 1000, initial_delay: 1, max_delay: 5, max_age: 60_000 } })], { pools: p });
    const barriers: Array<Promise<unknown> | undefined> = [];
    const events = MAX_PAGE + 1000;
    for (let i = 0; i < events; i++) {
      const { acc, ev } = event('o' + i);
      const barrier = s.b.handle(acc, ev, undefined);
      barriers.push(barrier);
    }
    await Promise.all(barriers);
    let maxClaimed = 0;
    for (let i = 0; i < 20; i++) {
      maxClaimed = Math.max(maxClaimed, count(file, 'SELECT COUNT(*) AS n FROM event_outbox WHERE claimed = 1'));
      await new Promise((r) => setTimeout(r, 15));
    }
    assert.equal(count(file, 'SELECT COUNT(*) AS n FROM event_outbox'), events);
    assert.ok(maxClaimed <= MAX_PAGE, `${maxClaimed} rows claimed at once`);
    assert.ok(count(file, 'SELECT COUNT(*) AS n FROM event_outbox WHERE attempts > 0') > 0);
    await s.close();
    assert.equal(count(file, 'SELECT COUNT(*) AS n FROM event_outbox WHERE claimed = 1'), 0);
  });

  test('handlers sharing a pool share its workers', async () => {
    holdMs = 30;
    maxInFlight = 0;
    const file = join(dir, 'shared.sqlite');
    const s = await backend(file, [handler(), handler({ path: '/m' })], { pools: pools(port, 3) });
    const before = hits;
    for (let i = 0; i < 30; i++) {
      const { acc, ev } = event('w' + i);
      s.b.handle(acc, ev, undefined);
    }
    await until(() => hits - before >= 60);
    holdMs = 0;
    assert.ok(maxInFlight <= 3, `${maxInFlight} requests in flight at once`);
    await s.close();
  });

  test('at the outbox cap new events are refused with a metric and one log line, and set no barrier', async () => {
    const down = 1; // a port nobody listens on
    const file = join(dir, 'cap.sqlite');
    const p = pools(down);
    const s = await backend(file, [handler({ retry: { max_attempts: 1000, initial_delay: 1000, max_delay: 1000, max_age: 60_000 } })], { pools: p, maxEvents: 5 });
    const barriers: Array<Promise<unknown> | undefined> = [];
    for (let i = 0; i < 8; i++) {
      const { acc, ev } = event('c' + i);
      const barrier = s.b.handle(acc, ev, undefined);
      barriers.push(barrier);
    }
    assert.equal(barriers.filter((b) => b === undefined).length, 3);
    await Promise.all(barriers);
    assert.equal(count(file, 'SELECT COUNT(*) AS n FROM event_outbox'), 5);
    assert.equal(s.lines.filter((l) => l.what === 'event_pusher_outbox_full').length, 1);
    assert.match(await s.metrics.metrics(), /petrel_event_pusher_outbox_rejected_total\{host_type="localhost",handler="0"\} 3/);
    await s.close();
  });
});

describe('configuration of delivery', () => {
  const opts = (toml: string) =>
    validate(eventPusherSpec, (parse(toml) as any).modules.mod_event_pusher, 'modules.mod_event_pusher', { configDir: '/etc', warnings: [] });

  test('retry, delivery and signing options are read under each handler', () => {
    const o = opts(`
[modules.mod_event_pusher]
  outbox_max_events = 5000
[[modules.mod_event_pusher.backend.http]]
  delivery = "best_effort"
  [modules.mod_event_pusher.backend.http.retry]
    max_attempts = 3
  [modules.mod_event_pusher.backend.http.signing]
    secrets = ["whsec_c2VjcmV0"]
`);
    assert.equal(o.outbox_max_events, 5000);
    assert.equal(o.backends.http[0].delivery, 'best_effort');
    assert.deepEqual(o.backends.http[0].retry, { max_attempts: 3, initial_delay: 1000, max_delay: 300000, max_age: 86400000 });
    assert.deepEqual(o.backends.http[0].signing, { secrets: ['whsec_c2VjcmV0'] });
  });

  test('a secret that is not whsec_ and base64 is an error naming its path', () => {
    for (const bad of ['c2VjcmV0', 'whsec_', 'whsec_not base64!']) {
      assert.throws(
        () => opts(`[modules.mod_event_pusher.http]\nhandlers = [{path = "/a", signing = {secrets = ["whsec_c2VjcmV0", ${JSON.stringify(bad)}]}}]`),
        (e: unknown) => e instanceof ConfigError && e.path === 'modules.mod_event_pusher.http.handlers[0].signing.secrets[1]',
      );
    }
  });

  test('an unknown delivery mode is an error naming its path', () => {
    assert.throws(() => opts(`[modules.mod_event_pusher.backend.http]\ndelivery = "exactly_once"`),
      (e: unknown) => e instanceof ConfigError && e.path === 'modules.mod_event_pusher.backend.http.delivery');
  });

  test('a handler is stored under its pool, path and callback module', () => {
    assert.equal(handlerKey({ pool_name: 'p', path: '/x', callback_module: 'm' }), 'p:/x:m');
  });
});

describe('signing, retries and backoff', () => {
  test('signatures verify with the standardwebhooks package, one per secret', () => {
    const secrets = ['whsec_' + Buffer.from('k1-0123456789abcdef').toString('base64'), 'whsec_' + Buffer.from('k2-0123456789abcdef').toString('base64')];
    const signer = createSigner(secrets.map((s) => parseSecret(s) as Buffer));
    const body = JSON.stringify({ hello: 'wörld' });
    const [[, ts], [, sig]] = signer.headers('msg_1', Buffer.from(body), Date.now());
    for (const s of secrets) {
      assert.deepEqual(new StandardWebhook(s).verify(body, { 'webhook-id': 'msg_1', 'webhook-timestamp': ts, 'webhook-signature': sig }), { hello: 'wörld' });
    }
    assert.equal(sig.split(' ').length, 2);
  });

  test('timeouts, refusals, TLS failures, 5xx, 429 and 408 are retried; 410 is gone; other answers are final', () => {
    const st = (status: number): HttpOutcome => ({ kind: status < 300 ? 'ok' : 'http_status', status, headers: {}, body: '', timeMs: 1 });
    assert.equal(verdictOf(st(204)), 'delivered');
    for (const s of [500, 503, 429, 408]) assert.equal(verdictOf(st(s)), 'retry', String(s));
    for (const s of [301, 302, 400, 404, 422]) assert.equal(verdictOf(st(s)), 'final', String(s));
    assert.equal(verdictOf(st(410)), 'gone');
    for (const kind of ['timeout', 'refused', 'tls'] as const) assert.equal(verdictOf({ kind, message: '' }), 'retry');
  });

  test('Retry-After is read as seconds or as an HTTP date', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    const with_ = (v: string): HttpOutcome => ({ kind: 'http_status', status: 503, headers: { 'retry-after': v }, body: '', timeMs: 1 });
    assert.equal(retryAfterMs(with_('2'), now), 2000);
    assert.equal(retryAfterMs(with_('Wed, 01 Jan 2025 00:00:30 GMT'), now), 30_000);
    assert.equal(retryAfterMs(with_('soon'), now), undefined);
  });

  test('backoff is full jitter below an exponential ceiling capped by max_delay', () => {
    const p = { max_attempts: 10, initial_delay: 100, max_delay: 1000, max_age: 1e9 };
    assert.equal(backoffMs(p, 1, () => 0.999), 99);
    assert.equal(backoffMs(p, 3, () => 0.999), 399);
    assert.equal(backoffMs(p, 9, () => 0.999), 999);
    assert.equal(backoffMs(p, 9, () => 0), 0);
  });
});
