// The options that limit hostile clients: [general] max_user_sessions,
// max_auth_failures_per_ip, auth_ban_duration and the c2s listener limits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type LoadOptions } from '../../../src/config/load.ts';
import { ConfigError, section } from '../../../src/config/schema.ts';
import { listenerLimits } from '../../../src/c2s/listener.ts';
import { writeCertPair } from './test-cert.ts';

delete process.env.PETREL_DATA_DIR;

const standIns = { mod_roster: section({}), mod_offline: section({}), mod_disco: section({}), mod_ping: section({}) };
const opts: LoadOptions = { sections: {}, modules: standIns };
const HOSTS = '[general]\nhosts = ["localhost"]\n';

function load(text: string, dir = '/srv/petrel/etc') {
  return parseConfig(text, join(dir, 'petrel.toml'), opts);
}

function rejects(text: string, message: string, dir?: string): void {
  assert.throws(() => load(text, dir), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.message, message);
    return true;
  });
}

const LISTENER = '[[listen.c2s]]\nport = 5222\n';

test('the general limits take their built-in defaults from the schema when not written', () => {
  const g = load(HOSTS).general;
  assert.equal(g.max_user_sessions, 10);
  assert.equal(g.max_auth_failures_per_ip, 20);
  assert.equal(g.auth_ban_duration, 600_000);
});

test('max_user_sessions, max_auth_failures_per_ip and auth_ban_duration are read from [general]', () => {
  const g = load(HOSTS + 'max_user_sessions = 3\nmax_auth_failures_per_ip = 5\nauth_ban_duration = 60000\n').general;
  assert.equal(g.max_user_sessions, 3);
  assert.equal(g.max_auth_failures_per_ip, 5);
  assert.equal(g.auth_ban_duration, 60000);
});

test('"infinity" turns the per-user session limit and the per-address limit off, stored as 0', () => {
  const g = load(HOSTS + 'max_user_sessions = "infinity"\nmax_auth_failures_per_ip = "infinity"\n').general;
  assert.equal(g.max_user_sessions, 0);
  assert.equal(g.max_auth_failures_per_ip, 0);
});

test('the login, hashing and connection limits have their documented defaults and are read from [general]', () => {
  const d = load(HOSTS).general;
  assert.equal(d.max_auth_failures_per_account, 10);
  assert.equal(d.account_lock_duration, 300_000);
  assert.equal(d.max_concurrent_password_hashing, 2);
  assert.equal(d.max_c2s_connections, 10_000);
  assert.equal(d.max_c2s_connections_per_address, 100);
  const g = load(HOSTS + 'max_auth_failures_per_account = "infinity"\naccount_lock_duration = 1000\nmax_concurrent_password_hashing = 4\nmax_c2s_connections = "infinity"\nmax_c2s_connections_per_address = 5\n').general;
  assert.equal(g.max_auth_failures_per_account, 0);
  assert.equal(g.account_lock_duration, 1000);
  assert.equal(g.max_concurrent_password_hashing, 4);
  assert.equal(g.max_c2s_connections, 0);
  assert.equal(g.max_c2s_connections_per_address, 5);
  rejects(HOSTS + 'max_c2s_connections_per_address = 0\n', 'general.max_c2s_connections_per_address: must be at least 1, got 0');
  rejects(HOSTS + 'account_lock_duration = "infinity"\n', 'general.account_lock_duration: expected an integer, got the string "infinity"');
});

test('negotiation_timeout is read from the c2s table and takes "infinity"', () => {
  assert.equal(listenerLimits(load(HOSTS + LISTENER + 'negotiation_timeout = 5000\n').listen.c2s[0]!).negotiationTimeout, 5000);
  assert.equal(listenerLimits(load(HOSTS + LISTENER + 'negotiation_timeout = "infinity"\n').listen.c2s[0]!).negotiationTimeout, 0);
});

test('a general limit that is not a positive integer names its path', () => {
  rejects(HOSTS + 'max_user_sessions = 0\n', 'general.max_user_sessions: must be at least 1, got 0');
  rejects(HOSTS + 'max_user_sessions = "lots"\n', 'general.max_user_sessions: expected an integer of at least 1 or "infinity", got the string "lots"');
  rejects(HOSTS + 'auth_ban_duration = -5\n', 'general.auth_ban_duration: must be at least 1, got -5');
});

test('every listener limit is read from its c2s table', () => {
  const l = load(
    HOSTS + LISTENER +
      'state_timeout = 2000\nmax_stanza_size_before_auth = 4096\nmax_elements_before_auth = 8\nmax_element_depth = 32\n' +
      'max_auth_failures = 5\nmax_output_buffer = 65536\nsend_timeout = 3000\n',
  ).listen.c2s[0]!;
  assert.equal(l.state_timeout, 2000);
  assert.equal(l.max_stanza_size_before_auth, 4096);
  assert.equal(l.max_elements_before_auth, 8);
  assert.equal(l.max_element_depth, 32);
  assert.equal(l.max_auth_failures, 5);
  assert.equal(l.max_output_buffer, 65536);
  assert.equal(l.send_timeout, 3000);
});

test('the input budget and the heavy-sender rule are read from the c2s table; "infinity" means no session is ever heavy', () => {
  const l = load(HOSTS + LISTENER + 'input_slice = 4096\nrouting_backlog = 16\nheavy_sender_factor = 4\nheavy_sender_min_rate = 10000\n').listen.c2s[0]!;
  assert.deepEqual(
    { inputSlice: 4096, routingBacklog: 16, heavySender: { factor: 4, minBytes: 1000 } },
    (({ inputSlice, routingBacklog, heavySender }) => ({ inputSlice, routingBacklog, heavySender }))(listenerLimits(l)),
  );
  assert.equal(listenerLimits(load(HOSTS + LISTENER + 'heavy_sender_factor = "infinity"\n').listen.c2s[0]!).heavySender.factor, 0);
  rejects(HOSTS + LISTENER + 'input_slice = 100\n', 'listen.c2s[0].input_slice: must be at least 512, got 100');
  rejects(HOSTS + LISTENER + 'routing_backlog = 0\n', 'listen.c2s[0].routing_backlog: must be at least 1, got 0');
  rejects(HOSTS + LISTENER + 'heavy_sender_factor = 1\n', 'listen.c2s[0].heavy_sender_factor: must be at least 2, got 1');
});

test('state_timeout and send_timeout take "infinity", which means no limit', () => {
  const l = load(HOSTS + LISTENER + 'state_timeout = "infinity"\nsend_timeout = "infinity"\n').listen.c2s[0]!;
  assert.equal(l.state_timeout, 0);
  assert.equal(l.send_timeout, 0);
});

test('out-of-range listener limits are refused with their path', () => {
  rejects(HOSTS + LISTENER + 'max_element_depth = 5000\n', 'listen.c2s[0].max_element_depth: must be between 2 and 1000, got 5000');
  rejects(HOSTS + LISTENER + 'max_stanza_size_before_auth = 10\n', 'listen.c2s[0].max_stanza_size_before_auth: must be at least 256, got 10');
  rejects(HOSTS + LISTENER + 'max_output_buffer = 0\n', 'listen.c2s[0].max_output_buffer: must be at least 1024, got 0');
  rejects(HOSTS + LISTENER + 'state_timeout = 0\n', 'listen.c2s[0].state_timeout: must be at least 1, got 0');
});

test('tls.handshake_timeout is read from the tls table', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-config-'));
  writeCertPair(dir);
  const l = load(HOSTS + LISTENER + '[listen.c2s.tls]\ncertfile = "cert.pem"\nkeyfile = "key.pem"\nhandshake_timeout = 2500\n', dir).listen.c2s[0]!;
  assert.equal(l.tls?.handshake_timeout, 2500);
});

/** The limits of a listener that sets none of its own. */
const BUILT_IN = {
  preAuthStanzaSize: 8192,
  preAuthElements: 16,
  maxDepth: 64,
  maxAuthFailures: 3,
  stateTimeout: 30_000,
  handshakeTimeout: 0,
  maxOutputBuffer: 1_048_576,
  sendTimeout: 15_000,
  negotiationTimeout: 60_000,
  inputSlice: 8192,
  routingBacklog: 32,
  // 65536 bytes a second over a 100 ms window.
  heavySender: { factor: 8, minBytes: 6554 },
};

test('a listener without limits of its own gets the built-in ones, written into the validated config', () => {
  const l = load(HOSTS + LISTENER).listen.c2s[0]!;
  assert.equal(l.state_timeout, 30_000);
  assert.equal(l.max_stanza_size_before_auth, 8192);
  assert.equal(l.max_output_buffer, 1_048_576);
  assert.equal(l.send_timeout, 15_000);
  assert.deepEqual(listenerLimits(l), BUILT_IN);
});

test('a tls table without handshake_timeout gets the built-in 10 s', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-config-'));
  writeCertPair(dir);
  const l = load(HOSTS + LISTENER + '[listen.c2s.tls]\ncertfile = "cert.pem"\nkeyfile = "key.pem"\n', dir).listen.c2s[0]!;
  assert.equal(l.tls?.handshake_timeout, 10_000);
  assert.equal(listenerLimits(l).handshakeTimeout, 10_000);
});

test("a listener's own limits override the built-in ones", () => {
  const l = load(HOSTS + LISTENER + 'state_timeout = 1000\nsend_timeout = "infinity"\n').listen.c2s[0]!;
  const limits = listenerLimits(l);
  assert.equal(limits.stateTimeout, 1000);
  assert.equal(limits.sendTimeout, 0);
  assert.equal(limits.maxDepth, BUILT_IN.maxDepth);
});
