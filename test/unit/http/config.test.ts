// The [[listen.http]] schema: MongooseIM's syntax, the handler kinds of the
// registry, and the errors naming the TOML path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type LoadOptions } from '../../../src/config/load.ts';
import { ConfigError, int, section } from '../../../src/config/schema.ts';
import { httpListenerSpec, httpListenersOf } from '../../../src/http/config.ts';
import { httpHandlerRegistry } from '../../../src/http/registry.ts';
import { HTTP_HANDLERS } from '../../../src/http-handlers.ts';
import type { HttpListenerConfig } from '../../../src/http/types.ts';
import { writeCertPair } from '../config/test-cert.ts';

delete process.env.PETREL_DATA_DIR;

const HOSTS = '[general]\nhosts = ["localhost"]\n';
const PROMETHEUS = '[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "/metrics"\n';
const opts: LoadOptions = { sections: {}, modules: {}, listeners: { http: httpListenerSpec(HTTP_HANDLERS) } };

function load(text: string, dir = '/srv/petrel/etc', o: LoadOptions = opts) {
  return parseConfig(text, join(dir, 'petrel.toml'), o);
}

function http(text: string, dir?: string): HttpListenerConfig[] {
  return [...httpListenersOf(load(HOSTS + text, dir))];
}

function rejects(text: string, message: string | RegExp, dir?: string, o?: LoadOptions): void {
  assert.throws(() => load(HOSTS + text, dir, o), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

test('an http listener serves the prometheus handler in MongooseIM\'s syntax', () => {
  const [l] = http('[[listen.http]]\nport = 9090\nip_address = "127.0.0.1"\n' + PROMETHEUS);
  assert.deepEqual(l, {
    port: 9090,
    ip_address: '127.0.0.1',
    proto: 'tcp',
    transport: { num_acceptors: 100, max_connections: 1024 },
    protocol: { compress: false },
    handlers: { mongoose_prometheus_handler: [{ host: '_', path: '/metrics' }] },
  });
});

test('an http listener without any handler is an error naming the listener', () => {
  rejects('[[listen.http]]\nport = 9090\n',
    'listen.http[0]: no handler: add at least one [[listen.http.handlers.<kind>]] table; Petrel serves "mod_websockets", "mongoose_prometheus_handler", "mongoose_websocket_handler"');
  rejects('[[listen.http]]\nport = 9090\n[listen.http.handlers]\n',
    'listen.http[0]: no handler: add at least one [[listen.http.handlers.<kind>]] table; Petrel serves "mod_websockets", "mongoose_prometheus_handler", "mongoose_websocket_handler"');
});

test('an empty handler list is an error naming it', () => {
  rejects('[[listen.http]]\nport = 9090\n' + PROMETHEUS + '[[listen.http]]\nport = 9091\nhandlers.mongoose_prometheus_handler = []\n',
    'listen.http[1].handlers.mongoose_prometheus_handler: must not be empty');
});

test('an http handler other than the registered ones is an unknown handler, and the error lists the known ones', () => {
  rejects('[[listen.http]]\nport = 5280\n[[listen.http.handlers.mongoose_xyz_handler]]\nhost = "_"\npath = "/http-bind"\n',
    'listen.http[0].handlers.mongoose_xyz_handler: unknown handler; Petrel serves "mod_websockets", "mongoose_prometheus_handler", "mongoose_websocket_handler"');
  const more = httpHandlerRegistry({ ...HTTP_HANDLERS, test_echo: { configSpec: section({}), create: () => ({ request: () => {} }) } });
  rejects('[[listen.http]]\nport = 5280\n[[listen.http.handlers.mongoose_xyz_api]]\nhost = "_"\npath = "/api"\n',
    'listen.http[0].handlers.mongoose_xyz_api: unknown handler; Petrel serves "mod_websockets", "mongoose_prometheus_handler", "mongoose_websocket_handler", "test_echo"',
    undefined, { ...opts, listeners: { http: httpListenerSpec(more) } });
});

test('a prometheus handler needs host and a path starting with a slash', () => {
  rejects('[[listen.http]]\nport = 9090\n[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\n',
    'listen.http[0].handlers.mongoose_prometheus_handler[0].path: missing required option');
  rejects('[[listen.http]]\nport = 9090\n[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "metrics"\n',
    'listen.http[0].handlers.mongoose_prometheus_handler[0].path: must start with "/", got "metrics"');
  rejects('[[listen.http]]\nport = 9090\n[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = ""\npath = "/m"\n',
    'listen.http[0].handlers.mongoose_prometheus_handler[0].host: must not be empty');
  rejects('[[listen.http]]\nport = 9090\n[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "/m"\nextra = 1\n',
    'listen.http[0].handlers.mongoose_prometheus_handler[0].extra: unknown option');
});

test('a trailing "/[...]" is accepted as in Cowboy, other route patterns are refused', () => {
  const [l] = http('[[listen.http]]\nport = 9090\n[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "/m/[...]"\n');
  assert.equal(l!.handlers.mongoose_prometheus_handler![0]!.path, '/m/[...]');
  rejects('[[listen.http]]\nport = 9090\n[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "/users/:name"\n',
    /^listen\.http\[0\]\.handlers\.mongoose_prometheus_handler\[0\]\.path: Cowboy route patterns are not supported/);
  rejects('[[listen.http]]\nport = 9090\n[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "/m?x=1"\n',
    /^listen\.http\[0\]\.handlers\.mongoose_prometheus_handler\[0\]\.path: must be a path without query/);
});

test('two handler tables with the same host and path are an error naming the second', () => {
  rejects('[[listen.http]]\nport = 9090\n' + PROMETHEUS + '[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "/metrics"\n',
    'listen.http[0].handlers.mongoose_prometheus_handler[1]: host "_" and path "/metrics" are already served by listen.http[0].handlers.mongoose_prometheus_handler[0]');
});

test('a handler kind adds its own options to host and path', () => {
  const withTimeout = httpHandlerRegistry({
    test_timed: { configSpec: section({ timeout: int({ min: 1, default: 5000 }) }), create: () => ({ request: () => {} }) },
  });
  const o = { ...opts, listeners: { http: httpListenerSpec(withTimeout) } };
  const c = load(HOSTS + '[[listen.http]]\nport = 5280\n[[listen.http.handlers.test_timed]]\nhost = "x.example"\npath = "/t"\n', undefined, o);
  assert.deepEqual(httpListenersOf(c)[0]!.handlers, { test_timed: [{ host: 'x.example', path: '/t', timeout: 5000 }] });
  rejects('[[listen.http]]\nport = 5280\n[[listen.http.handlers.test_timed]]\nhost = "_"\npath = "/t"\ntimeout = 0\n',
    'listen.http[0].handlers.test_timed[0].timeout: must be at least 1, got 0', undefined, o);
});

test('MongooseIM\'s transport and protocol options are accepted, and compress = true is reported as without effect', () => {
  const c = load(HOSTS + '[[listen.http]]\nport = 9090\ntransport.num_acceptors = 10\ntransport.max_connections = "infinity"\nprotocol.compress = true\n' + PROMETHEUS);
  const l = httpListenersOf(c)[0]!;
  assert.deepEqual(l.transport, { num_acceptors: 10, max_connections: 0 });
  assert.deepEqual(l.protocol, { compress: true });
  assert.deepEqual(c.warnings, ['listen.http[0].protocol.compress: accepted for compatibility with MongooseIM; Petrel sends responses uncompressed']);
  rejects('[[listen.http]]\nport = 9090\ntransport.max_connections = 0\n' + PROMETHEUS,
    'listen.http[0].transport.max_connections: must be at least 1, got 0');
  rejects('[[listen.http]]\nport = 9090\ntransport.backlog = 5\n' + PROMETHEUS, 'listen.http[0].transport.backlog: unknown option');
});

test('proto and ip_version follow MongooseIM\'s general listener options', () => {
  assert.equal(http('[[listen.http]]\nport = 9090\nip_version = 6\n' + PROMETHEUS)[0]!.ip_address, '::');
  assert.equal(http('[[listen.http]]\nport = 9090\nproto = "tcp"\n' + PROMETHEUS)[0]!.ip_address, '0.0.0.0');
  rejects('[[listen.http]]\nport = 9090\nproto = "udp"\n' + PROMETHEUS, 'listen.http[0].proto: must be one of "tcp", got "udp"');
  rejects('[[listen.http]]\nport = 9090\nip_version = 6\nip_address = "127.0.0.1"\n' + PROMETHEUS,
    'listen.http[0].ip_version: is 6 but ip_address "127.0.0.1" is an IPv4 address');
});

test('a tls table makes an HTTPS listener; its files resolve against the config directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-http-'));
  for (const f of ['ca.pem', 'dh.pem']) writeFileSync(join(dir, f), 'x');
  writeCertPair(dir);
  const [l] = http('[[listen.http]]\nport = 9443\ntls.certfile = "cert.pem"\ntls.keyfile = "key.pem"\n' + PROMETHEUS, dir);
  assert.deepEqual(l!.tls, { certfile: join(dir, 'cert.pem'), keyfile: join(dir, 'key.pem'), verify_mode: 'none' });
  const [full] = http(
    '[[listen.http]]\nport = 9443\n[listen.http.tls]\ncertfile = "cert.pem"\nkeyfile = "key.pem"\npassword = "secret"\ncacertfile = "ca.pem"\n' +
      'verify_mode = "peer"\nciphers = "ECDHE-RSA-AES256-GCM-SHA384"\nversions = ["tlsv1.3"]\ndhfile = "dh.pem"\n' + PROMETHEUS,
    dir,
  );
  assert.equal(full!.tls!.verify_mode, 'peer');
  assert.deepEqual(full!.tls!.versions, ['tlsv1.3']);
  rejects('[[listen.http]]\nport = 9443\ntls.certfile = "cert.pem"\n' + PROMETHEUS, 'listen.http[0].tls.keyfile: missing required option', dir);
  rejects('[[listen.http]]\nport = 9443\ntls.certfile = "nope.pem"\ntls.keyfile = "key.pem"\n' + PROMETHEUS,
    `listen.http[0].tls.certfile: file ${JSON.stringify(join(dir, 'nope.pem'))} does not exist`, dir);
  rejects('[[listen.http]]\nport = 9443\ntls.certfile = "cert.pem"\ntls.keyfile = "key.pem"\ntls.versions = ["tlsv1.1"]\n' + PROMETHEUS,
    'listen.http[0].tls.versions[0]: Petrel serves TLS 1.2 and 1.3 only: must be one of "tlsv1.2", "tlsv1.3", got "tlsv1.1"', dir);
  rejects('[[listen.http]]\nport = 9443\ntls.certfile = "cert.pem"\ntls.keyfile = "key.pem"\ntls.verify_mode = "peer"\n' + PROMETHEUS,
    'listen.http[0].tls.cacertfile: verify_mode "peer" verifies client certificates against the CAs of cacertfile: set it', dir);
  rejects('[[listen.http]]\nport = 9443\ntls.certfile = "cert.pem"\ntls.keyfile = "key.pem"\ntls.mode = "tls"\n' + PROMETHEUS,
    'listen.http[0].tls.mode: unknown option', dir);
  writeFileSync(join(dir, 'junk.pem'), 'not PEM');
  rejects('[[listen.http]]\nport = 9443\ntls.certfile = "junk.pem"\ntls.keyfile = "key.pem"\n' + PROMETHEUS,
    `listen.http[0].tls.certfile: ${JSON.stringify(join(dir, 'junk.pem'))} holds no PEM certificate`, dir);
});

test('without the HTTP layer\'s spec an http listener cannot be configured', () => {
  rejects('[[listen.http]]\nport = 9090\n' + PROMETHEUS, 'listen.http[0]: HTTP listeners are not available', undefined, { sections: {}, modules: {} });
});

test('MongooseIM handler kinds Petrel lacks are accepted with one warning per feature; a listener left with none of Petrel\'s is not opened', () => {
  const c = load(HOSTS +
    '[[listen.http]]\nport = 5280\n[[listen.http.handlers.mongoose_bosh_handler]]\nhost = "_"\npath = "/http-bind"\n' +
    '[[listen.http.handlers.mongoose_graphql_handler]]\nhost = "_"\npath = "/api/graphql"\n' +
    '[[listen.http]]\nport = 9091\n' + PROMETHEUS + '[[listen.http.handlers.mongoose_bosh_handler]]\nhost = "_"\npath = "/http-bind"\n');
  const served = httpListenersOf(c);
  assert.deepEqual(served.map((l) => l.port), [9091]);
  assert.deepEqual(Object.keys(served[0]!.handlers), ['mongoose_prometheus_handler']);
  assert.deepEqual(c.missing.map((f) => [f.feature, f.paths]), [
    ['BOSH', ['listen.http[0].handlers.mongoose_bosh_handler', 'listen.http[1].handlers.mongoose_bosh_handler']],
    ['GraphQL', ['listen.http[0].handlers.mongoose_graphql_handler']],
  ]);
});
