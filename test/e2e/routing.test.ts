// Resource binding, the legacy session IQ, stanza routing between local
// users (RFC 6120 §8, §10; RFC 6121 §8), offline storage, disco and ping.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { XmppError } from '@xmpp/client';
import { startPetrel, type Petrel } from './helpers/server.ts';
import { connect, errorCondition, isMessage, settle, xml, type TestClient } from './helpers/client.ts';

const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

const USERS: Array<[string, string]> = [
  ['alice', 'pw-alice'],
  ['bob', 'pw-bob'],
  ['carol', 'pw-carol'],
  ['dave', 'pw-dave'],
  ['erin', 'pw-erin'],
];

let server: Petrel;
const open: TestClient[] = [];

async function login(user: string, resource?: string): Promise<TestClient> {
  const c = await connect(server, user, `pw-${user}`, { resource });
  open.push(c);
  return c;
}

before(async () => {
  server = await startPetrel({ users: USERS });
});

after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await server.dispose();
});

describe('resource binding and session', () => {
  test('a requested resource is bound as asked', async () => {
    const c = await login('alice', 'laptop');
    assert.equal(c.jid, 'alice@localhost/laptop');
  });

  test('without a requested resource the server generates one', async () => {
    const c = await login('alice');
    assert.match(c.jid, /^alice@localhost\/.+$/);
    assert.notEqual(c.jid, 'alice@localhost/laptop');
  });

  test('binding a resource already in use replaces the older session with a conflict stream error', async () => {
    const first = await login('erin', 'phone');
    const second = await login('erin', 'phone');
    assert.equal(second.jid, 'erin@localhost/phone');
    await first.disconnected;
    assert.ok(first.errors.some((e) => e.condition === 'conflict'));
  });

  test('the legacy session establishment IQ gets a result', async () => {
    const c = await login('alice', 'legacy');
    const reply = await c.iq(xml('iq', { type: 'set' }, xml('session', { xmlns: 'urn:ietf:params:xml:ns:xmpp-session' })));
    assert.equal(reply.attrs.type, 'result');
  });
});

describe('routing', () => {
  let alice: TestClient;
  before(async () => {
    alice = await login('alice', 'router');
    await alice.available();
  });

  test('a message to a full JID reaches that resource only', async () => {
    const b1 = await login('bob', 'one');
    const b2 = await login('bob', 'two');
    await b1.available();
    await b2.available();
    const id = await alice.message('bob@localhost/two', 'for two');
    const got = await b2.waitFor(isMessage(id));
    assert.equal(got.getChildText('body'), 'for two');
    await settle(alice, b1);
    assert.equal(b1.take(isMessage(id)).length, 0);
    await b1.close();
    await b2.close();
  });

  test('the server stamps from with the sender full JID when the client leaves it out', async () => {
    const bob = await login('bob', 'stamp');
    await bob.available();
    const id = await alice.message(bob.jid, 'who am I');
    const got = await bob.waitFor(isMessage(id));
    assert.equal(got.attrs.from, alice.jid);
    await bob.close();
  });

  test('a message to a bare JID goes to the resource of highest priority only', async () => {
    const high = await login('bob', 'high');
    const low = await login('bob', 'low');
    await high.available(5);
    await low.available(1);
    const id = await alice.message('bob@localhost', 'to the best one');
    await high.waitFor(isMessage(id));
    await settle(alice, low);
    assert.equal(low.take(isMessage(id)).length, 0);
    await high.close();
    await low.close();
  });

  test('a message to a bare JID goes to every resource sharing the highest priority', async () => {
    const r1 = await login('bob', 'eq1');
    const r2 = await login('bob', 'eq2');
    await r1.available(3);
    await r2.available(3);
    const id = await alice.message('bob@localhost', 'to both');
    await r1.waitFor(isMessage(id));
    await r2.waitFor(isMessage(id));
    await r1.close();
    await r2.close();
  });

  test('a resource with a negative priority gets nothing sent to the bare JID', async () => {
    const shy = await login('bob', 'shy');
    const main = await login('bob', 'main');
    await shy.available(-1);
    await main.available(0);
    const id = await alice.message('bob@localhost', 'not for shy');
    await main.waitFor(isMessage(id));
    await settle(alice, shy);
    assert.equal(shy.take(isMessage(id)).length, 0);
    await shy.close();
    await main.close();
  });

  test('a message to a user who is offline is stored and delivered with a delay stamp on the next available presence', async () => {
    const sentAt = Date.now();
    const id = await alice.message('carol@localhost', 'while you were out');
    // An IQ round trip: the message was handed to the router before this answer.
    await alice.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    const carol = await login('carol', 'back');
    await carol.available();
    const got = await carol.waitFor(isMessage(id));
    assert.equal(got.getChildText('body'), 'while you were out');
    assert.equal(got.attrs.from, alice.jid);
    const delay = got.getChild('delay', 'urn:xmpp:delay');
    assert.ok(delay, `no XEP-0203 delay in ${got}`);
    assert.equal(delay.attrs.from, 'localhost');
    const stamp = Date.parse(delay.attrs.stamp ?? '');
    assert.ok(Number.isFinite(stamp), `bad stamp ${delay.attrs.stamp}`);
    assert.ok(stamp >= sentAt - 1000 && stamp <= Date.now() + 1000, `stamp ${delay.attrs.stamp} is not the time of sending`);
    await carol.close();
  });

  test('offline messages are delivered once: the next login gets none of them again', async () => {
    const id = await alice.message('dave@localhost', 'once only');
    await alice.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    const first = await login('dave', 'first');
    await first.available();
    await first.waitFor(isMessage(id));
    await first.close();
    const second = await login('dave', 'second');
    await second.available();
    await settle(alice, second);
    assert.equal(second.take(isMessage(id)).length, 0);
    await second.close();
  });

  test('an IQ to another user full JID reaches that client and its answer comes back', async () => {
    const bob = await login('bob', 'pingable');
    // @xmpp/client answers XEP-0199 pings itself.
    const reply = await alice.iq(xml('iq', { type: 'get', to: bob.jid }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(reply.attrs.type, 'result');
    assert.equal(reply.attrs.from, bob.jid);
    await bob.close();
  });

  test('an IQ to a full JID with no session is answered with service-unavailable', async () => {
    await assert.rejects(alice.iq(xml('iq', { type: 'get', to: 'bob@localhost/gone' }, xml('ping', { xmlns: 'urn:xmpp:ping' }))), (err: XmppError) => {
      assert.equal(err.condition, 'service-unavailable');
      return true;
    });
  });

  test('a message to a user who does not exist is answered with service-unavailable', async () => {
    const id = await alice.message('nobody@localhost', 'hello?');
    const err = await alice.waitFor((el) => el.name === 'message' && el.attrs.id === id && el.attrs.type === 'error');
    assert.equal(errorCondition(err), 'service-unavailable');
    assert.equal(err.attrs.from, 'nobody@localhost');
  });

  test('a message to a domain the server does not serve is answered with remote-server-not-found', async () => {
    const id = await alice.message('someone@elsewhere.example', 'far away');
    const err = await alice.waitFor((el) => el.name === 'message' && el.attrs.id === id && el.attrs.type === 'error');
    assert.equal(errorCondition(err), 'remote-server-not-found');
  });

  test('a malformed to address gets a jid-malformed error and the session goes on', async () => {
    await alice.send(xml('message', { to: 'bad@@localhost', id: 'malformed1', type: 'chat' }, xml('body', {}, 'x')));
    const err = await alice.waitFor((el) => el.attrs.id === 'malformed1' && el.attrs.type === 'error');
    assert.equal(errorCondition(err), 'jid-malformed');
    assert.ok(err.getChild('error')?.getChild('jid-malformed', NS_STANZAS));
    const pong = await alice.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(pong.attrs.type, 'result');
  });

  test('a spoofed from address ends the stream with invalid-from', async () => {
    const liar = await login('alice', 'liar');
    const errored = new Promise<XmppError>((resolve) => liar.xmpp.on('error', resolve));
    await liar.send(xml('message', { to: 'bob@localhost', from: 'bob@localhost/x', type: 'chat' }, xml('body', {}, 'it is me, bob')));
    const err = await errored;
    assert.equal(err.condition, 'invalid-from');
    await liar.disconnected;
    // Others are not affected.
    const pong = await alice.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(pong.attrs.type, 'result');
  });

  test('a from address naming the sender own bare JID is accepted and stamped with the full JID', async () => {
    const bob = await login('bob', 'bare-from');
    await bob.available();
    await alice.send(xml('message', { to: bob.jid, from: 'alice@localhost', id: 'barefrom1', type: 'chat' }, xml('body', {}, 'x')));
    const got = await bob.waitFor(isMessage('barefrom1'));
    assert.equal(got.attrs.from, alice.jid);
    await bob.close();
  });
});

describe('disco and ping', () => {
  let alice: TestClient;
  before(async () => {
    alice = await login('alice', 'disco');
  });

  test('disco#info of the server names it and lists its features, ping and offline storage among them', async () => {
    const reply = await alice.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    const q = reply.getChild('query', 'http://jabber.org/protocol/disco#info')!;
    const identity = q.getChild('identity')!;
    assert.equal(identity.attrs.category, 'server');
    assert.equal(identity.attrs.type, 'im');
    const features = q.getChildren('feature').map((f) => f.attrs.var);
    for (const f of ['http://jabber.org/protocol/disco#info', 'urn:xmpp:ping', 'msgoffline']) {
      assert.ok(features.includes(f), `${f} missing from ${features.join(', ')}`);
    }
  });

  test('disco#items of the server answers with an empty list', async () => {
    const reply = await alice.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' })));
    assert.equal(reply.getChild('query')!.getChildren('item').length, 0);
  });

  test('the server answers a ping with an empty result', async () => {
    const reply = await alice.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(reply.attrs.type, 'result');
    assert.equal(reply.attrs.from, 'localhost');
    assert.equal(reply.children.length, 0);
  });

  test('an IQ the server does not understand gets service-unavailable', async () => {
    await assert.rejects(alice.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'urn:example:unknown' }))), (err: XmppError) => {
      assert.equal(err.condition, 'service-unavailable');
      return true;
    });
  });
});
