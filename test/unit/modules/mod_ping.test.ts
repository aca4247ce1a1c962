import { test } from 'node:test';
import assert from 'node:assert/strict';
import { definition as ping } from '../../../src/modules/mod_ping.ts';
import { validate } from '../../../src/config/schema.ts';
import type { ModuleContext } from '../../../src/modules/types.ts';
import { parseJid } from '../../../src/xmpp/jid.ts';
import { Element } from '../../../src/xmpp/xml.ts';
import { StanzaError } from '../../../src/xmpp/errors.ts';

const vctx = { configDir: '/', warnings: [] as string[] };

test('mod_ping answers a ping to the server with an empty result and announces urn:xmpp:ping', async () => {
  const features = new Set<string>();
  const inst = await ping.create({ features, hosts: ['example.com'] } as unknown as ModuleContext, {});
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
  const inst = await ping.create({ features: new Set(), hosts: ['example.com'] } as unknown as ModuleContext, {});
  const payload = new Element('ping', { xmlns: 'urn:xmpp:ping' });
  const iq = new Element('iq', { type: 'set', id: 'p2', to: 'example.com' }).append(payload);
  const h = inst.iqHandlers!()[0]!;
  await assert.rejects(
    async () => h.handler({ from: parseJid('a@example.com/r'), to: parseJid('example.com'), type: 'set', iq, payload }),
    (err: unknown) => err instanceof StanzaError && err.condition === 'bad-request',
  );
});

test('mod_ping takes no options and rejects the MongooseIM client-ping keys', () => {
  assert.deepEqual(validate(ping.configSpec, undefined, 'modules.mod_ping', vctx), {});
  for (const key of ['send_pings', 'ping_interval', 'timeout_action', 'ping_req_timeout']) {
    assert.throws(() => validate(ping.configSpec, { [key]: 1 }, 'modules.mod_ping', vctx), new RegExp(`modules\\.mod_ping\\.${key}: unknown option`));
  }
});
