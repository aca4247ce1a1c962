// Group chat against a hostile occupant, over real sockets: what one user's
// stanzas make a room send (escaping and fan-out together) is bounded by
// mod_muc.max_broadcast_rate, a room's affiliations by max_affiliations
// (and a request naming thousands of them is stored once), and the
// service's room list always fits in what the server writes to a client.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, errorCondition, xml, type TestClient, type XmlElement } from '../helpers/client.ts';
import { restart } from '../delivery/helpers.ts';

const MUC = 'http://jabber.org/protocol/muc';
const MUC_USER = 'http://jabber.org/protocol/muc#user';
const MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
const MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
const DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
const SERVICE = 'conference.localhost';
/** A bucket of 4 × 20,000 characters. */
const RATE = 20_000;
const MAX_AFFILIATIONS = 50;

let server: Petrel;

before(async () => {
  server = await startPetrel({
    users: [['mallory', 'pw'], ['alice', 'pw'], ['bob', 'pw']],
    extraToml: `[modules.mod_muc]\n  max_broadcast_rate = ${RATE}\n  max_affiliations = ${MAX_AFFILIATIONS}\n`,
  });
});

after(async () => {
  await server?.dispose();
});

function isSelfPresence(full: string): (el: XmlElement) => boolean {
  return (el) => el.name === 'presence' && el.attrs.from === full && (el.attrs.type === 'error' || (el.getChild('x', MUC_USER)?.getChildren('status') ?? []).some((s) => s.attrs.code === '110'));
}

async function join(c: TestClient, room: string, nick: string): Promise<XmlElement> {
  const full = `${room}@${SERVICE}/${nick}`;
  const done = c.waitFor(isSelfPresence(full), 10_000, `join of ${full}`);
  await c.send(xml('presence', { to: full }, xml('x', { xmlns: MUC })));
  const p = await done;
  if (p.attrs.type !== 'error') await c.waitFor((el) => el.name === 'message' && el.getChild('subject') !== undefined, 10_000, 'the subject');
  return p;
}

async function configure(c: TestClient, room: string, fields: Record<string, string>): Promise<void> {
  await c.iq(xml('iq', { type: 'set', to: `${room}@${SERVICE}` }, xml('query', { xmlns: MUC_OWNER },
    xml('x', { xmlns: 'jabber:x:data', type: 'submit' }, ...Object.entries(fields).map(([k, v]) => xml('field', { var: k }, xml('value', {}, v)))))));
}

/** The condition of an IQ the server refused (an @xmpp/client StanzaError). */
async function refusal(p: Promise<unknown>): Promise<{ condition: string; text: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { condition?: string; text?: string };
    return { condition: e.condition ?? String(err), text: e.text ?? '' };
  }
  assert.fail('the request was accepted');
}

describe('mod_muc.max_broadcast_rate', () => {
  test('a presence or message whose copies together pass the budget is refused to its sender and reaches nobody; ordinary ones still go', async () => {
    const [mallory, alice, bob] = await Promise.all(['mallory', 'alice', 'bob'].map((u) => connect({ port: server.port }, u, 'pw')));
    try {
      await join(alice!, 'fanout', 'Alice');
      await join(bob!, 'fanout', 'Bob');
      await join(mallory!, 'fanout', 'M');
      const full = `fanout@${SERVICE}/M`;
      // 15,000 double quotes in an attribute: 90,000 characters as written, to each of three occupants.
      const big = mallory!.waitFor((el) => el.name === 'presence' && el.attrs.from === full && el.attrs.type === 'error', 10_000, 'the refusal of the big presence');
      await mallory!.send(xml('presence', { to: full }, xml('x', { xmlns: 'urn:example:junk', a: '"'.repeat(15_000) })));
      const refusedPresence = await big;
      assert.equal(errorCondition(refusedPresence), 'resource-constraint');
      // A groupchat body of 8,000 '>' is 32,000 characters as written, times three.
      const bigMessage = mallory!.waitFor((el) => el.name === 'message' && el.attrs.type === 'error', 10_000, 'the refusal of the big message');
      await mallory!.send(xml('message', { to: `fanout@${SERVICE}`, type: 'groupchat', id: 'big' }, xml('body', {}, '>'.repeat(8000))));
      assert.equal(errorCondition(await bigMessage), 'resource-constraint');
      // Then an ordinary status and message reach the others.
      const status = bob!.waitFor((el) => el.name === 'presence' && el.attrs.from === full && el.getChildText('status') === 'here', 10_000, 'the small presence');
      await mallory!.send(xml('presence', { to: full }, xml('status', {}, 'here')));
      await status;
      const hello = bob!.waitFor((el) => el.name === 'message' && el.attrs.from === full && el.getChildText('body') === 'hello', 10_000, 'the small message');
      await mallory!.send(xml('message', { to: `fanout@${SERVICE}`, type: 'groupchat', id: 'small' }, xml('body', {}, 'hello')));
      await hello;
      for (const c of [alice!, bob!]) {
        assert.equal(c.take((el) => el.attrs.from === full && el.toString().includes('urn:example:junk')).length, 0, 'the big presence reached nobody');
        assert.equal(c.take((el) => el.name === 'message' && el.attrs.id === 'big').length, 0, 'the big message reached nobody');
      }
    } finally {
      await Promise.all([mallory, alice, bob].map((c) => c?.close()));
    }
  });
});

describe('mod_muc.max_affiliations', () => {
  test('one request naming more affiliations than a room may hold applies those that fit, refuses the rest with policy-violation, and the room keeps them across a restart', async () => {
    let mallory = await connect({ port: server.port }, 'mallory', 'pw');
    await join(mallory, 'crowd', 'M');
    await configure(mallory, 'crowd', { 'muc#roomconfig_persistentroom': '1', 'muc#roomconfig_membersonly': '1' });
    const items = Array.from({ length: MAX_AFFILIATIONS + 20 }, (_, i) => xml('item', { affiliation: 'member', jid: `user${i}@elsewhere.example` }));
    const r = await refusal(mallory.iq(xml('iq', { type: 'set', to: `crowd@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, ...items))));
    assert.equal(r.condition, 'policy-violation');
    assert.match(r.text, new RegExp(`at most ${MAX_AFFILIATIONS} affiliations`));
    const members = async (c: TestClient) => {
      const res = await c.iq(xml('iq', { type: 'get', to: `crowd@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { affiliation: 'member' }))));
      return res.getChild('query')!.getChildren('item').map((i) => i.attrs.jid as string);
    };
    // The owner is one of the affiliations: 49 members fit.
    const before = await members(mallory);
    assert.equal(before.length, MAX_AFFILIATIONS - 1);
    // Changing one that exists is still allowed; adding one more is not.
    await mallory.iq(xml('iq', { type: 'set', to: `crowd@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { affiliation: 'outcast', jid: 'user0@elsewhere.example' }))));
    const more = await refusal(mallory.iq(xml('iq', { type: 'set', to: `crowd@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { affiliation: 'member', jid: 'late@elsewhere.example' })))));
    assert.equal(more.condition, 'policy-violation');
    await mallory.close();
    assert.equal((await server.stop()).code, 0);
    await restart(server);
    mallory = await connect({ port: server.port }, 'mallory', 'pw');
    try {
      await join(mallory, 'crowd', 'M');
      const after = await members(mallory);
      assert.deepEqual(after.sort(), before.filter((j) => j !== 'user0@elsewhere.example').sort(), 'the members written are the last state');
    } finally {
      await mallory.close();
    }
  });
});

describe('the service room list', () => {
  test('public rooms with long titles of characters that escape are listed as far as the answer stays small, and the answer arrives', async () => {
    const mallory = await connect({ port: server.port }, 'mallory', 'pw');
    const alice = await connect({ port: server.port }, 'alice', 'pw');
    try {
      // Sixty rooms whose titles are 1,024 double quotes: 6 KiB each as written, 370 KiB together.
      for (let i = 0; i < 60; i++) {
        await join(mallory, `long${i}`, 'M');
        await configure(mallory, `long${i}`, { 'muc#roomconfig_roomname': '"'.repeat(1024), 'muc#roomconfig_persistentroom': '1' });
        const gone = mallory.waitFor((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `long${i}@${SERVICE}/M`);
        await mallory.send(xml('presence', { to: `long${i}@${SERVICE}/M`, type: 'unavailable' }));
        await gone;
      }
      const res = await alice.iq(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: DISCO_ITEMS })));
      const listed = res.getChild('query')!.getChildren('item');
      assert.ok(listed.length > 0 && listed.length < 60, `${listed.length} rooms listed`);
      assert.ok(res.toString().length <= 70_000, `${res.toString().length} characters`);
    } finally {
      await mallory.close();
      await alice.close();
    }
  });
});
