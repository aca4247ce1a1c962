import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'smol-toml';
import { ConfigError, validate } from '../../../../src/config/schema.ts';
import { eventPusherSpec } from '../../../../src/modules/mod_event_pusher/config.ts';

/** Petrel's delivery options as a handler gets them when none is written. */
const DELIVERY_DEFAULTS = {
  delivery: 'at_least_once',
  retry: { max_attempts: 8, initial_delay: 1000, max_delay: 300000, max_age: 86400000 },
};

function opts(toml: string) {
  const raw = parse(toml) as { modules: { mod_event_pusher: unknown } };
  return validate(eventPusherSpec, raw.modules.mod_event_pusher, 'modules.mod_event_pusher', { configDir: '/etc/petrel', warnings: [] });
}

function errorOf(toml: string): ConfigError {
  try {
    opts(toml);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e;
  }
  assert.fail('expected a ConfigError');
}

test('a single [modules.mod_event_pusher.backend.http] table is one handler', () => {
  const o = opts(`
[modules.mod_event_pusher.backend.http]
  pool_name = "http_pool"
  path = "/notifications"
`);
  assert.deepEqual(o.backends.http, [
    { pool_name: 'http_pool', path: '/notifications', callback_module: 'mod_event_pusher_http_defaults', tomlPath: 'modules.mod_event_pusher.backend.http', ...DELIVERY_DEFAULTS },
  ]);
});

test('repeated [[modules.mod_event_pusher.backend.http]] tables are handlers in order', () => {
  const o = opts(`
[[modules.mod_event_pusher.backend.http]]
  pool_name = "http_pool"
  path = "/notifications"
  callback_module = "mod_event_pusher_http_notifications"

[[modules.mod_event_pusher.backend.http]]
  pool_name = "http_pool"
  path = "/alerts"
  callback_module = "mod_event_pusher_http_alerts"
`);
  assert.deepEqual(o.backends.http.map((h: any) => [h.path, h.callback_module, h.tomlPath]), [
    ['/notifications', 'mod_event_pusher_http_notifications', 'modules.mod_event_pusher.backend.http[0]'],
    ['/alerts', 'mod_event_pusher_http_alerts', 'modules.mod_event_pusher.backend.http[1]'],
  ]);
});

test('MongooseIM\'s handlers = [{...}] syntax is accepted', () => {
  const o = opts(`
[modules.mod_event_pusher.http]
  handlers = [{pool_name = "http_pool", path = "/notifications"}]
`);
  assert.deepEqual(o.backends.http, [
    { pool_name: 'http_pool', path: '/notifications', callback_module: 'mod_event_pusher_http_defaults', tomlPath: 'modules.mod_event_pusher.http.handlers[0]', ...DELIVERY_DEFAULTS },
  ]);
});

test('[[modules.mod_event_pusher.http.handlers]] subsections are accepted', () => {
  const o = opts(`
[[modules.mod_event_pusher.http.handlers]]
  path = "/a"
[[modules.mod_event_pusher.http.handlers]]
  path = "/b"
  callback_module = "mod_event_pusher_http_json"
`);
  assert.equal(o.backends.http.length, 2);
  assert.equal(o.backends.http[1].callback_module, 'mod_event_pusher_http_json');
  assert.equal(o.backends.http[1].tomlPath, 'modules.mod_event_pusher.http.handlers[1]');
});

test('an empty handler gets every default', () => {
  const o = opts(`[modules.mod_event_pusher.backend.http]`);
  assert.deepEqual(o.backends.http[0], { pool_name: 'http_pool', path: '', callback_module: 'mod_event_pusher_http_defaults', tomlPath: 'modules.mod_event_pusher.backend.http', ...DELIVERY_DEFAULTS });
});

test('a module with no backend has no handlers', () => {
  assert.deepEqual(opts(`[modules.mod_event_pusher]`), {
    backends: {}, outbox_max_events: 1_000_000, outbox_max_bytes: 1_073_741_824, outbox_max_events_per_user: 100_000, outbox_max_bytes_per_user: 104_857_600, outbox_high_water_bytes: 134_217_728, outbox_low_water_bytes: 67_108_864, best_effort_max_bytes: 67_108_864, outbox_backend: 'internal', sender_thread: 'worker', outbox_batch_max_rows: 512, outbox_batch_max_bytes: 4_194_304, outbox_owner_timeout: 30_000, outbox_batch_max_rows_per_user: 64,
  });
});

test('an unknown handler option is an error naming its path', () => {
  const e = errorOf(`
[[modules.mod_event_pusher.backend.http]]
[[modules.mod_event_pusher.backend.http]]
  pool = "x"
`);
  assert.equal(e.path, 'modules.mod_event_pusher.backend.http[1].pool');
});

test('an empty pool_name is an error', () => {
  assert.equal(errorOf(`[modules.mod_event_pusher.backend.http]\npool_name = ""`).path, 'modules.mod_event_pusher.backend.http.pool_name');
});

test('a backend Petrel does not have is an error naming it', () => {
  const e = errorOf(`[modules.mod_event_pusher.sns]\nregion = "eu-west-1"`);
  assert.equal(e.path, 'modules.mod_event_pusher.sns');
  assert.match(e.message, /no sns backend/);
});

test('two identical handlers are an error naming the second', () => {
  const e = errorOf(`
[modules.mod_event_pusher.http]
  handlers = [{path = "/n"}, {path = "/n"}]
`);
  assert.equal(e.path, 'modules.mod_event_pusher.http.handlers[1]');
});

test('a backend Petrel does not have is an error listing the known backends', () => {
  assert.match(errorOf('[modules.mod_event_pusher.backend.sns]\nx = 1').message, /no sns backend; mod_event_pusher supports: http, push, rabbit/);
});

test('the rabbit backend declares only the exchanges it is given, each with MongooseIM\'s defaults', () => {
  const o = opts('[modules.mod_event_pusher.rabbit]\n[modules.mod_event_pusher.rabbit.presence_exchange]\n[modules.mod_event_pusher.rabbit.chat_msg_exchange]\n  durable = true');
  assert.deepEqual(o.backends.rabbit, {
    presence_exchange: { name: 'presence', type: 'topic', durable: false },
    chat_msg_exchange: { name: 'chat_msg', type: 'topic', durable: true, sent_topic: 'chat_msg_sent', recv_topic: 'chat_msg_recv' },
    tomlPath: 'modules.mod_event_pusher.rabbit',
  });
  const g = opts('[modules.mod_event_pusher.backend.rabbit.groupchat_msg_exchange]\nname = "gc"');
  assert.deepEqual((g.backends.rabbit as Record<string, unknown>).groupchat_msg_exchange, { name: 'gc', type: 'topic', durable: false, sent_topic: 'groupchat_msg_sent', recv_topic: 'groupchat_msg_recv' });
});

test('one exchange name given two types, an over-long name and an unknown key are errors naming their paths', () => {
  const clash = errorOf('[modules.mod_event_pusher.rabbit]\npresence_exchange.name = "x"\nchat_msg_exchange = { name = "x", type = "direct" }');
  assert.equal(clash.path, 'modules.mod_event_pusher.rabbit.chat_msg_exchange.name');
  assert.equal(errorOf(`[modules.mod_event_pusher.rabbit]\npresence_exchange.name = "${'e'.repeat(256)}"`).path, 'modules.mod_event_pusher.rabbit.presence_exchange.name');
  assert.equal(errorOf('[modules.mod_event_pusher.rabbit]\nchat_msg_exchange.topic = "t"').path, 'modules.mod_event_pusher.rabbit.chat_msg_exchange.topic');
});

test('sender_thread and the outbox batch bounds are read, and a wrong sender_thread names its path', () => {
  const o = opts('[modules.mod_event_pusher]\nsender_thread = "main"\noutbox_batch_max_rows = 64\noutbox_batch_max_bytes = 65536\noutbox_batch_max_rows_per_user = 8');
  assert.deepEqual([o.sender_thread, o.outbox_batch_max_rows, o.outbox_batch_max_bytes, o.outbox_batch_max_rows_per_user], ['main', 64, 65536, 8]);
  assert.equal(errorOf('[modules.mod_event_pusher]\nsender_thread = "both"').path, 'modules.mod_event_pusher.sender_thread');
  assert.equal(errorOf('[modules.mod_event_pusher]\noutbox_batch_max_rows_per_user = 0').path, 'modules.mod_event_pusher.outbox_batch_max_rows_per_user');
});

test('outbox_owner_timeout is read in milliseconds, and one under a second is an error naming its path', () => {
  assert.equal(opts('[modules.mod_event_pusher]\noutbox_owner_timeout = 90000').outbox_owner_timeout, 90_000);
  assert.equal(errorOf('[modules.mod_event_pusher]\noutbox_owner_timeout = 10').path, 'modules.mod_event_pusher.outbox_owner_timeout');
});
