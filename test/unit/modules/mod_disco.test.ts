import { test } from 'node:test';
import assert from 'node:assert/strict';
import { definition as disco, discoInfo, discoItems } from '../../../src/modules/mod_disco.ts';
import { validate } from '../../../src/config/schema.ts';
import type { IqHandlerSpec, IqRequest, ModuleContext } from '../../../src/modules/types.ts';
import { parseJid } from '../../../src/xmpp/jid.ts';
import { Element } from '../../../src/xmpp/xml.ts';
import { StanzaError } from '../../../src/xmpp/errors.ts';

const vctx = { configDir: '/', warnings: [] as string[] };

function fakeCtx(features: Set<string>): ModuleContext {
  return { features, hosts: ['example.com'] } as unknown as ModuleContext;
}

function request(payload: Element): IqRequest {
  const iq = new Element('iq', { type: 'get', id: '1', to: 'example.com', from: 'a@example.com/r' }).append(payload);
  return { from: parseJid('a@example.com/r'), to: parseJid('example.com'), type: 'get', iq, payload };
}

function handler(specs: IqHandlerSpec[], xmlns: string): IqHandlerSpec {
  const h = specs.find((s) => s.xmlns === xmlns);
  assert.ok(h, `a handler for ${xmlns}`);
  return h;
}

test('disco#info names the server identity and lists sorted, unique features', () => {
  const q = discoInfo(['urn:xmpp:ping', 'msgoffline', 'urn:xmpp:ping']);
  assert.equal(q.attrs.xmlns, 'http://jabber.org/protocol/disco#info');
  assert.deepEqual(q.getChild('identity')!.attrs, { category: 'server', type: 'im', name: 'Petrel' });
  assert.deepEqual(
    q.getChildren('feature').map((f) => f.attrs.var),
    ['http://jabber.org/protocol/disco#info', 'http://jabber.org/protocol/disco#items', 'msgoffline', 'urn:xmpp:ping'],
  );
});

test('disco#items of the server is empty', () => {
  const q = discoItems();
  assert.equal(q.toString(), '<query xmlns="http://jabber.org/protocol/disco#items"/>');
});

test('the disco handlers answer for the server and see features added after they were created', async () => {
  const features = new Set<string>();
  const inst = await disco.create(fakeCtx(features), {});
  const specs = inst.iqHandlers!();
  const info = handler(specs, 'http://jabber.org/protocol/disco#info');
  assert.equal(info.scope, 'server');
  features.add('urn:example:late');
  const q = (await info.handler(request(new Element('query', { xmlns: 'http://jabber.org/protocol/disco#info' }))))!;
  assert.ok(q.getChildren('feature').some((f) => f.attrs.var === 'urn:example:late'));
  const items = handler(specs, 'http://jabber.org/protocol/disco#items');
  assert.equal(items.scope, 'server');
  const qi = (await items.handler(request(new Element('query', { xmlns: 'http://jabber.org/protocol/disco#items' }))))!;
  assert.equal(qi.children.length, 0);
});

test('a disco request naming a node is answered with item-not-found', async () => {
  const inst = await disco.create(fakeCtx(new Set()), {});
  for (const ns of ['http://jabber.org/protocol/disco#info', 'http://jabber.org/protocol/disco#items']) {
    const h = handler(inst.iqHandlers!(), ns);
    await assert.rejects(async () => h.handler(request(new Element('query', { xmlns: ns, node: 'x' }))), (err: unknown) => err instanceof StanzaError && err.condition === 'item-not-found');
  }
});

test('a disco request of type set is answered with bad-request', async () => {
  const inst = await disco.create(fakeCtx(new Set()), {});
  const h = handler(inst.iqHandlers!(), 'http://jabber.org/protocol/disco#info');
  const req = { ...request(new Element('query', { xmlns: 'http://jabber.org/protocol/disco#info' })), type: 'set' as const };
  await assert.rejects(async () => h.handler(req), (err: unknown) => err instanceof StanzaError && err.condition === 'bad-request');
});

test('mod_disco accepts MongooseIM\'s users_can_see_hidden_services, which changes nothing, and rejects unknown options', () => {
  assert.deepEqual(validate(disco.configSpec, {}, 'modules.mod_disco', vctx), { users_can_see_hidden_services: true });
  const ignored: { path: string; reason: string }[] = [];
  validate(disco.configSpec, { users_can_see_hidden_services: false }, 'modules.mod_disco', { ...vctx, ignored });
  assert.deepEqual(ignored.map((o) => o.path), ['modules.mod_disco.users_can_see_hidden_services']);
  assert.throws(() => validate(disco.configSpec, { extra_domains: [] }, 'modules.mod_disco', vctx), /modules\.mod_disco\.extra_domains: unknown option/);
});
