import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'smol-toml';
import { ConfigError, validate } from '../../../../../src/config/schema.ts';
import { eventPusherSpec } from '../../../../../src/modules/mod_event_pusher/config.ts';
import { isVirtualPubsubHost, type PushOpts } from '../../../../../src/modules/mod_event_pusher/push/config.ts';
import { parsePushRequest } from '../../../../../src/modules/mod_event_pusher/push/request.ts';
import { pushEventId, registrationOfEventId } from '../../../../../src/modules/mod_event_pusher/push/backend.ts';
import { buildNotification } from '../../../../../src/modules/mod_push_service_mongoosepush/notification.ts';
import { resultOf } from '../../../../../src/modules/mod_push_service_mongoosepush/sender.ts';
import { mongoosePushSpec } from '../../../../../src/modules/mod_push_service_mongoosepush/config.ts';
import { parseElement } from '../../../../../src/xmpp/parse-element.ts';
import { parseJid } from '../../../../../src/xmpp/jid.ts';

const CTX = { configDir: '/etc/petrel', warnings: [] };

function push(toml: string): PushOpts {
  const raw = parse(toml) as { modules: { mod_event_pusher: unknown } };
  return (validate(eventPusherSpec, raw.modules.mod_event_pusher, 'modules.mod_event_pusher', CTX).backends as { push: PushOpts }).push;
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e;
  }
  assert.fail('expected a ConfigError');
}

test('the push backend takes MongooseIM\'s defaults and Petrel\'s, under either spelling', () => {
  for (const toml of ['[modules.mod_event_pusher.push]', '[modules.mod_event_pusher.backend.push]']) {
    const o = push(toml);
    assert.deepEqual({ ...o, tomlPath: undefined }, {
      tomlPath: undefined, backend: 'internal', wpool: { workers: 10, strategy: 'available_worker', call_timeout: 5000 },
      plugin_module: 'mod_event_pusher_push_plugin_defaults', virtual_pubsub_hosts: [], max_registrations: 10, max_registration_size: 4096, only_offline: true, only_with_body: true,
    });
  }
  assert.equal(push('[modules.mod_event_pusher.push]\nbackend = "mnesia"').backend, 'internal');
});

test('bad push options are errors naming their path', () => {
  const e = (t: string) => errorOf(() => push(t)).path;
  assert.equal(e('[modules.mod_event_pusher.push]\nplugin_module = "mod_other"'), 'modules.mod_event_pusher.push.plugin_module');
  assert.equal(e('[modules.mod_event_pusher.push]\nbackend = "cassandra"'), 'modules.mod_event_pusher.push.backend');
  assert.equal(e('[modules.mod_event_pusher.push]\nvirtual_pubsub_hosts = ["a b"]'), 'modules.mod_event_pusher.push.virtual_pubsub_hosts[0]');
  assert.equal(e('[modules.mod_event_pusher.push]\nmax_registrations = 0'), 'modules.mod_event_pusher.push.max_registrations');
  assert.equal(e('[modules.mod_event_pusher.push]\nunknown = 1'), 'modules.mod_event_pusher.push.unknown');
  assert.equal(e('[modules.mod_event_pusher.push]\n[modules.mod_event_pusher.backend.push]'), 'modules.mod_event_pusher.push');
});

test('mod_push_service_mongoosepush needs pool_name and takes MongooseIM\'s defaults', () => {
  const o = validate(mongoosePushSpec, { pool_name: 'mp' }, 'modules.mod_push_service_mongoosepush', CTX);
  assert.deepEqual([o.pool_name, o.api_version, o.max_http_connections], ['mp', 'v3', 100]);
  assert.equal(errorOf(() => validate(mongoosePushSpec, {}, 'modules.mod_push_service_mongoosepush', CTX)).path, 'modules.mod_push_service_mongoosepush.pool_name');
  assert.equal(errorOf(() => validate(mongoosePushSpec, { pool_name: 'mp', api_version: 'v1' }, 'modules.mod_push_service_mongoosepush', CTX)).path,
    'modules.mod_push_service_mongoosepush.api_version');
});

test('virtual pubsub hosts match the recipient\'s domain through @HOSTS@, or exactly', () => {
  const o = push('[modules.mod_event_pusher.push]\nvirtual_pubsub_hosts = ["pubsub.@HOSTS@", "push.example.com"]');
  assert.equal(isVirtualPubsubHost(o, 'localhost', 'pubsub.localhost'), true);
  assert.equal(isVirtualPubsubHost(o, 'localhost', 'pubsub.other'), false);
  assert.equal(isVirtualPubsubHost(o, 'localhost', 'push.example.com'), true);
});

test('enable and disable requests are read as MongooseIM reads them', () => {
  const form = (type: string, ft: string, fields: string) =>
    `<x xmlns='jabber:x:data' type='${type}'><field var='FORM_TYPE'><value>${ft}</value></field>${fields}</x>`;
  const po = 'http://jabber.org/protocol/pubsub#publish-options';
  const r = parsePushRequest(parseElement(`<enable xmlns='urn:xmpp:push:0' jid='pubsub.localhost/res' node='n'>${form('submit', po, "<field var='a'><value>1</value></field><field><value>no var</value></field>")}</enable>`));
  assert.equal(r.kind, 'enable');
  assert.equal(r.kind === 'enable' && r.pubsub.full, 'pubsub.localhost');
  assert.deepEqual(r.kind === 'enable' && r.form, { a: '1' });
  for (const bad of [
    `<enable xmlns='urn:xmpp:push:0' node='n'/>`,
    `<enable xmlns='urn:xmpp:push:0' jid='pubsub.localhost'/>`,
    `<enable xmlns='urn:xmpp:push:0' jid='pubsub.localhost' node=''/>`,
    `<enable xmlns='urn:xmpp:push:0' jid='pubsub.localhost' node='n'>${form('form', po, '')}</enable>`,
    `<enable xmlns='urn:xmpp:push:0' jid='pubsub.localhost' node='n'>${form('submit', 'urn:other', '')}</enable>`,
    `<enable xmlns='urn:xmpp:push:0' jid='pubsub.localhost' node='n'>${form('submit', po, "<field var='a'/>")}</enable>`,
    `<disable xmlns='urn:xmpp:push:0' node='n'/>`,
    `<disable xmlns='urn:xmpp:push:0' jid='pubsub.localhost' node=''/>`,
    `<other xmlns='urn:xmpp:push:0'/>`,
  ]) assert.equal(parsePushRequest(parseElement(bad)).kind, 'bad_request', bad);
  const d = parsePushRequest(parseElement(`<disable xmlns='urn:xmpp:push:0' jid='pubsub.localhost'/>`));
  assert.deepEqual(d.kind === 'disable' && d.node, undefined);
});

test('the MongoosePush request follows make_notification/2: alert, or data when silent, and the device id percent-encoded', () => {
  const summary = { 'message-count': '1', 'last-message-sender': 'bob@localhost', 'last-message-body': 'hi' };
  const a = buildNotification('v3', summary, { service: 'fcm', device_id: 'a/b?c', mode: 'prod', sound: 'x', tags: 'never', other: 'ignored' });
  assert.ok(a.ok);
  assert.equal(a.path, 'v3/notification/a%2Fb%3Fc');
  assert.deepEqual(JSON.parse(a.body), { service: 'fcm', mode: 'prod', alert: { body: 'hi', title: 'bob@localhost', tag: 'bob@localhost', badge: 1, sound: 'x' } });
  const s = buildNotification('v2', summary, { service: 'apns', device_id: 'd', silent: 'true', click_action: 'not in data' });
  assert.ok(s.ok);
  assert.deepEqual(JSON.parse(s.body), { service: 'apns', data: { 'message-count': 1, 'last-message-sender': 'bob@localhost', 'last-message-body': 'hi' } });
  assert.equal(buildNotification('v3', summary, { device_id: 'd' }).ok, false);
  assert.equal(buildNotification('v3', summary, { service: 'fcm' }).ok, false);
});

test('MongoosePush answers are classified: 2xx delivered, 410 gone for the event, 5xx and no answer retried, other 4xx final', () => {
  const st = (status: number) => resultOf({ kind: 'http_status', status, headers: {}, body: '', timeMs: 1 }).kind;
  assert.equal(resultOf({ kind: 'ok', status: 200, headers: {}, body: '', timeMs: 1 }).kind, 'delivered');
  assert.deepEqual(resultOf({ kind: 'http_status', status: 410, headers: {}, body: '', timeMs: 1 }), { kind: 'gone', status: '410', error: 'HTTP 410: device not registered', scope: 'event' });
  assert.deepEqual([st(500), st(503), st(429), st(408), st(400), st(404)], ['retry', 'retry', 'retry', 'retry', 'final', 'final']);
  assert.equal(resultOf({ kind: 'refused', message: 'ECONNREFUSED' }).kind, 'retry');
});

test('a notification\'s event id names its registration and differs per stanza', () => {
  const to = parseJid('alice@localhost');
  const reg = { pubsub: 'pubsub.localhost', node: 'n.ode/1', form: { device_id: 'tok' } };
  const id = pushEventId('ref-1', to, reg);
  assert.deepEqual(registrationOfEventId(id), { user: 'alice', domain: 'localhost', pubsub: 'pubsub.localhost', node: 'n.ode/1', deviceId: 'tok' });
  assert.notEqual(pushEventId('ref-2', to, reg), id);
  assert.equal(registrationOfEventId('garbage'), undefined);
});
