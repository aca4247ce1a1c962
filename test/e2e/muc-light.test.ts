// MUC Light (MongooseIM's urn:xmpp:muclight:0) with a real server process and
// @xmpp/client users: creating rooms with members, messages to every member's
// resources, versioned configuration and member lists, leaving, blocking,
// destroying, listing, limits, a restart, and the event pusher's per-recipient
// group chat events.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from './helpers/server.ts';
import { connect, xml, type TestClient, type XmlElement } from './helpers/client.ts';
import { restart } from './delivery/helpers.ts';
import { handlersToml, poolToml, Webhook } from './pusher/helpers.ts';

const L = 'urn:xmpp:muclight:0';
const SERVICE = 'muclight.localhost';

let server: Petrel;

before(async () => {
  server = await startPetrel({
    users: [['alice', 'pw'], ['bob', 'pw'], ['carol', 'pw'], ['dave', 'pw']],
    extraToml: '[modules.mod_muc_light]\n  rooms_per_page = 2\n  max_occupants = 3\n',
  });
});

after(async () => {
  await server?.dispose();
});

async function users(...names: string[]): Promise<TestClient[]> {
  return Promise.all(names.map((n) => connect({ port: server.port }, n, 'pw')));
}

function q(ns: string, ...children: XmlElement[]): XmlElement {
  return xml('query', { xmlns: `${L}#${ns}` }, ...children);
}

function user(aff: string, jid: string): XmlElement {
  return xml('user', { affiliation: aff }, jid);
}

function condition(err: unknown): string | undefined {
  return (err as { condition?: string }).condition;
}

function affsNotice(el: XmlElement): boolean {
  return el.name === 'message' && el.getChild('x', `${L}#affiliations`) !== undefined;
}

describe('MUC Light rooms', () => {
  test('a created room tells each member their affiliation, and a message reaches every member, the sender too', async () => {
    const [alice, bob, carol] = await users('alice', 'bob', 'carol');
    try {
      const notices = [alice, bob, carol].map((c) => c.waitFor(affsNotice));
      await alice.iq(xml('iq', { type: 'set', to: `coven@${SERVICE}` }, q('create', xml('configuration', {}, xml('roomname', {}, 'A Dark Cave')), xml('occupants', {}, user('member', bob.bare), user('member', carol.bare)))));
      const [na, nb] = await Promise.all(notices);
      assert.deepEqual(na!.getChild('x', `${L}#affiliations`)!.getChildren('user').map((u) => [u.attrs.affiliation, u.text()]), [['owner', alice.bare]]);
      assert.deepEqual(nb!.getChild('x', `${L}#affiliations`)!.getChildren('user').map((u) => [u.attrs.affiliation, u.text()]), [['member', bob.bare]]);
      assert.equal(nb!.getChild('x', `${L}#affiliations`)!.getChild('prev-version'), undefined, 'a newcomer gets no prev-version');

      const got = [alice, bob, carol].map((c) => c.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'tis time'));
      await bob.send(xml('message', { to: `coven@${SERVICE}`, type: 'groupchat', id: 'msg111' }, xml('body', {}, 'tis time')));
      for (const m of await Promise.all(got)) {
        assert.equal(m.attrs.from, `coven@${SERVICE}/${bob.bare}`);
        assert.equal(m.attrs.id, 'msg111');
      }

      // The same name again is a conflict; dave, not a member, may not post or read.
      await assert.rejects(carol.iq(xml('iq', { type: 'set', to: `coven@${SERVICE}` }, q('create'))), (e) => condition(e) === 'conflict');
      const [dave] = await users('dave');
      await assert.rejects(dave!.iq(xml('iq', { type: 'get', to: `coven@${SERVICE}` }, q('info'))), (e) => condition(e) === 'item-not-found');
      const refused = dave!.waitFor((el) => el.name === 'message' && el.attrs.type === 'error');
      await dave!.send(xml('message', { to: `coven@${SERVICE}`, type: 'groupchat' }, xml('body', {}, 'let me in')));
      await refused;
      await dave!.close();
    } finally {
      await Promise.all([alice, bob, carol].map((c) => c.close()));
    }
  });

  test('configuration and member lists are versioned; a change tells every member the old and new version', async () => {
    const [alice, bob] = await users('alice', 'bob');
    try {
      await alice.iq(xml('iq', { type: 'set', to: `cfg@${SERVICE}` }, q('create', xml('occupants', {}, user('member', bob.bare)))));
      const info = (await bob.iq(xml('iq', { type: 'get', to: `cfg@${SERVICE}` }, q('info', xml('version'))))).getChild('query')!;
      const v1 = info.getChildText('version')!;
      assert.equal(info.getChild('configuration')!.getChildText('roomname'), 'Untitled');
      assert.deepEqual(info.getChild('occupants')!.getChildren('user').map((u) => u.text()).sort(), [alice.bare, bob.bare].sort());
      // The same version: an empty result.
      const same = await bob.iq(xml('iq', { type: 'get', to: `cfg@${SERVICE}` }, q('configuration', xml('version', {}, v1))));
      assert.equal(same.getChild('query'), undefined);

      // A member may not configure (all_can_configure = false); the owner may.
      await assert.rejects(bob.iq(xml('iq', { type: 'set', to: `cfg@${SERVICE}` }, q('configuration', xml('roomname', {}, 'Mine')))), (e) => condition(e) === 'not-allowed');
      const change = bob.waitFor((el) => el.name === 'message' && el.getChild('x', `${L}#configuration`) !== undefined);
      await alice.iq(xml('iq', { type: 'set', to: `cfg@${SERVICE}` }, q('configuration', xml('subject', {}, 'To be or not to be?'))));
      const x = (await change).getChild('x', `${L}#configuration`)!;
      assert.equal(x.getChildText('prev-version'), v1);
      assert.equal(x.getChildText('subject'), 'To be or not to be?');
      // A field the schema does not have is a bad request.
      await assert.rejects(alice.iq(xml('iq', { type: 'set', to: `cfg@${SERVICE}` }, q('configuration', xml('colour', {}, 'red')))), (e) => condition(e) === 'bad-request');
    } finally {
      await Promise.all([alice, bob].map((c) => c.close()));
    }
  });

  test('members leave, the owner hands over, blocking users are skipped, and the owner destroys the room', async () => {
    const [alice, bob, carol] = await users('alice', 'bob', 'carol');
    try {
      // Carol blocks Alice: Alice cannot add her.
      await carol.iq(xml('iq', { type: 'set', to: SERVICE }, xml('query', { xmlns: `${L}#blocking` }, xml('user', { action: 'deny' }, alice.bare))));
      const list = (await carol.iq(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: `${L}#blocking` })))).getChild('query')!;
      assert.deepEqual(list.getChildren('user').map((u) => [u.attrs.action, u.text()]), [['deny', alice.bare]]);
      await alice.iq(xml('iq', { type: 'set', to: `heath@${SERVICE}` }, q('create', xml('occupants', {}, user('member', bob.bare), user('member', carol.bare)))));
      const affs = (await alice.iq(xml('iq', { type: 'get', to: `heath@${SERVICE}` }, q('affiliations')))).getChild('query')!;
      assert.deepEqual(affs.getChildren('user').map((u) => u.text()).sort(), [alice.bare, bob.bare].sort());
      await carol.iq(xml('iq', { type: 'set', to: SERVICE }, xml('query', { xmlns: `${L}#blocking` }, xml('user', { action: 'allow' }, alice.bare))));

      // Bob may not remove Alice; Alice leaving makes Bob the owner.
      await assert.rejects(bob.iq(xml('iq', { type: 'set', to: `heath@${SERVICE}` }, q('affiliations', user('none', alice.bare)))), (e) => condition(e) === 'not-allowed');
      const told = bob.waitFor((el) => affsNotice(el) && el.getChild('x', `${L}#affiliations`)!.getChildren('user').some((u) => u.text() === alice.bare && u.attrs.affiliation === 'none'));
      const r = (await alice.iq(xml('iq', { type: 'set', to: `heath@${SERVICE}` }, q('affiliations', user('none', alice.bare))))).getChild('query')!;
      assert.deepEqual(r.getChildren('user').map((u) => [u.attrs.affiliation, u.text()]).sort(), [['none', alice.bare], ['owner', bob.bare]].sort());
      const n = (await told).getChild('x', `${L}#affiliations`)!;
      assert.ok(n.getChildren('user').some((u) => u.text() === bob.bare && u.attrs.affiliation === 'owner'));

      // max_occupants = 3: a fourth is refused.
      await bob.iq(xml('iq', { type: 'set', to: `heath@${SERVICE}` }, q('affiliations', user('member', carol.bare), user('member', alice.bare))));
      await assert.rejects(bob.iq(xml('iq', { type: 'set', to: `heath@${SERVICE}` }, q('affiliations', user('member', 'dave@localhost')))), (e) => condition(e) === 'not-allowed');

      // The owner destroys it: everyone is told, and it is gone.
      const destroyed = carol.waitFor((el) => el.name === 'message' && el.getChild('x', `${L}#destroy`) !== undefined);
      await bob.iq(xml('iq', { type: 'set', to: `heath@${SERVICE}` }, q('destroy')));
      await destroyed;
      await assert.rejects(bob.iq(xml('iq', { type: 'get', to: `heath@${SERVICE}` }, q('info'))), (e) => condition(e) === 'item-not-found');
    } finally {
      await Promise.all([alice, bob, carol].map((c) => c.close()));
    }
  });

  test('the service lists the rooms a user is in, a page at a time; rooms and members survive a restart', async () => {
    let [dave] = await users('dave');
    for (const name of ['p1', 'p2', 'p3']) await dave!.iq(xml('iq', { type: 'set', to: `${name}@${SERVICE}` }, q('create', xml('configuration', {}, xml('roomname', {}, `Room ${name}`)))));
    const page1 = (await dave!.iq(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' })))).getChild('query')!;
    assert.deepEqual(page1.getChildren('item').map((i) => i.attrs.name), ['Room p1', 'Room p2']);
    const set = page1.getChild('set', 'http://jabber.org/protocol/rsm')!;
    assert.equal(set.getChildText('count'), '3');
    const page2 = (await dave!.iq(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' }, xml('set', { xmlns: 'http://jabber.org/protocol/rsm' }, xml('after', {}, set.getChildText('last')!)))))).getChild('query')!;
    assert.deepEqual(page2.getChildren('item').map((i) => i.attrs.name), ['Room p3']);
    // A room with a server-chosen name: the result comes from the new room.
    const random = await dave!.iq(xml('iq', { type: 'set', to: SERVICE }, q('create')));
    assert.match(String(random.attrs.from), new RegExp(`^[0-9a-f]{16}@${SERVICE.replace('.', '\\.')}$`));
    await dave!.close();

    assert.equal((await server.stop()).code, 0);
    await restart(server);
    [dave] = await users('dave');
    try {
      const info = (await dave!.iq(xml('iq', { type: 'get', to: `p2@${SERVICE}` }, q('info')))).getChild('query')!;
      assert.equal(info.getChild('configuration')!.getChildText('roomname'), 'Room p2');
      assert.deepEqual(info.getChild('occupants')!.getChildren('user').map((u) => [u.attrs.affiliation, u.text()]), [['owner', 'dave@localhost']]);
    } finally {
      await dave!.close();
    }
  });
});

describe('MUC Light events for the event pusher', () => {
  let hook: Webhook;
  let pushed: Petrel;

  before(async () => {
    hook = await Webhook.start();
    pushed = await startPetrel({
      users: [['alice', 'pw'], ['bob', 'pw']],
      extraToml: '[modules.mod_muc_light]\n' + poolToml({ tag: 'http_pool', host: hook.origin }) + handlersToml([{ path: '/json', callback_module: 'mod_event_pusher_http_json' }]),
    });
  });

  after(async () => {
    await pushed?.dispose();
    await hook?.close();
  });

  test('a room message is pushed as sent, and once per member resource reached, naming the room and the sender', async () => {
    const [alice, bob] = await Promise.all(['alice', 'bob'].map((n) => connect({ port: pushed.port }, n, 'pw')));
    try {
      await alice!.iq(xml('iq', { type: 'set', to: `ev@${SERVICE}` }, q('create', xml('occupants', {}, user('member', bob!.bare)))));
      const got = [alice!, bob!].map((c) => c.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'light news'));
      await alice!.send(xml('message', { to: `ev@${SERVICE}`, type: 'groupchat', id: 'l1' }, xml('body', {}, 'light news')));
      await Promise.all(got);
      const events = (await hook.waitFor((r) => r.text.includes('light news'), 3)).map((r) => JSON.parse(r.text).data);
      const out = events.filter((e) => e.direction === 'out');
      assert.deepEqual(out.map((e) => e.to).sort(), [alice!.jid, bob!.jid].sort());
      for (const e of out) assert.deepEqual([e.room, e.occupant], [`ev@${SERVICE}`, alice!.bare]);
      assert.equal(events.filter((e) => e.direction === 'in').length, 1);
    } finally {
      await Promise.all([alice!, bob!].map((c) => c.close()));
    }
  });
});
