// The options of mongoose_websocket_handler (and of its pre-6.6 name
// mod_websockets): MongooseIM's names and defaults, Petrel's own limits, and
// errors naming the TOML path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parseConfig, type LoadOptions } from '../../../src/config/load.ts';
import { ConfigError } from '../../../src/config/schema.ts';
import { httpListenerSpec, httpListenersOf } from '../../../src/http/config.ts';
import { HTTP_HANDLERS } from '../../../src/http-handlers.ts';

delete process.env.PETREL_DATA_DIR;

const opts: LoadOptions = { sections: {}, modules: {}, listeners: { http: httpListenerSpec(HTTP_HANDLERS) } };
const HEAD = '[general]\nhosts = ["localhost"]\n[[listen.http]]\nport = 5280\nip_address = "127.0.0.1"\n';

function load(kind: string, lines = '') {
  return parseConfig(`${HEAD}[[listen.http.handlers.${kind}]]\nhost = "_"\npath = "/ws-xmpp"\n${lines}`, join('/srv/petrel/etc', 'petrel.toml'), opts);
}

function handler(kind: string, lines = ''): Record<string, unknown> {
  return httpListenersOf(load(kind, lines))[0]!.handlers[kind]![0] as unknown as Record<string, unknown>;
}

function rejects(lines: string, message: RegExp): void {
  assert.throws(() => load('mongoose_websocket_handler', lines), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

test('a handler table with host and path only gets MongooseIM\'s defaults and Petrel\'s limits', () => {
  assert.deepEqual(handler('mongoose_websocket_handler'), {
    host: '_',
    path: '/ws-xmpp',
    timeout: 60_000,
    max_stanza_size: 0,
    state_timeout: 5_000,
    backwards_compatible_session: true,
    max_frame_size: 262_144,
    max_stanza_size_before_auth: 8192,
    max_elements_before_auth: 16,
    max_element_depth: 64,
    max_auth_failures: 3,
    max_output_buffer: 1_048_576,
    send_timeout: 15_000,
    negotiation_timeout: 60_000,
    routing_backlog: 32,
    heavy_sender_factor: 8,
    heavy_sender_min_rate: 65_536,
    allow_plaintext_auth: false,
  });
});

test('timeout, ping_rate and max_stanza_size read as MongooseIM documents them, "infinity" included', () => {
  const h = handler('mongoose_websocket_handler', 'timeout = "infinity"\nping_rate = 10_000\nmax_stanza_size = 10_000\nallowed_origins = ["https://chat.example.com", "http://localhost:8080"]\n');
  assert.equal(h.timeout, 0);
  assert.equal(h.ping_rate, 10_000);
  assert.equal(h.max_stanza_size, 10_000);
  assert.deepEqual(h.allowed_origins, ['https://chat.example.com', 'http://localhost:8080']);
});

test('the pre-6.6 name mod_websockets is accepted with a warning naming the table', () => {
  const config = load('mod_websockets', 'ping_rate = 5000\n');
  assert.equal((httpListenersOf(config)[0]!.handlers.mod_websockets![0] as unknown as { ping_rate: number }).ping_rate, 5000);
  assert.ok(config.warnings.some((w) => /^listen\.http\[0\]\.handlers\.mod_websockets\[0\]: mod_websockets is the name MongooseIM used before 6\.6/.test(w)), config.warnings.join('\n'));
});

test('bad values are errors naming the option', () => {
  rejects('ping_rate = 0\n', /listen\.http\[0\]\.handlers\.mongoose_websocket_handler\[0\]\.ping_rate/);
  rejects('timeout = "forever"\n', /\.timeout: expected an integer of at least 1 or "infinity"/);
  rejects('max_stanza_size = -1\n', /\.max_stanza_size/);
  rejects('allowed_origins = ["chat.example.com/path"]\n', /\.allowed_origins\[0\]: must be an origin/);
  rejects('service = {}\n', /\.service/);
});

test('a max_frame_size below max_stanza_size is refused: such stanzas could never arrive', () => {
  rejects('max_stanza_size = 500_000\n', /\.max_frame_size: is 262144, smaller than max_stanza_size 500000/);
  assert.equal(handler('mongoose_websocket_handler', 'max_stanza_size = 500_000\nmax_frame_size = 500_000\n').max_frame_size, 500_000);
});
