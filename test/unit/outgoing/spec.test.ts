import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ignoredWarning, validate, type IgnoredOption } from '../../../src/config/schema.ts';
import { outgoingPoolsSpec } from '../../../src/outgoing/spec.ts';

const ctx = () => ({ configDir: '/etc/petrel', warnings: [] as string[] });
const run = (v: unknown) => validate(outgoingPoolsSpec, v, 'outgoing_pools', ctx());

function throwsAt(v: unknown, path: string, msg?: RegExp) {
  assert.throws(() => run(v), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.path, path);
    if (msg) assert.match(e.message, msg);
    return true;
  });
}

test('a pool with only a host gets MongooseIM\'s defaults', () => {
  const cfg = run({ http: { http_pool: { connection: { host: 'http://localhost:8000' } } } });
  assert.deepEqual(cfg.http.http_pool, {
    scope: 'global',
    workers: 10,
    strategy: 'best_worker',
    call_timeout: 5000,
    connection: { host: 'http://localhost:8000', path_prefix: '/', request_timeout: 2000, pipelining: 8 },
  });
});

test('a missing outgoing_pools section means no pools', () => {
  assert.deepEqual(run({}), { http: {}, rabbit: {} });
});

test('the documented example pool is accepted as written', () => {
  const cfg = run({ http: { http_pool: { scope: 'global', workers: 50, connection: { host: 'https://localhost:8000', path_prefix: '/webservice', request_timeout: 2000 } } } });
  assert.equal(cfg.http.http_pool.workers, 50);
  assert.equal(cfg.http.http_pool.connection.path_prefix, '/webservice');
});

test('tls files resolve against the config directory and SNI defaults apply', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-spec-'));
  writeFileSync(join(dir, 'ca.pem'), '');
  const cfg = validate(outgoingPoolsSpec, { http: { p: { connection: { host: 'https://h', tls: { cacertfile: 'ca.pem', verify_mode: 'selfsigned' } } } } }, 'outgoing_pools', { configDir: dir, warnings: [] });
  const t = cfg.http.p.connection.tls;
  assert.equal(t.cacertfile, join(dir, 'ca.pem'));
  assert.equal(t.verify_mode, 'selfsigned_peer');
  assert.deepEqual(t.server_name_indication, { enabled: true, protocol: 'default' });
});

test('the deprecated scope "host" is read as "host_type"', () => {
  assert.equal(run({ http: { p: { scope: 'host', connection: { host: 'http://h' } } } }).http.p.scope, 'host_type');
});

test('another pool type is an error naming its path', () => {
  throwsAt({ redis: { default: {} } }, 'outgoing_pools.redis', /Petrel has no redis pools/);
});

test('pipelining outside 1..128 is an error naming its path', () => {
  throwsAt({ http: { p: { connection: { host: 'http://h', pipelining: 0 } } } }, 'outgoing_pools.http.p.connection.pipelining');
  throwsAt({ http: { p: { connection: { host: 'http://h', pipelining: 129 } } } }, 'outgoing_pools.http.p.connection.pipelining');
  assert.equal(run({ http: { p: { connection: { host: 'http://h', pipelining: 1 } } } }).http.p!.connection.pipelining, 1);
});

test('a pool without a host is an error naming the host path', () => {
  throwsAt({ http: { p: { connection: {} } } }, 'outgoing_pools.http.p.connection.host');
});

test('a host with a path is an error naming the host path', () => {
  throwsAt({ http: { p: { connection: { host: 'http://h/api' } } } }, 'outgoing_pools.http.p.connection.host', /path_prefix/);
});

test('an unknown strategy is an error listing the accepted ones', () => {
  throwsAt({ http: { p: { strategy: 'fastest', connection: { host: 'http://h' } } } }, 'outgoing_pools.http.p.strategy', /next_available_worker/);
});

test('max_worker_queue_len with a strategy other than best_worker is an error', () => {
  throwsAt({ http: { p: { strategy: 'random_worker', max_worker_queue_len: 5, connection: { host: 'http://h' } } } }, 'outgoing_pools.http.p.max_worker_queue_len');
});

test('a certfile without a keyfile is an error', () => {
  throwsAt({ http: { p: { connection: { host: 'https://h', tls: { certfile: '/' } } } } }, 'outgoing_pools.http.p.connection.tls.certfile');
  const dir = mkdtempSync(join(tmpdir(), 'petrel-spec-'));
  writeFileSync(join(dir, 'c.pem'), '');
  assert.throws(() => validate(outgoingPoolsSpec, { http: { p: { connection: { host: 'https://h', tls: { certfile: 'c.pem' } } } } }, 'outgoing_pools', { configDir: dir, warnings: [] }),
    (e: unknown) => e instanceof ConfigError && e.path === 'outgoing_pools.http.p.connection.tls.keyfile');
});

test('a TLS file that does not exist is an error naming the option', () => {
  throwsAt({ http: { p: { connection: { host: 'https://h', tls: { cacertfile: 'missing.pem' } } } } }, 'outgoing_pools.http.p.connection.tls.cacertfile', /does not exist/);
});

test('workers must be positive', () => {
  throwsAt({ http: { p: { workers: 0, connection: { host: 'http://h' } } } }, 'outgoing_pools.http.p.workers');
});

test('a MongooseIM-style pool loads, and each option Petrel does not use is reported with its path', () => {
  const c = { configDir: '/etc/petrel', warnings: [] as string[], ignored: [] as IgnoredOption[] };
  validate(outgoingPoolsSpec, {
    http: {
      http_pool: {
        scope: 'host_type',
        strategy: 'available_worker',
        workers: 50,
        connection: { host: 'https://localhost:8000', tls: { server_name_indication: { protocol: 'https' } } },
      },
    },
    rdbms: { default: { scope: 'global', strategy: 'best_worker', connection: { driver: 'pgsql', host: 'h', database: 'd', username: 'u', password: 'p' } } },
  }, 'outgoing_pools', c);
  assert.deepEqual(c.ignored.map((o) => o.path), [
    'outgoing_pools.http.http_pool.scope',
    'outgoing_pools.http.http_pool.strategy',
    'outgoing_pools.http.http_pool.connection.tls.server_name_indication.protocol',
    'outgoing_pools.rdbms.default.scope',
    'outgoing_pools.rdbms.default.strategy',
  ]);
  assert.deepEqual(c.warnings, []);
  assert.equal(ignoredWarning(c.ignored[1]!), 'outgoing_pools.http.http_pool.strategy: accepted, no effect in Petrel (a request takes the first free connection)');
});

test('a pool that leaves the compatibility options out draws no warning', () => {
  const c = { configDir: '/etc/petrel', warnings: [] as string[], ignored: [] as IgnoredOption[] };
  validate(outgoingPoolsSpec, { http: { http_pool: { workers: 5, connection: { host: 'http://h' } } } }, 'outgoing_pools', c);
  assert.deepEqual(c.ignored, []);
  assert.deepEqual(c.warnings, []);
});

test('every bad option of every pool is reported in one run', () => {
  assert.throws(() => run({ http: { a: { workers: 0, connection: { host: 'http://h', colour: 1 } }, b: { strategy: 'fastest' } } }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.errors.map((x) => x.path), [
      'outgoing_pools.http.a.workers',
      'outgoing_pools.http.a.connection.colour',
      'outgoing_pools.http.b.strategy',
      'outgoing_pools.http.b.connection',
    ]);
    return true;
  });
});
