import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { generateKeyPairSync } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultDataDir } from '../../../src/config/core-spec.ts';
import { defaultConfigPath, loadConfigFile, parseConfig, type LoadOptions } from '../../../src/config/load.ts';
import { ConfigError, compat, custom, int, section, str } from '../../../src/config/schema.ts';
import { httpListenerSpec } from '../../../src/http/config.ts';
import { HTTP_HANDLERS } from '../../../src/http-handlers.ts';
import type { HttpListenerConfig } from '../../../src/http/types.ts';
import { writeCertPair } from './test-cert.ts';

// The override must not leak in from the environment the tests run in.
delete process.env.PETREL_DATA_DIR;

import { definition as ping } from '../../../src/modules/mod_ping.ts';
const standIns = { mod_roster: section({}), mod_offline: section({}), mod_disco: section({}), mod_ping: section({}) };
const listeners = { http: httpListenerSpec(HTTP_HANDLERS) };
const opts: LoadOptions = { sections: {}, modules: standIns, listeners };
const anything = custom((v) => v);
/** The modules the shipped config enables besides the stand-ins (their options are tested with each module). */
const shippedModules = { ...standIns, mod_stream_management: anything, mod_carboncopy: anything, mod_csi: anything };

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'petrel-config-'));
}

/** Parses `text` as if it were <dir>/petrel.toml. */
function load(text: string, dir = '/srv/petrel/etc', o: LoadOptions = opts) {
  return parseConfig(text, join(dir, 'petrel.toml'), o);
}

const HOSTS = '[general]\nhosts = ["localhost"]\n';

/** The limits a c2s listener has when its table sets none (the schema's defaults). */
const C2S_LIMITS = {
  state_timeout: 30_000,
  max_stanza_size_before_auth: 8192,
  max_elements_before_auth: 16,
  max_element_depth: 64,
  max_auth_failures: 3,
  max_output_buffer: 1_048_576,
  send_timeout: 15_000,
  negotiation_timeout: 60_000,
  input_slice: 8192,
  routing_backlog: 32,
  heavy_sender_factor: 8,
  heavy_sender_min_rate: 65_536,
  allow_plaintext_auth: false,
};

function rejects(text: string, message: string | RegExp, dir?: string, o?: LoadOptions): void {
  assert.throws(() => load(text, dir, o), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

/** A directory holding cert.pem and key.pem, for listeners with TLS. */
function dirWithCerts(): string {
  const dir = tempDir();
  writeCertPair(dir);
  return dir;
}

// --- general ---------------------------------------------------------------

test('a config naming only its hosts gets every default', () => {
  const c = load(HOSTS);
  assert.equal(c.configPath, '/srv/petrel/etc/petrel.toml');
  assert.equal(c.configDir, '/srv/petrel/etc');
  assert.deepEqual(c.general, {
    hosts: ['localhost'],
    loglevel: 'warning',
    default_server_domain: 'localhost',
    data_dir: defaultDataDir(),
    max_user_sessions: 10,
    max_auth_failures_per_ip: 20,
    auth_ban_duration: 600_000,
    max_auth_failures_per_account: 10,
    account_lock_duration: 300_000,
    max_concurrent_password_hashing: 2,
    max_c2s_connections: 10_000,
    max_c2s_connections_per_address: 100,
    refuse_mixed_script_localparts: false,
    sm_backend: 'mnesia',
  });
  assert.deepEqual(c.listen, { c2s: [], http: [] });
  assert.deepEqual(c.auth, {
    methods: ['internal'],
    sasl_mechanisms: ['scram_sha256', 'scram_sha1', 'plain'],
    password: { format: 'scram' },
    scram_iterations: 10000,
    internal: {},
  });
  assert.deepEqual(c.shaper, {});
  assert.deepEqual(c.outgoing_pools, { http: {}, rabbit: {} });
  assert.deepEqual(c.modules, {});
  assert.deepEqual(c.warnings, []);
});

test('the loaded config is deeply frozen', () => {
  const c = load(HOSTS + '[[listen.c2s]]\nport = 5222\nip_address = "127.0.0.1"\n');
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.general.hosts));
  assert.ok(Object.isFrozen(c.listen.c2s[0]));
  assert.throws(() => { (c.general as { loglevel: string }).loglevel = 'debug'; }, TypeError);
});

test('hosts are lower-cased and default_server_domain defaults to the first', () => {
  const c = load('[general]\nhosts = ["Example.COM", "chat.example.com"]\n');
  assert.deepEqual(c.general.hosts, ['example.com', 'chat.example.com']);
  assert.equal(c.general.default_server_domain, 'example.com');
});

test('hosts must be a non-empty list of distinct domain names', () => {
  rejects('[general]\n', 'general.hosts: missing required option');
  rejects('', 'general.hosts: missing required option');
  rejects('[general]\nhosts = []\n', 'general.hosts: must not be empty');
  rejects('[general]\nhosts = "localhost"\n', 'general.hosts: expected an array, got the string "localhost"');
  rejects('[general]\nhosts = ["a.example", "A.example"]\n', 'general.hosts[1]: duplicate value "a.example", same as general.hosts[0]');
  rejects('[general]\nhosts = ["user@example.com"]\n', 'general.hosts[0]: "user@example.com" is not a valid domain name');
  rejects('[general]\nhosts = [""]\n', 'general.hosts[0]: must not be empty');
  rejects('[general]\nhosts = [5]\n', 'general.hosts[0]: expected a domain name (a string), got the integer 5');
});

test('default_server_domain must be one of the hosts', () => {
  assert.equal(load('[general]\nhosts = ["a.example", "b.example"]\ndefault_server_domain = "B.example"\n').general.default_server_domain, 'b.example');
  rejects('[general]\nhosts = ["a.example"]\ndefault_server_domain = "c.example"\n',
    'general.default_server_domain: must be one of the hosts ("a.example"), got "c.example"');
});

test('loglevel takes MongooseIM\'s values only', () => {
  assert.equal(load(HOSTS + 'loglevel = "debug"\n').general.loglevel, 'debug');
  rejects(HOSTS + 'loglevel = "verbose"\n',
    'general.loglevel: must be one of "none", "emergency", "alert", "critical", "error", "warning", "notice", "info", "debug", "all", got "verbose"');
});

test('an unknown option in general is an error naming it', () => {
  rejects(HOSTS + 'hostz = ["x"]\n', 'general.hostz: unknown option');
  rejects(HOSTS + 'max_fsm_queue = 600\n', 'general.max_fsm_queue: unknown option');
});

test('data_dir resolves against the config file\'s directory, not the working directory', () => {
  assert.equal(load(HOSTS + 'data_dir = "../var"\n').general.data_dir, '/srv/petrel/var');
  assert.equal(load(HOSTS + 'data_dir = "/var/lib/petrel"\n').general.data_dir, '/var/lib/petrel');
  rejects(HOSTS + 'data_dir = 1\n', 'general.data_dir: expected a path (a string), got the integer 1');
});

test('PETREL_DATA_DIR overrides data_dir, resolved against the working directory', () => {
  try {
    process.env.PETREL_DATA_DIR = '/tmp/petrel-elsewhere';
    assert.equal(load(HOSTS + 'data_dir = "../var"\n').general.data_dir, '/tmp/petrel-elsewhere');
    process.env.PETREL_DATA_DIR = 'rel/data';
    assert.equal(load(HOSTS).general.data_dir, resolve(process.cwd(), 'rel/data'));
    process.env.PETREL_DATA_DIR = '';
    assert.equal(load(HOSTS).general.data_dir, defaultDataDir());
  } finally {
    delete process.env.PETREL_DATA_DIR;
  }
});

// --- listen.c2s ------------------------------------------------------------

test('a c2s listener gets MongooseIM\'s defaults and Petrel\'s stanza limit', () => {
  const c = load(HOSTS + '[[listen.c2s]]\nport = 5222\n');
  assert.deepEqual(c.listen.c2s, [{ port: 5222, ip_address: '0.0.0.0', max_stanza_size: 262144, shaper: 'none', access: 'all', ...C2S_LIMITS }]);
});

test('a c2s listener needs a valid port', () => {
  rejects(HOSTS + '[[listen.c2s]]\nip_address = "127.0.0.1"\n', 'listen.c2s[0].port: missing required option');
  rejects(HOSTS + '[[listen.c2s]]\nport = "abc"\n', 'listen.c2s[0].port: expected an integer, got the string "abc"');
  rejects(HOSTS + '[[listen.c2s]]\nport = 0\n', 'listen.c2s[0].port: must be between 1 and 65535, got 0');
  rejects(HOSTS + '[[listen.c2s]]\nport = 65536\n', 'listen.c2s[0].port: must be between 1 and 65535, got 65536');
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222.5\n', 'listen.c2s[0].port: expected an integer, got the float 5222.5');
  rejects(HOSTS + '[[listen.c2s]]\nport = 99999999999999999999\n', 'listen.c2s[0].port: must be between 1 and 65535, got 99999999999999999999');
});

test('the index of the offending listener is in the path', () => {
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\n[[listen.c2s]]\nport = "x"\n', 'listen.c2s[1].port: expected an integer, got the string "x"');
});

test('ip_address must be an IP address', () => {
  assert.equal(load(HOSTS + '[[listen.c2s]]\nport = 5222\nip_address = "::1"\n').listen.c2s[0].ip_address, '::1');
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\nip_address = "example.com"\n',
    'listen.c2s[0].ip_address: expected an IP address such as "127.0.0.1" or "::1", got "example.com"');
});

test('max_stanza_size takes a positive integer or "infinity", which means no limit', () => {
  assert.equal(load(HOSTS + '[[listen.c2s]]\nport = 5222\nmax_stanza_size = 65536\n').listen.c2s[0].max_stanza_size, 65536);
  assert.equal(load(HOSTS + '[[listen.c2s]]\nport = 5222\nmax_stanza_size = "infinity"\n').listen.c2s[0].max_stanza_size, 0);
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\nmax_stanza_size = 0\n', 'listen.c2s[0].max_stanza_size: must be at least 1, got 0');
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\nmax_stanza_size = "big"\n',
    'listen.c2s[0].max_stanza_size: expected a positive integer or "infinity", got the string "big"');
});

test('a listener\'s shaper must name a defined shaper or be "none"', () => {
  const c = load(HOSTS + '[shaper.normal]\nmax_rate = 1000\n[[listen.c2s]]\nport = 5222\nshaper = "normal"\n');
  assert.equal(c.listen.c2s[0].shaper, 'normal');
  assert.deepEqual(c.shaper, { normal: { max_rate: 1000 } });
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\nshaper = "fast"\n',
    'listen.c2s[0].shaper: no shaper named "fast"; define it as [shaper.fast] (or an access rule giving shaper names) or use "none"');
});

test('MongooseIM listener options Petrel does not implement are errors', () => {
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\nbacklog = 1024\n', 'listen.c2s[0].backlog: unknown option');
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\nreuse_port = true\n', 'listen.c2s[0].reuse_port: unknown option');
});

test('a tls table\'s certfile and keyfile resolve against the config directory and go together', () => {
  const dir = dirWithCerts();
  const c = load(HOSTS + '[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\ncertfile = "cert.pem"\nkeyfile = "key.pem"\n', dir);
  assert.deepEqual(c.listen.c2s[0].tls, { mode: 'starttls', certfile: join(dir, 'cert.pem'), keyfile: join(dir, 'key.pem'), handshake_timeout: 10_000, self_signed: false });
  const req = load(HOSTS + '[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\nmode = "starttls_required"\ncertfile = "cert.pem"\nkeyfile = "key.pem"\n', dir);
  assert.equal(req.listen.c2s[0].tls?.mode, 'starttls_required');
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\ncertfile = "cert.pem"\n', 'listen.c2s[0].tls.keyfile: missing, while certfile is set: give both, or neither for the self-signed certificate Petrel makes under general.data_dir', dir);
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\nmode = "ssl"\ncertfile = "cert.pem"\nkeyfile = "key.pem"\n',
    'listen.c2s[0].tls.mode: must be one of "starttls", "starttls_required", "tls", got "ssl"', dir);
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\ncertfile = "cert.pem"\nkeyfile = "key.pem"\nverify_mode = "peer"\n',
    'listen.c2s[0].tls.verify_mode: client certificate verification is not implemented; only "none" is accepted, got the string "peer"', dir);
});

test('a tls file that does not exist is reported with its resolved path', () => {
  const dir = dirWithCerts();
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\ncertfile = "missing.pem"\nkeyfile = "key.pem"\n',
    `listen.c2s[0].tls.certfile: file "${join(dir, 'missing.pem')}" does not exist`, dir);
});

test('tls files that are not a certificate and its key are refused, both in one run', () => {
  const dir = dirWithCerts();
  writeFileSync(join(dir, 'junk.pem'), 'not PEM');
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\ncertfile = "junk.pem"\nkeyfile = "junk.pem"\n',
    `listen.c2s[0].tls.certfile: "${join(dir, 'junk.pem')}" holds no PEM certificate\n` +
      `listen.c2s[0].tls.keyfile: "${join(dir, 'junk.pem')}" holds no PEM private key (or the key is encrypted and no password is set)`, dir);
  // A key of another certificate.
  const other = tempDir();
  writeFileSync(join(other, 'key.pem'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  rejects(HOSTS + `[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\ncertfile = "cert.pem"\nkeyfile = ${JSON.stringify(join(other, 'key.pem'))}\n`,
    `listen.c2s[0].tls.keyfile: the key in "${join(other, 'key.pem')}" does not belong to the certificate in "${join(dir, 'cert.pem')}"`, dir);
});

test('a tls table without certfile and keyfile names the self-signed certificate under the data directory', () => {
  const c = load(HOSTS + 'data_dir = "/var/lib/petrel"\n[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\n');
  assert.deepEqual(c.listen.c2s[0].tls, {
    mode: 'starttls', certfile: '/var/lib/petrel/cert.pem', keyfile: '/var/lib/petrel/key.pem', handshake_timeout: 10_000, self_signed: true,
  });
});

test('without data_dir, a checkout keeps its state in its own data/ directory', () => {
  assert.equal(defaultDataDir(), fileURLToPath(new URL('../../../data', import.meta.url)));
  assert.equal(load(HOSTS).general.data_dir, defaultDataDir());
});

test('a plaintext listener on a non-loopback address is loaded with a warning naming it', () => {
  const c = load(HOSTS + '[[listen.c2s]]\nport = 5222\nip_address = "127.0.0.1"\n[[listen.c2s]]\nport = 5223\n');
  assert.equal(c.warnings.length, 1);
  assert.match(c.warnings[0], /^listen\.c2s\[1\]: listener on 0\.0\.0\.0:5223 has no tls table/);
});

test('loopback and TLS listeners draw no warning', () => {
  const dir = dirWithCerts();
  const c = load(HOSTS + [
    '[[listen.c2s]]\nport = 5222\nip_address = "127.0.0.1"\n',
    '[[listen.c2s]]\nport = 5223\nip_address = "::1"\n',
    '[[listen.c2s]]\nport = 5224\nip_address = "127.0.0.2"\n',
    '[[listen.c2s]]\nport = 5225\n[listen.c2s.tls]\nmode = "tls"\ncertfile = "cert.pem"\nkeyfile = "key.pem"\n',
  ].join(''), dir);
  assert.deepEqual(c.warnings, []);
});

test('two listeners on the same port and overlapping addresses are an error', () => {
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\n[[listen.c2s]]\nport = 5222\nip_address = "127.0.0.1"\n',
    'listen.c2s[1]: port 5222 on 127.0.0.1 is already used by listen.c2s[0]');
  rejects(HOSTS + '[[listen.c2s]]\nport = 5222\n[[listen.http]]\nport = 5222\n[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "/metrics"\n',
    'listen.http[0]: port 5222 on 0.0.0.0 is already used by listen.c2s[0]');
  const ok = load(HOSTS + '[[listen.c2s]]\nport = 5222\nip_address = "127.0.0.1"\n[[listen.c2s]]\nport = 5222\nip_address = "127.0.0.2"\n');
  assert.equal(ok.listen.c2s.length, 2);
});

// --- auth ------------------------------------------------------------------

test('an [auth.internal] section enables the internal method', () => {
  const c = load(HOSTS + '[auth]\nsasl_mechanisms = ["scram_sha1"]\n[auth.internal]\n');
  assert.deepEqual(c.auth.methods, ['internal']);
  assert.deepEqual(c.auth.internal, {});
  assert.deepEqual(c.auth.sasl_mechanisms, ['scram_sha1']);
});

test('an auth section naming no method falls back to the internal store', () => {
  const c = load(HOSTS + '[auth.password]\nformat = "plain"\n');
  assert.deepEqual(c.auth.methods, ['internal']);
  assert.deepEqual(c.auth.internal, {});
  assert.deepEqual(c.auth.password, { format: 'plain' });
});

test('a listed auth method needs its own section, as in MongooseIM', () => {
  rejects(HOSTS + '[auth]\nmethods = ["internal"]\n', 'auth.methods[0]: method "internal" has no [auth.internal] section');
  assert.deepEqual(load(HOSTS + '[auth]\nmethods = ["internal"]\n[auth.internal]\n').auth.methods, ['internal']);
});

test('auth methods other than internal and rdbms are errors naming the value', () => {
  rejects(HOSTS + '[auth]\nmethods = ["ldap"]\n', 'auth.methods[0]: auth method "ldap" is not implemented by Petrel; only "internal" and "rdbms" are');
  rejects(HOSTS + '[auth]\nmethods = ["magic"]\n', 'auth.methods[0]: must be one of "internal", "rdbms", got "magic"');
  rejects(HOSTS + '[auth.ldap]\n', 'auth.ldap: auth method "ldap" is not implemented by Petrel; only "internal" and "rdbms" are');
  rejects(HOSTS + '[auth]\nmethods = []\n', 'auth.methods: must not be empty');
});

test('sasl_mechanisms takes Petrel\'s mechanisms only', () => {
  rejects(HOSTS + '[auth]\nsasl_mechanisms = ["digest"]\n',
    'auth.sasl_mechanisms[0]: must be one of "scram_sha256", "scram_sha1", "plain", got "digest"');
  rejects(HOSTS + '[auth]\nsasl_mechanisms = []\n', 'auth.sasl_mechanisms: must not be empty');
});

test('the password format is "scram" or "plain"', () => {
  rejects(HOSTS + '[auth.password]\nformat = "md5"\n', 'auth.password.format: must be one of "scram", "plain", got "md5"');
  rejects(HOSTS + '[auth.password]\nhash = ["sha256"]\n', 'auth.password.hash: unknown option');
});

test('scram_iterations is read from auth.password, or from auth as older MongooseIM files have it', () => {
  assert.equal(load(HOSTS + '[auth.password]\nscram_iterations = 20000\n').auth.scram_iterations, 20000);
  assert.equal(load(HOSTS + '[auth]\nscram_iterations = 30000\n').auth.scram_iterations, 30000);
  rejects(HOSTS + '[auth]\nscram_iterations = 30000\n[auth.password]\nscram_iterations = 20000\n',
    'auth.scram_iterations: also set as auth.password.scram_iterations; keep only one');
  rejects(HOSTS + '[auth.password]\nscram_iterations = 0\n', 'auth.password.scram_iterations: must be at least 1, got 0');
});

test('a scram_iterations below 4096 is accepted with a warning', () => {
  const c = load(HOSTS + '[auth.password]\nscram_iterations = 1000\n');
  assert.equal(c.auth.scram_iterations, 1000);
  assert.deepEqual(c.warnings, ['auth.password.scram_iterations: 1000 is below 4096, the minimum RFC 7677 recommends']);
});

// --- shaper ----------------------------------------------------------------

test('a shaper needs a positive max_rate', () => {
  rejects(HOSTS + '[shaper.normal]\nmax_rate = 0\n', 'shaper.normal.max_rate: must be at least 1, got 0');
  rejects(HOSTS + '[shaper.normal]\n', 'shaper.normal.max_rate: missing required option');
  rejects(HOSTS + '[shaper.normal]\nmax_rate = 10\nburst = 5\n', 'shaper.normal.burst: unknown option');
  rejects(HOSTS + '[shaper.none]\nmax_rate = 10\n', /^shaper\.none: "none" is reserved/);
});

// --- top level, files, syntax ----------------------------------------------

test('an unknown top-level section is an error', () => {
  rejects(HOSTS + '[[host_config]]\nhost = "localhost"\n', /^host_config: per-host configuration is not implemented, .*; unknown section$/);
  rejects(HOSTS + '[whatever]\n', 'whatever: unknown section');
  rejects(HOSTS.replace('[general]\n', 'stray = 1\n[general]\n'), 'stray: unknown section');
});

test('a TOML syntax error is a ConfigError with the file, line and column', () => {
  assert.throws(() => load('[general]\nhosts = ["localhost"\n'), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.path, '');
    assert.equal(err.file, '/srv/petrel/etc/petrel.toml');
    assert.match(err.message, /^\/srv\/petrel\/etc\/petrel\.toml:\d+:\d+: invalid TOML: /);
    return true;
  });
  assert.throws(() => load('[general]\nhosts = ["a"]\nhosts = ["b"]\n'), /petrel\.toml:3:\d+: invalid TOML/);
});

test('a validation error records which file it came from', () => {
  assert.throws(() => load(HOSTS + 'hostz = 1\n'), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.file, '/srv/petrel/etc/petrel.toml');
    assert.equal(err.path, 'general.hostz');
    return true;
  });
});

test('a missing config file is a ConfigError naming the file', () => {
  const file = join(tempDir(), 'nope.toml');
  assert.throws(() => loadConfigFile(file, opts), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message, `config file ${file} does not exist`);
    return true;
  });
});

test('a config file is read from disk and its relative paths resolve against its own directory', () => {
  const dir = join(dirWithCerts(), 'etc');
  mkdirSync(dir);
  writeFileSync(join(dir, 'petrel.toml'), HOSTS + 'data_dir = "state"\n[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\ncertfile = "../cert.pem"\nkeyfile = "../key.pem"\n');
  const c = loadConfigFile(join(dir, 'petrel.toml'), opts);
  assert.equal(c.configDir, dir);
  assert.equal(c.general.data_dir, join(dir, 'state'));
  assert.equal(c.listen.c2s[0].tls?.certfile, join(dirname(dir), 'cert.pem'));
});

// --- modules and higher-layer sections ---------------------------------------

test('an unknown module is an error naming it', () => {
  rejects(HOSTS + '[modules.mod_foo]\n', /^modules\.mod_foo: unknown module; Petrel has "mod_disco", "mod_offline", "mod_ping", "mod_roster"$/);
});

test('each module\'s options are validated by its own spec', () => {
  const o: LoadOptions = {
    sections: {},
    modules: { ...standIns, mod_ping: section({ ping_interval: int({ min: 1, default: 60 }), send_pings: custom((v) => v, { default: false }) }) },
  };
  const c = load(HOSTS + '[modules.mod_ping]\nsend_pings = true\n[modules.mod_roster]\n', undefined, o);
  assert.deepEqual(c.modules, { mod_ping: { ping_interval: 60, send_pings: true }, mod_roster: {} });
  rejects(HOSTS + '[modules.mod_ping]\nping_interval = -1\n', 'modules.mod_ping.ping_interval: must be at least 1, got -1', undefined, o);
  rejects(HOSTS + '[modules.mod_ping]\niqdisc.type = "one_queue"\n', 'modules.mod_ping.iqdisc: unknown option', undefined, o);
  rejects('modules = 3\n' + HOSTS, 'modules: expected a table, got the integer 3');
});

test('the outgoing_pools spec handed in validates the section, absent or present', () => {
  const pools = section({
    http: section({}, {
      default: true,
      wildcard: section({ connection: section({ host: str({ nonEmpty: true }) }, { required: ['host'] }), workers: int({ default: 10 }) }, { required: ['connection'] }),
    }),
  }, { default: true });
  const o: LoadOptions = { sections: { outgoing_pools: pools }, modules: standIns };
  assert.deepEqual(load(HOSTS, undefined, o).outgoing_pools, { http: {} });
  const c = load(HOSTS + '[outgoing_pools.http.http_pool.connection]\nhost = "http://localhost:8000"\n', undefined, o);
  assert.deepEqual(c.outgoing_pools, { http: { http_pool: { connection: { host: 'http://localhost:8000' }, workers: 10 } } });
  rejects(HOSTS + '[outgoing_pools.http.http_pool]\nworkers = 1\n', 'outgoing_pools.http.http_pool.connection: missing required option', undefined, o);
  rejects(HOSTS + '[outgoing_pools.http.http_pool.connection]\nhost = "h"\n', 'outgoing_pools: unknown section');
});

test('another section handed in by a higher layer is validated and kept', () => {
  const o: LoadOptions = { sections: { metrics: section({ prefix: str({ default: 'petrel' }) }, { default: true }) }, modules: standIns };
  const c = load(HOSTS, undefined, o) as unknown as { metrics: { prefix: string } };
  assert.deepEqual(c.metrics, { prefix: 'petrel' });
  rejects(HOSTS + '[metrics]\nprefx = "x"\n', 'metrics.prefx: unknown option', undefined, o);
});

// --- the shipped default ---------------------------------------------------

test('the default config path is config/petrel.toml in the package', () => {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
  assert.equal(defaultConfigPath(), join(root, 'config', 'petrel.toml'));
  assert.ok(existsSync(defaultConfigPath()));
});

test('the shipped default config loads', () => {
  const c = loadConfigFile(undefined, { ...opts, modules: shippedModules });
  const root = dirname(dirname(defaultConfigPath()));
  assert.equal(c.configPath, defaultConfigPath());
  assert.deepEqual(c.general.hosts, ['localhost']);
  assert.equal(c.general.data_dir, join(root, 'data'));
  assert.deepEqual(c.listen.c2s, [{
    port: 5222, ip_address: '127.0.0.1', max_stanza_size: 262144, shaper: 'none', access: 'all', ...C2S_LIMITS,
    // The self-signed certificate Petrel makes on its first start.
    tls: { mode: 'starttls', certfile: join(root, 'data', 'cert.pem'), keyfile: join(root, 'data', 'key.pem'), handshake_timeout: 10_000, self_signed: true },
  }]);
  assert.deepEqual(c.auth.methods, ['internal']);
  assert.equal(c.auth.password.format, 'scram');
  assert.deepEqual(Object.keys(c.modules), ['mod_roster', 'mod_offline', 'mod_disco', 'mod_ping', 'mod_stream_management', 'mod_carboncopy', 'mod_csi']);
  assert.deepEqual(c.warnings, []);
});

test('every commented example in the shipped default config is valid once uncommented', () => {
  const text = readFileSync(defaultConfigPath(), 'utf8');
  // Example lines read "# key = value" or "# [table]"; prose lines do not.
  const uncommented = text.split('\n').map((l) => l.replace(/^(\s*)#\s+(?=\[|[a-z_]+ = )/, '$1')).join('\n');
  assert.notEqual(uncommented, text);
  const dir = dirWithCerts();
  const o: LoadOptions = { sections: { outgoing_pools: anything }, modules: { ...shippedModules, mod_ping: ping.configSpec, mod_event_pusher: anything }, listeners };
  const c = parseConfig(uncommented, join(dir, 'petrel.toml'), o);
  assert.equal(c.listen.c2s.length, 2);
  assert.equal(c.listen.c2s[0].tls?.mode, 'starttls');
  assert.equal(c.listen.c2s[0].tls?.certfile, join(dir, 'cert.pem'));
  assert.equal(c.listen.c2s[0].shaper, 'normal');
  assert.equal(c.listen.c2s[1].tls?.mode, 'tls');
  assert.deepEqual((c.listen.http[0] as HttpListenerConfig).handlers.mongoose_prometheus_handler, [{ host: '_', path: '/metrics' }]);
  assert.deepEqual(c.shaper, { normal: { max_rate: 1000 } });
  assert.deepEqual(c.auth.sasl_mechanisms, ['scram_sha256', 'scram_sha1']);
  assert.ok('mod_event_pusher' in c.modules);
  assert.deepEqual(c.warnings, []);
});

test('an empty modules section enables no module', () => {
  assert.deepEqual(load(HOSTS + '[modules]\n').modules, {});
});

// --- every problem in one run, compatibility options ---------------------------

/** The message of every problem `text` has, in the order reported. */
function problemsOf(text: string, o: LoadOptions = opts): string[] {
  try {
    load(text, undefined, o);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    for (const e of err.errors) assert.equal(e.file, '/srv/petrel/etc/petrel.toml');
    return err.errors.map((e) => e.message);
  }
  return assert.fail('the config loaded');
}

test('a file with three independent errors reports all three in one run, each with its TOML path', () => {
  assert.deepEqual(problemsOf(HOSTS + 'colour = "blue"\n[[listen.c2s]]\nport = "5222"\n[shaper.normal]\nmax_rate = 0\n'), [
    'general.colour: unknown option',
    'listen.c2s[0].port: expected an integer, got the string "5222"',
    'shaper.normal.max_rate: must be at least 1, got 0',
  ]);
});

test('errors in several listeners, sections, modules and unknown sections are all reported', () => {
  const text = 'stray = 1\n' + HOSTS + 'loglevel = "loud"\n' +
    '[[listen.c2s]]\nport = 0\n[[listen.c2s]]\nport = 5223\nmax_element_depth = 1\n' +
    '[auth]\nsasl_mechanisms = ["digest"]\n[modules.mod_foo]\n[modules.mod_ping]\nfoo = 1\n';
  assert.deepEqual(problemsOf(text), [
    'stray: unknown section',
    'general.loglevel: must be one of "none", "emergency", "alert", "critical", "error", "warning", "notice", "info", "debug", "all", got "loud"',
    'listen.c2s[0].port: must be between 1 and 65535, got 0',
    'listen.c2s[1].max_element_depth: must be between 2 and 1000, got 1',
    'auth.sasl_mechanisms[0]: must be one of "scram_sha256", "scram_sha1", "plain", got "digest"',
    'modules.mod_foo: unknown module; Petrel has "mod_disco", "mod_offline", "mod_ping", "mod_roster"',
    'modules.mod_ping.foo: unknown option',
  ]);
});

test('every port clash is reported, and every listener naming an undefined shaper', () => {
  const text = HOSTS + '[[listen.c2s]]\nport = 5222\nshaper = "a"\n[[listen.c2s]]\nport = 5223\nshaper = "b"\n' +
    '[[listen.c2s]]\nport = 5222\n[[listen.http]]\nport = 5223\n[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "/metrics"\n';
  assert.deepEqual(problemsOf(text), [
    'listen.c2s[2]: port 5222 on 0.0.0.0 is already used by listen.c2s[0]',
    'listen.http[0]: port 5223 on 0.0.0.0 is already used by listen.c2s[1]',
  ]);
  assert.deepEqual(problemsOf(HOSTS + '[[listen.c2s]]\nport = 5222\nshaper = "a"\n[[listen.c2s]]\nport = 5223\nshaper = "b"\n'), [
    'listen.c2s[0].shaper: no shaper named "a"; define it as [shaper.a] (or an access rule giving shaper names) or use "none"',
    'listen.c2s[1].shaper: no shaper named "b"; define it as [shaper.b] (or an access rule giving shaper names) or use "none"',
  ]);
});

test('the defaults are in the validated config without being written', () => {
  const dir = dirWithCerts();
  const c = load(HOSTS + '[[listen.c2s]]\nport = 5222\n[listen.c2s.tls]\ncertfile = "cert.pem"\nkeyfile = "key.pem"\n', dir);
  assert.equal(c.listen.c2s[0].state_timeout, 30000);
  assert.equal(c.listen.c2s[0].max_output_buffer, 1_048_576);
  assert.equal(c.listen.c2s[0].tls?.handshake_timeout, 10_000);
  assert.equal(c.general.max_user_sessions, 10);
  assert.equal(c.general.auth_ban_duration, 600_000);
});

test('compatibility options set in the file are listed apart from the warnings', () => {
  const pools = section({
    http: section({}, { default: true, wildcard: section({ strategy: compat(str({ default: 'best_worker' }), 'r'), workers: int({ default: 10 }) }) }),
  }, { default: true });
  const o: LoadOptions = { sections: { outgoing_pools: pools }, modules: standIns };
  const c = load(HOSTS + '[outgoing_pools.http.a]\nstrategy = "next_worker"\n[outgoing_pools.http.b]\nworkers = 2\n', undefined, o);
  assert.deepEqual(c.ignored, [{ path: 'outgoing_pools.http.a.strategy', reason: 'r' }]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(load(HOSTS, undefined, o).ignored, []);
});
