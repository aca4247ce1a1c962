import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { startHttpListeners, type HttpListeners } from '../../../src/http/listener.ts';
import { isLoopback } from '../../../src/http/routes.ts';
import { HTTP_HANDLERS } from '../../../src/http-handlers.ts';
import { snapshotRoute } from '../../../src/metrics/prometheus.ts';
import { createMetricsRegistry } from '../../../src/metrics/registry.ts';
import { formatMetricsTable, MetricsSampler, type MetricsSnapshot } from '../../../src/metrics/snapshot.ts';
import { snapshotUrl, fetchMetricsSnapshot, MetricsUnavailableError } from '../../../src/metrics/client.ts';
import { httpBackendMetrics } from '../../../src/modules/mod_event_pusher/http/metrics.ts';
import type { PetrelConfig } from '../../../src/config/types.ts';
import type { HttpListenerConfig } from '../../../src/http/types.ts';
import { httpListener as listener, makeCert, noC2S, silent } from '../http/helpers.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The listeners as the server starts them: the Prometheus handler, and the snapshot for `petrel metrics`. */
async function startHttpListenersFor(listeners: HttpListenerConfig[], registry: Registry): Promise<HttpListeners> {
  const sampler = new MetricsSampler(registry);
  sampler.start();
  const l = await startHttpListeners(listeners, {
    handlers: HTTP_HANDLERS,
    ctx: { metrics: registry, logger: silent, c2s: noC2S },
    loopbackRoutes: [snapshotRoute(sampler)],
  });
  return {
    addresses: () => l.addresses(),
    close: async () => {
      sampler.stop();
      await l.close();
    },
  };
}

test('the Prometheus handler serves the registry at its path with the backend metric names', async () => {
  const registry = createMetricsRegistry();
  const m = httpBackendMetrics(registry).forHost('localhost');
  m.sent.inc();
  m.observe(1500);
  const l = await startHttpListenersFor([listener()], registry);
  const { port } = l.addresses()[0]!;
  const res = await request(`http://127.0.0.1:${port}/metrics`);
  const text = await res.body.text();
  await l.close();
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /text\/plain/);
  assert.match(text, /^mod_event_pusher_http_sent_count\{host_type="localhost"\} 1$/m);
  assert.match(text, /^mod_event_pusher_http_sent_failure_count\{host_type="localhost"\} 0$/m);
  assert.match(text, /^mod_event_pusher_http_sent_response_time_bucket\{le="2048",host_type="localhost"\} 1$/m);
  assert.match(text, /^petrel_process_cpu_user_seconds_total/m);
});

test('a handler for a named host answers only that Host header, and other paths are 404', async () => {
  const l = await startHttpListenersFor([listener({ handlers: { mongoose_prometheus_handler: [{ host: 'metrics.example', path: '/m' }] } })], new Registry());
  const { port } = l.addresses()[0]!;
  const ok = await request(`http://127.0.0.1:${port}/m`, { headers: { host: 'metrics.example:9' } });
  await ok.body.dump();
  const other = await request(`http://127.0.0.1:${port}/m`, { headers: { host: 'else.example' } });
  await other.body.dump();
  const missing = await request(`http://127.0.0.1:${port}/nothing`);
  await missing.body.dump();
  await l.close();
  assert.equal(ok.statusCode, 200);
  assert.equal(other.statusCode, 404);
  assert.equal(missing.statusCode, 404);
});

test('petrel metrics reads the snapshot of the running server and prints the table', async () => {
  const registry = new Registry();
  const metrics = httpBackendMetrics(registry);
  const m = metrics.forHost('localhost');
  for (let i = 0; i < 3; i++) m.sent.inc();
  m.failed.inc();
  m.observe(2000);
  m.observe(4000);
  const l = await startHttpListenersFor([listener()], registry);
  const { port } = l.addresses()[0]!;
  const config = { configPath: '/x/petrel.toml', listen: { http: [listener({ port, ip_address: '0.0.0.0' })] } } as unknown as PetrelConfig;
  assert.equal(snapshotUrl(config), `http://127.0.0.1:${port}/_petrel/metrics.json`);
  const snap = await fetchMetricsSnapshot(config);
  await l.close();
  const h = snap.hosts.find((x) => x.hostType === 'localhost')!;
  assert.deepEqual(h.sent, { one: 3, count: 3 });
  assert.deepEqual(h.failed, { one: 1, count: 1 });
  assert.equal(h.responseTime.mean, 3000);
  assert.ok(h.responseTime.percentiles['50']! >= 2000 && h.responseTime.percentiles['50']! <= 4000);
  const table = formatMetricsTable(snap);
  assert.match(table, /\[localhost, mod_event_pusher_http, sent\]\s+spiral\s+one=3 count=3/);
  assert.match(table, /\[localhost, mod_event_pusher_http, failed\]\s+spiral\s+one=1 count=1/);
  assert.match(table, /\[localhost, mod_event_pusher_http, response_time\]\s+histogram\s+n=3 mean=3\.0 ms/);
});

test('petrel metrics reads through an HTTPS listener when there is no plaintext one, trusting the configured certificate', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-metrics-'));
  const { certfile, keyfile } = await makeCert(dir);
  const registry = new Registry();
  httpBackendMetrics(registry).forHost('localhost').sent.inc();
  const tls = { certfile, keyfile, verify_mode: 'none' as const };
  const l = await startHttpListenersFor([listener({ tls })], registry);
  const { port } = l.addresses()[0]!;
  try {
    const config = { configPath: '/x/petrel.toml', listen: { http: [listener({ port, tls })] } } as unknown as PetrelConfig;
    assert.equal(snapshotUrl(config), `https://127.0.0.1:${port}/_petrel/metrics.json`);
    const snap = await fetchMetricsSnapshot(config);
    assert.deepEqual(snap.hosts.find((x) => x.hostType === 'localhost')!.sent, { one: 1, count: 1 });
    // A plaintext listener is preferred when there is one.
    const both = { configPath: '/x/petrel.toml', listen: { http: [listener({ port: 1, tls }), listener({ port: 2 })] } } as unknown as PetrelConfig;
    assert.equal(snapshotUrl(both), 'http://127.0.0.1:2/_petrel/metrics.json');
  } finally {
    await l.close();
  }
});

test('without a [[listen.http]] listener petrel metrics explains what to configure', () => {
  const config = { configPath: '/x/petrel.toml', listen: { http: [] } } as unknown as PetrelConfig;
  assert.throws(() => snapshotUrl(config), (e: unknown) => e instanceof MetricsUnavailableError && /\[\[listen\.http\]\]/.test(e.message));
});

test('the sampler turns counter increases into one-minute spirals', async () => {
  const registry = new Registry();
  const m = httpBackendMetrics(registry).forHost('h');
  const sampler = new MetricsSampler(registry);
  const t0 = 1_700_000_000_000;
  m.sent.inc();
  await sampler.sample(t0);
  m.sent.inc();
  m.sent.inc();
  const s1 = await sampler.snapshot(t0 + 30_000);
  assert.deepEqual(s1.hosts[0]!.sent, { one: 3, count: 3 });
  const s2 = await sampler.snapshot(t0 + 75_000);
  assert.deepEqual(s2.hosts[0]!.sent, { one: 2, count: 3 });
  const s3 = await sampler.snapshot(t0 + 200_000);
  assert.deepEqual(s3.hosts[0]!.sent, { one: 0, count: 3 });
});

test('only loopback addresses may read the JSON snapshot', () => {
  assert.ok(isLoopback('127.0.0.1'));
  assert.ok(isLoopback('::1'));
  assert.ok(isLoopback('::ffff:127.0.0.5'));
  assert.ok(!isLoopback('10.0.0.1'));
  assert.ok(!isLoopback('::ffff:192.168.1.1'));
  assert.ok(!isLoopback(undefined));
});

test('an empty snapshot says there is nothing yet', () => {
  const s: MetricsSnapshot = { takenAt: '2025-01-01T00:00:00.000Z', hosts: [] };
  assert.match(formatMetricsTable(s), /No mod_event_pusher_http metrics yet/);
});
