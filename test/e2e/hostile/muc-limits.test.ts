// Group chat against a hostile occupant, over real sockets: what one user's
// stanzas make a room send (escaping and fan-out together) is bounded by
// mod_muc.max_broadcast_rate, a room's affiliations by max_affiliations
// (and a request naming thousands of them is stored once), the rooms one
// user creates by max_rooms_per_user, the service's room list always fits
// in what the server writes to a client, and a room relays only the
// declines of invitations it sent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, errorCondition, xml, type TestClient, type XmlElement } from '../helpers/client.ts';
import { restart } from '../delivery/helpers.ts';
import { MUC, MUC_ADMIN, MUC_OWNER, MUC_USER, SERVICE } from '../helpers/muc.ts';

const DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
/** A bucket of 4 × 20,000 characters. */
const RATE = 20_000;
const MAX_AFFILIATIONS = 50;
const MAX_ROOMS_PER_USER = 25;

let server: Petrel;

before(async () => {
  server = await startPetrel({
    users: [['mallory', 'pw'], ['alice', 'pw'], ['bob', 'pw'], ['carol', 'pw']],
    extraToml: `[modules.mod_muc]\n  max_broadcast_rate = ${RATE}\n  max_affiliations = ${MAX_AFFILIATIONS}\n  max_rooms_per_user = ${MAX_ROOMS_PER_USER}\n`,
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

/** Creates `room` as a persistent room owned by `c`, and leaves it. */
async function persistentRoom(c: TestClient, room: string, fields: Record<string, string> = {}): Promise<void> {
  const full = `${room}@${SERVICE}/creator`;
  await join(c, room, 'creator');
  await configure(c, room, { 'muc#roomconfig_persistentroom': '1', ...fields });
  const gone = c.waitFor((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === full);
  await c.send(xml('presence', { to: full, type: 'unavailable' }));
  await gone;
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
    const makers = await Promise.all(['mallory', 'alice', 'bob'].map((u) => connect({ port: server.port }, u, 'pw')));
    const reader = await connect({ port: server.port }, 'carol', 'pw');
    try {
      // Sixty rooms whose titles are 1,024 double quotes: 6 KiB each as written, 370 KiB together.
      for (let i = 0; i < 60; i++) await persistentRoom(makers[i % 3]!, `long${i}`, { 'muc#roomconfig_roomname': '"'.repeat(1024) });
      const res = await reader.iq(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: DISCO_ITEMS })));
      const listed = res.getChild('query')!.getChildren('item');
      assert.ok(listed.length > 0 && listed.length < 60, `${listed.length} rooms listed`);
      assert.ok(res.toString().length <= 70_000, `${res.toString().length} characters`);
    } finally {
      await Promise.all([...makers, reader].map((c) => c.close()));
    }
  });
});

describe('mod_muc.max_rooms_per_user', () => {
  test('a user may have created only so many rooms that still exist; handing them to another owner frees nothing and costs the new owner nothing; destroying one frees a place', async () => {
    const [carol, dave] = await Promise.all(['carol', 'bob'].map((u) => connect({ port: server.port }, u, 'pw')));
    try {
      for (let i = 0; i < MAX_ROOMS_PER_USER; i++) await persistentRoom(carol!, `quota${i}`);
      const refused = await join(carol!, 'quota-extra', 'creator');
      assert.equal(refused.attrs.type, 'error');
      assert.equal(errorCondition(refused), 'policy-violation');
      assert.match(refused.getChild('error')!.getChildText('text', 'urn:ietf:params:xml:ns:xmpp-stanzas') ?? '', new RegExp(`created ${MAX_ROOMS_PER_USER} rooms`));
      // Another owner for the first room, and carol steps down: still counted against carol.
      await join(carol!, 'quota0', 'creator');
      await carol!.iq(xml('iq', { type: 'set', to: `quota0@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { affiliation: 'owner', jid: dave!.bare }))));
      await carol!.iq(xml('iq', { type: 'set', to: `quota0@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { affiliation: 'none', jid: carol!.bare }))));
      assert.equal(errorCondition(await join(carol!, 'quota-extra2', 'creator2')), 'policy-violation');
      // Destroying one of them frees a place.
      await carol!.iq(xml('iq', { type: 'set', to: `quota1@${SERVICE}` }, xml('query', { xmlns: MUC_OWNER }, xml('destroy', {}, xml('reason', {}, 'done')))));
      const made = await join(carol!, 'quota-extra3', 'creator3');
      assert.notEqual(made.attrs.type, 'error');
    } finally {
      await Promise.all([carol, dave].map((c) => c?.close()));
    }
  });
});

describe('declines', () => {
  test('the room relays the decline of an invitation it sent, to the inviter, and refuses one from anybody else', async () => {
    const [alice, bob, mallory] = await Promise.all(['alice', 'bob', 'mallory'].map((u) => connect({ port: server.port }, u, 'pw')));
    try {
      const room = `invites@${SERVICE}`;
      // Available, so that messages to their bare JIDs reach them rather than their offline stores.
      await Promise.all([alice!.available(), bob!.available()]);
      await join(alice!, 'invites', 'Alice');
      await configure(alice!, 'invites', { 'muc#roomconfig_allowinvites': '1' });
      const stray = mallory!.waitFor((el) => el.name === 'message' && el.attrs.type === 'error', 10_000, 'the refusal of a stray decline');
      await mallory!.send(xml('message', { to: room }, xml('x', { xmlns: MUC_USER }, xml('decline', { to: bob!.bare }, xml('reason', {}, 'spam')))));
      assert.equal(errorCondition(await stray), 'not-acceptable');
      const invite = bob!.waitFor((el) => el.name === 'message' && el.getChild('x', MUC_USER)?.getChild('invite') !== undefined, 10_000, 'the invitation');
      await alice!.send(xml('message', { to: room }, xml('x', { xmlns: MUC_USER }, xml('invite', { to: bob!.bare }))));
      await invite;
      const declined = alice!.waitFor((el) => el.name === 'message' && el.getChild('x', MUC_USER)?.getChild('decline') !== undefined, 10_000, 'the decline');
      await bob!.send(xml('message', { to: room }, xml('x', { xmlns: MUC_USER }, xml('decline', { to: alice!.bare }, xml('reason', {}, 'busy')))));
      const d = (await declined).getChild('x', MUC_USER)!.getChild('decline')!;
      assert.equal(d.attrs.from, bob!.bare);
      assert.equal(d.getChildText('reason'), 'busy');
      assert.equal(bob!.take((el) => el.name === 'message' && el.attrs.type === 'error').length, 0);
      // Declined once: a second decline has no invitation left.
      const again = bob!.waitFor((el) => el.name === 'message' && el.attrs.type === 'error', 10_000, 'the refusal of a second decline');
      await bob!.send(xml('message', { to: room }, xml('x', { xmlns: MUC_USER }, xml('decline', { to: alice!.bare }))));
      assert.equal(errorCondition(await again), 'not-acceptable');
      assert.equal(mallory!.take(() => true).filter((el) => el.name === 'message' && el.getChild('x', MUC_USER)?.getChild('decline') !== undefined).length, 0);
    } finally {
      await Promise.all([alice, bob, mallory].map((c) => c?.close()));
    }
  });
});

