import { test } from 'node:test';
import { Registry } from 'prom-client';
import assert from 'node:assert/strict';
import { definition as ping } from '../../../src/modules/mod_ping.ts';
import { validate } from '../../../src/config/schema.ts';
import type { ModuleContext } from '../../../src/modules/types.ts';
import { parseJid } from '../../../src/xmpp/jid.ts';
import { Element } from '../../../src/xmpp/xml.ts';
import { StanzaError } from '../../../src/xmpp/errors.ts';

const vctx = { configDir: '/', warnings: [] as string[] };
const NO_PINGS = { send_pings: false, ping_interval: 60, ping_req_timeout: 32, timeout_action: 'none' } as const;

test('mod_ping answers a ping to the server with an empty result and announces urn:xmpp:ping', async () => {
  const features = new Set<string>();
  const inst = await ping.create({ features, hosts: ['example.com'], metrics: new Registry() } as unknown as ModuleContext, NO_PINGS);
  assert.ok(features.has('urn:xmpp:ping'));
  const payload = new Element('ping', { xmlns: 'urn:xmpp:ping' });
  const iq = new Element('iq', { type: 'get', id: 'p1', to: 'example.com' }).append(payload);
  const specs = inst.iqHandlers!();
  assert.equal(specs.length, 1);
  const h = specs[0]!;
  assert.equal(h.xmlns, 'urn:xmpp:ping');
  assert.equal(h.scope, 'server');
  assert.equal(await h.handler({ from: parseJid('a@example.com/r'), to: parseJid('example.com'), type: 'get', iq, payload }), undefined);
});

test('a ping of type set is answered with bad-request', async () => {
  const inst = await ping.create({ features: new Set(), hosts: ['example.com'], metrics: new Registry() } as unknown as ModuleContext, NO_PINGS);
  const payload = new Element('ping', { xmlns: 'urn:xmpp:ping' });
  const iq = new Element('iq', { type: 'set', id: 'p2', to: 'example.com' }).append(payload);
  const h = inst.iqHandlers!()[0]!;
  await assert.rejects(
    async () => h.handler({ from: parseJid('a@example.com/r'), to: parseJid('example.com'), type: 'set', iq, payload }),
    (err: unknown) => err instanceof StanzaError && err.condition === 'bad-request',
  );
});

test("mod_ping's options are MongooseIM's, with its defaults, and others are refused", () => {
  assert.deepEqual(validate(ping.configSpec, undefined, 'modules.mod_ping', vctx), NO_PINGS);
  assert.deepEqual(
    validate(ping.configSpec, { send_pings: true, ping_interval: 30, ping_req_timeout: 10, timeout_action: 'kill' }, 'modules.mod_ping', vctx),
    { send_pings: true, ping_interval: 30, ping_req_timeout: 10, timeout_action: 'kill' },
  );
  assert.throws(() => validate(ping.configSpec, { timeout_action: 'drop' }, 'modules.mod_ping', vctx), /modules\.mod_ping\.timeout_action/);
  assert.throws(() => validate(ping.configSpec, { ping_interval: 0 }, 'modules.mod_ping', vctx), /modules\.mod_ping\.ping_interval/);
  assert.throws(() => validate(ping.configSpec, { pings: true }, 'modules.mod_ping', vctx), /modules\.mod_ping\.pings: unknown option/);
});
