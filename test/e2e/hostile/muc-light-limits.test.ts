// MUC Light members are accounts of this server. Petrel does not federate,
// so a member on a domain it does not serve, or a local user that does not
// exist, could never read the room: each would only be memory the server
// keeps (a security tester filled 1.9 GB with rooms of 999 made-up members,
// counted by nobody's rooms_per_user). Creating a room, or changing its
// affiliations, with such a member is refused with item-not-found naming the
// JID, and nothing is applied. Also: rooms_per_user lets a third party fill a
// victim's quota; the victim's blocking list stops further additions.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, xml, type TestClient, type XmlElement } from '../helpers/client.ts';

const L = 'urn:xmpp:muclight:0';
const SERVICE = 'muclight.localhost';
const DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

let server: Petrel;

before(async () => {
  server = await startPetrel({
    users: [['alice', 'pw'], ['bob', 'pw'], ['carol', 'pw'], ['mallory', 'pw'], ['victim', 'pw']],
    extraToml: '[modules.mod_muc_light]\n  rooms_per_user = 3\n',
  });
});

after(async () => {
  await server?.dispose();
});

function q(ns: string, ...children: XmlElement[]): XmlElement {
  return xml('query', { xmlns: `${L}#${ns}` }, ...children);
}

function user(aff: string, jid: string): XmlElement {
  return xml('user', { affiliation: aff }, jid);
}

/** Rejects with item-not-found whose text names `jid`. */
function refusedNaming(jid: string): (e: unknown) => boolean {
  return (e) => {
    const err = e as { condition?: string; text?: string };
    assert.equal(err.condition, 'item-not-found', String(e));
    assert.ok(err.text?.includes(jid), `the error names ${jid}: ${err.text}`);
    return true;
  };
}

async function roomsOf(c: TestClient): Promise<string[]> {
  const r = (await c.iq(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: DISCO_ITEMS })))).getChild('query')!;
  return r.getChildren('item').map((i) => String(i.attrs.jid));
}

async function members(c: TestClient, room: string): Promise<string[]> {
  const r = (await c.iq(xml('iq', { type: 'get', to: room }, q('affiliations')))).getChild('query')!;
  return r.getChildren('user').map((u) => `${u.attrs.affiliation} ${u.text()}`).sort();
}

describe('MUC Light members are accounts of this server', () => {
  test('a room with a made-up member is not created; one with real accounts is', async () => {
    const [alice, bob] = await Promise.all(['alice', 'bob'].map((n) => connect({ port: server.port }, n, 'pw')));
    try {
      // Unknown domain, unknown local user, a domain alone, a JID of the service itself.
      for (const bogus of ['0.1@x', 'nobody@localhost', 'localhost', 'ghost@muclight.localhost']) {
        await assert.rejects(alice!.iq(xml('iq', { type: 'set', to: `made-up@${SERVICE}` }, q('create', xml('occupants', {}, user('member', bogus))))), refusedNaming(bogus));
      }
      // A real account next to a made-up one: the whole request fails, and bob is told of nothing.
      await assert.rejects(alice!.iq(xml('iq', { type: 'set', to: `made-up@${SERVICE}` }, q('create', xml('occupants', {}, user('member', bob!.bare), user('member', '0.2@x'))))), refusedNaming('0.2@x'));
      // A server-named room too.
      await assert.rejects(alice!.iq(xml('iq', { type: 'set', to: SERVICE }, q('create', xml('occupants', {}, user('member', '0.3@x'))))), refusedNaming('0.3@x'));
      await assert.rejects(alice!.iq(xml('iq', { type: 'get', to: `made-up@${SERVICE}` }, q('info'))), (e) => (e as { condition?: string }).condition === 'item-not-found');
      assert.deepEqual(await roomsOf(alice!), []);
      assert.deepEqual(await roomsOf(bob!), []);
      // Bob's disco#items answer came after any notice the refused create could have sent him.
      assert.deepEqual(bob!.take((el) => el.name === 'message' && el.getChild('x', `${L}#affiliations`) !== undefined), [], 'bob was not told of a room');

      // Real accounts: created.
      await alice!.iq(xml('iq', { type: 'set', to: `made-up@${SERVICE}` }, q('create', xml('occupants', {}, user('member', bob!.bare)))));
      assert.deepEqual(await members(alice!, `made-up@${SERVICE}`), [`member ${bob!.bare}`, `owner ${alice!.bare}`]);
      await alice!.iq(xml('iq', { type: 'set', to: `made-up@${SERVICE}` }, q('destroy')));
    } finally {
      await Promise.all([alice!, bob!].map((c) => c.close()));
    }
  });

  test('an affiliation change adding a made-up member is refused, and changes nothing', async () => {
    const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((n) => connect({ port: server.port }, n, 'pw')));
    const room = `affs@${SERVICE}`;
    try {
      await alice!.iq(xml('iq', { type: 'set', to: room }, q('create', xml('occupants', {}, user('member', bob!.bare)))));
      const before = await members(alice!, room);
      await assert.rejects(alice!.iq(xml('iq', { type: 'set', to: room }, q('affiliations', user('member', '0.1@x')))), refusedNaming('0.1@x'));
      await assert.rejects(alice!.iq(xml('iq', { type: 'set', to: room }, q('affiliations', user('member', carol!.bare), user('none', bob!.bare), user('member', 'nobody@localhost')))), refusedNaming('nobody@localhost'));
      assert.deepEqual(await members(alice!, room), before);
      // Removing and adding real accounts still works.
      await alice!.iq(xml('iq', { type: 'set', to: room }, q('affiliations', user('member', carol!.bare), user('none', bob!.bare))));
      assert.deepEqual(await members(alice!, room), [`member ${carol!.bare}`, `owner ${alice!.bare}`]);
      await alice!.iq(xml('iq', { type: 'set', to: room }, q('destroy')));
    } finally {
      await Promise.all([alice!, bob!, carol!].map((c) => c.close()));
    }
  });

  test('a third party can fill a victim\'s rooms_per_user; the victim\'s blocking list stops more', async () => {
    const [mallory, victim] = await Promise.all(['mallory', 'victim'].map((n) => connect({ port: server.port }, n, 'pw')));
    try {
      for (const name of ['fill1', 'fill2', 'fill3']) {
        await mallory!.iq(xml('iq', { type: 'set', to: `${name}@${SERVICE}` }, q('create', xml('occupants', {}, user('member', victim!.bare)))));
        await mallory!.iq(xml('iq', { type: 'set', to: `${name}@${SERVICE}` }, q('affiliations', user('none', mallory!.bare))));
      }
      assert.equal((await roomsOf(victim!)).length, 3);
      await assert.rejects(victim!.iq(xml('iq', { type: 'set', to: `mine@${SERVICE}` }, q('create'))), (e) => (e as { condition?: string }).condition === 'not-allowed');
      // The victim blocks mallory and destroys a room (it is their own now): mallory's next room skips them.
      await victim!.iq(xml('iq', { type: 'set', to: SERVICE }, xml('query', { xmlns: `${L}#blocking` }, xml('user', { action: 'deny' }, mallory!.bare))));
      await victim!.iq(xml('iq', { type: 'set', to: `fill1@${SERVICE}` }, q('destroy')));
      await mallory!.iq(xml('iq', { type: 'set', to: `fill4@${SERVICE}` }, q('create', xml('occupants', {}, user('member', victim!.bare)))));
      assert.deepEqual(await members(mallory!, `fill4@${SERVICE}`), [`owner ${mallory!.bare}`]);
      await victim!.iq(xml('iq', { type: 'set', to: `mine@${SERVICE}` }, q('create')));
    } finally {
      await Promise.all([mallory!, victim!].map((c) => c.close()));
    }
  });
});
