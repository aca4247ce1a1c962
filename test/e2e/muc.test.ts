// XEP-0045 group chat with a real server process and @xmpp/client users:
// creating and joining rooms, occupants' presence, messages, subject and
// history, kick and ban, members-only and password-protected rooms, and a
// persistent room surviving a restart.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFile, writeFile } from 'node:fs/promises';
import { preparePetrel, startPetrel, type Petrel } from './helpers/server.ts';
import { connect, xml, type TestClient, type XmlElement } from './helpers/client.ts';
import { restart } from './delivery/helpers.ts';
import { handlersToml, poolToml, Webhook } from './pusher/helpers.ts';
import { MUC, MUC_ADMIN, MUC_OWNER, MUC_USER, SERVICE } from './helpers/muc.ts';


// Awaited before any test or hook is declared: the runner starts the file's
// tests while the module is still being evaluated, so an await between
// declarations can let it end the file's hooks early (seen with
// --test-name-pattern: the top-level after ran before the before, and the
// server it started was never stopped).
const SLIXMPP = '/usr/bin/python3';
const hasSlixmpp = await new Promise<boolean>((resolve) => {
  execFile(SLIXMPP, ['-c', 'import slixmpp'], (err) => resolve(err === null));
});
if (!hasSlixmpp) console.log('# python3-slixmpp is not installed: the slixmpp group chat test is skipped');

let server: Petrel;

before(async () => {
  server = await startPetrel({
    users: [['alice', 'pw'], ['bob', 'pw'], ['carol', 'pw'], ['dave', 'pw']],
    extraToml: '[modules.mod_muc]\n  history_size = 3\n',
  });
});

after(async () => {
  await server?.dispose();
});

function statusCodes(el: XmlElement): string[] {
  return (el.getChild('x', MUC_USER)?.getChildren('status') ?? []).map((s) => s.attrs.code as string);
}

function presenceFrom(jid: string, type?: string): (el: XmlElement) => boolean {
  return (el) => el.name === 'presence' && el.attrs.from === jid && el.attrs.type === type;
}

function errorOf(el: XmlElement): string | undefined {
  const e = el.getChild('error');
  return e?.children.find((c) => typeof c !== 'string' && c.attrs.xmlns === 'urn:ietf:params:xml:ns:xmpp-stanzas')?.toString().match(/^<([a-z-]+)/)?.[1];
}

/** Joins `room` as `nick`; resolves with the self-presence (status 110) or the error presence. */
async function join(c: TestClient, room: string, nick: string, extra: XmlElement[] = []): Promise<XmlElement> {
  const full = `${room}@${SERVICE}/${nick}`;
  const done = c.waitFor((el) => el.name === 'presence' && el.attrs.from === full && (el.attrs.type === 'error' || statusCodes(el).includes('110')), 10_000, `join of ${full}`);
  await c.send(xml('presence', { to: full }, xml('x', { xmlns: MUC }, ...extra)));
  const p = await done;
  if (p.attrs.type !== 'error') await c.waitFor((el) => el.name === 'message' && el.attrs.type === 'groupchat' && el.getChild('subject') !== undefined, 10_000, 'the subject');
  return p;
}

async function users(...names: string[]): Promise<TestClient[]> {
  return Promise.all(names.map((n) => connect({ port: server.port }, n, 'pw')));
}

describe('XEP-0045 rooms', () => {
  test('the creator owns a new room; others join, see each other, chat, and get the recent history and the subject', async () => {
    const [alice, bob, carol] = await users('alice', 'bob', 'carol');
    try {
      const own = await join(alice, 'lobby', 'Alice');
      assert.deepEqual(statusCodes(own).sort(), ['110', '201']);
      assert.equal(own.getChild('x', MUC_USER)!.getChild('item')!.attrs.affiliation, 'owner');
      assert.equal(own.getChild('x', MUC_USER)!.getChild('item')!.attrs.role, 'moderator');

      const subjectSet = alice.waitFor((el) => el.name === 'message' && el.getChildText('subject') === 'Plans');
      await alice.send(xml('message', { to: `lobby@${SERVICE}`, type: 'groupchat' }, xml('subject', {}, 'Plans')));
      await subjectSet;
      for (let i = 1; i <= 4; i++) {
        const echo = alice.waitFor((el) => el.name === 'message' && el.getChildText('body') === `m${i}`);
        await alice.send(xml('message', { to: `lobby@${SERVICE}`, type: 'groupchat', id: `g${i}` }, xml('body', {}, `m${i}`)));
        await echo;
      }

      const seesAlice = bob.waitFor(presenceFrom(`lobby@${SERVICE}/Alice`));
      const history: XmlElement[] = [];
      const collecting = (async () => {
        for (let i = 0; i < 3; i++) history.push(await bob.waitFor((el) => el.name === 'message' && el.getChild('delay', 'urn:xmpp:delay') !== undefined));
      })();
      const aliceSeesBob = alice.waitFor(presenceFrom(`lobby@${SERVICE}/Bob`));
      const bobSelf = await join(bob, 'lobby', 'Bob');
      assert.deepEqual(statusCodes(bobSelf), ['110']);
      assert.equal(bobSelf.getChild('x', MUC_USER)!.getChild('item')!.attrs.role, 'participant');
      await seesAlice;
      const seen = await aliceSeesBob;
      // Semi-anonymous by default: the moderator sees Bob's real JID.
      assert.equal(seen.getChild('x', MUC_USER)!.getChild('item')!.attrs.jid, bob.jid);
      await collecting;
      assert.deepEqual(history.map((m) => m.getChildText('body')), ['m2', 'm3', 'm4'], 'history_size = 3 messages, oldest first');
      assert.ok(history.every((m) => m.attrs.from === `lobby@${SERVICE}/Alice`));

      const toBoth = [alice, bob].map((c) => c.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'hello all'));
      await bob.send(xml('message', { to: `lobby@${SERVICE}`, type: 'groupchat' }, xml('body', {}, 'hello all')));
      for (const m of await Promise.all(toBoth)) assert.equal(m.attrs.from, `lobby@${SERVICE}/Bob`);

      // Someone not in the room cannot post to it, and a taken nickname is refused.
      const refused = carol.waitFor((el) => el.name === 'message' && el.attrs.type === 'error');
      await carol.send(xml('message', { to: `lobby@${SERVICE}`, type: 'groupchat' }, xml('body', {}, 'sneaky')));
      assert.equal(errorOf(await refused), 'not-acceptable');
      assert.equal(errorOf(await join(carol, 'lobby', 'Bob')), 'conflict');

      // A private message between occupants.
      const pm = bob.waitFor((el) => el.name === 'message' && el.attrs.type === 'chat' && el.getChildText('body') === 'psst');
      await alice.send(xml('message', { to: `lobby@${SERVICE}/Bob`, type: 'chat' }, xml('body', {}, 'psst')));
      assert.equal((await pm).attrs.from, `lobby@${SERVICE}/Alice`);

      // Bob leaves: Alice is told.
      const left = alice.waitFor(presenceFrom(`lobby@${SERVICE}/Bob`, 'unavailable'));
      await bob.send(xml('presence', { to: `lobby@${SERVICE}/Bob`, type: 'unavailable' }));
      await left;
    } finally {
      await Promise.all([alice, bob, carol].map((c) => c.close()));
    }
  });

  test('a moderator kicks and an owner bans; the banned user cannot come back', async () => {
    const [alice, bob] = await users('alice', 'bob');
    try {
      await join(alice, 'strict', 'A');
      await join(bob, 'strict', 'B');
      const kicked = bob.waitFor(presenceFrom(`strict@${SERVICE}/B`, 'unavailable'));
      await alice.iq(xml('iq', { type: 'set', to: `strict@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { nick: 'B', role: 'none' }, xml('reason', {}, 'calm down')))));
      const k = await kicked;
      assert.ok(statusCodes(k).includes('307'));
      assert.equal(k.getChild('x', MUC_USER)!.getChild('item')!.getChildText('reason'), 'calm down');

      await join(bob, 'strict', 'B');
      const banned = bob.waitFor(presenceFrom(`strict@${SERVICE}/B`, 'unavailable'));
      await alice.iq(xml('iq', { type: 'set', to: `strict@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { jid: bob.bare, affiliation: 'outcast' }))));
      assert.ok(statusCodes(await banned).includes('301'));
      assert.equal(errorOf(await join(bob, 'strict', 'B')), 'forbidden');

      const list = (await alice.iq(xml('iq', { type: 'get', to: `strict@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { affiliation: 'outcast' }))))).getChild('query')!;
      assert.deepEqual(list.getChildren('item').map((i) => i.attrs.jid), [bob.bare]);
      // Bob, not an admin, may not change affiliations.
      await assert.rejects(bob.iq(xml('iq', { type: 'set', to: `strict@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { jid: alice.bare, affiliation: 'outcast' })))));
    } finally {
      await Promise.all([alice, bob].map((c) => c.close()));
    }
  });

  test('members-only and password-protected rooms let in only whom they should', async () => {
    const [alice, bob, carol] = await users('alice', 'bob', 'carol');
    try {
      await join(alice, 'club', 'A');
      const form = (await alice.iq(xml('iq', { type: 'get', to: `club@${SERVICE}` }, xml('query', { xmlns: MUC_OWNER })))).getChild('query')!;
      const fields = form.getChild('x', 'jabber:x:data')!.getChildren('field').map((f) => f.attrs.var);
      assert.ok(fields.includes('muc#roomconfig_membersonly') && fields.includes('muc#roomconfig_roomsecret'));
      const submit = (vars: Record<string, string>) =>
        alice.iq(xml('iq', { type: 'set', to: `club@${SERVICE}` }, xml('query', { xmlns: MUC_OWNER },
          xml('x', { xmlns: 'jabber:x:data', type: 'submit' }, ...Object.entries(vars).map(([k, v]) => xml('field', { var: k }, xml('value', {}, v)))))));
      await submit({ 'muc#roomconfig_membersonly': '1' });
      assert.equal(errorOf(await join(bob, 'club', 'B')), 'registration-required');
      await alice.iq(xml('iq', { type: 'set', to: `club@${SERVICE}` }, xml('query', { xmlns: MUC_ADMIN }, xml('item', { jid: bob.bare, affiliation: 'member' }))));
      assert.deepEqual(statusCodes(await join(bob, 'club', 'B')), ['110']);

      await submit({ 'muc#roomconfig_membersonly': '0', 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 's3cret' });
      assert.equal(errorOf(await join(carol, 'club', 'C')), 'not-authorized');
      assert.equal(errorOf(await join(carol, 'club', 'C', [xml('password', {}, 'wrong')])), 'not-authorized');
      assert.deepEqual(statusCodes(await join(carol, 'club', 'C', [xml('password', {}, 's3cret')])), ['110']);
    } finally {
      await Promise.all([alice, bob, carol].map((c) => c.close()));
    }
  });

  test('the service lists public rooms, and a room says what it is', async () => {
    const [alice] = await users('alice');
    try {
      await join(alice, 'listed', 'A');
      const items = (await alice.iq(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' })))).getChild('query')!;
      assert.ok(items.getChildren('item').some((i) => i.attrs.jid === `listed@${SERVICE}`));
      const info = (await alice.iq(xml('iq', { type: 'get', to: `listed@${SERVICE}` }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })))).getChild('query')!;
      const features = info.getChildren('feature').map((f) => f.attrs.var);
      assert.ok(features.includes(MUC) && features.includes('muc_temporary') && features.includes('muc_open'));
      const svc = (await alice.iq(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })))).getChild('query')!;
      assert.equal(svc.getChild('identity')!.attrs.category, 'conference');
    } finally {
      await alice.close();
    }
  });

  test('a temporary room goes when its last occupant leaves, even by disconnecting', async () => {
    const [alice, bob] = await users('alice', 'bob');
    try {
      await join(alice, 'brief', 'A');
      await alice.close();
      // The room is gone: joining makes a new one, owned by Bob.
      const p = await join(bob, 'brief', 'B');
      assert.ok(statusCodes(p).includes('201'));
      assert.equal(p.getChild('x', MUC_USER)!.getChild('item')!.attrs.affiliation, 'owner');
    } finally {
      await Promise.all([alice, bob].map((c) => c.close()));
    }
  });

  test('a persistent room keeps its configuration, owner and subject across a restart', async () => {
    let [alice] = await users('alice');
    await join(alice!, 'keep', 'A');
    await alice!.iq(xml('iq', { type: 'set', to: `keep@${SERVICE}` }, xml('query', { xmlns: MUC_OWNER },
      xml('x', { xmlns: 'jabber:x:data', type: 'submit' },
        xml('field', { var: 'muc#roomconfig_persistentroom' }, xml('value', {}, '1')),
        xml('field', { var: 'muc#roomconfig_roomname' }, xml('value', {}, 'Kept room'))))));
    const subj = alice!.waitFor((el) => el.name === 'message' && el.getChildText('subject') === 'Still here');
    await alice!.send(xml('message', { to: `keep@${SERVICE}`, type: 'groupchat' }, xml('subject', {}, 'Still here')));
    await subj;
    await alice!.close();
    assert.equal((await server.stop()).code, 0);
    await restart(server);

    const [dave] = await users('dave');
    try {
      const info = (await dave!.iq(xml('iq', { type: 'get', to: `keep@${SERVICE}` }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })))).getChild('query')!;
      assert.equal(info.getChild('identity')!.attrs.name, 'Kept room');
      const subject = dave!.waitFor((el) => el.name === 'message' && el.getChild('subject') !== undefined);
      await dave!.send(xml('presence', { to: `keep@${SERVICE}/D` }, xml('x', { xmlns: MUC })));
      assert.equal((await subject).getChildText('subject'), 'Still here');
      [alice] = await users('alice');
      const p = await join(alice!, 'keep', 'A');
      assert.equal(p.getChild('x', MUC_USER)!.getChild('item')!.attrs.affiliation, 'owner', 'the owner is remembered');
      await alice!.close();
    } finally {
      await dave!.close();
    }
  });
});

describe('group chat events for the event pusher', () => {
  let hook: Webhook;
  let pushed: Petrel;

  before(async () => {
    hook = await Webhook.start();
    pushed = await startPetrel({
      users: [['alice', 'pw'], ['bob', 'pw'], ['carol', 'pw']],
      extraToml: '[modules.mod_muc]\n' + poolToml({ tag: 'http_pool', host: hook.origin }) + handlersToml([{ path: '/json', callback_module: 'mod_event_pusher_http_json' }, { path: '/default' }]),
    });
  });

  after(async () => {
    await pushed?.dispose();
    await hook?.close();
  });

  test('a room message is pushed once as sent and once per occupant reached, naming the room and the occupant; the default callback pushes none of them', async () => {
    const cs = await Promise.all(['alice', 'bob', 'carol'].map((n) => connect({ port: pushed.port }, n, 'pw')));
    const [alice, bob, carol] = cs as [TestClient, TestClient, TestClient];
    try {
      await join(alice, 'team', 'Al');
      await join(bob, 'team', 'Bo');
      await join(carol, 'team', 'Ca');
      const got = Promise.all(cs.map((c) => c.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'stand-up in 5')));
      await alice.send(xml('message', { to: `team@${SERVICE}`, type: 'groupchat', id: 'su1' }, xml('body', {}, 'stand-up in 5')));
      await got;
      const events = (await hook.waitFor((r) => r.url === '/json' && r.text.includes('stand-up in 5'), 4)).map((r) => JSON.parse(r.text).data);
      const sent = events.filter((e) => e.direction === 'in');
      assert.equal(sent.length, 1);
      assert.deepEqual([sent[0].room, sent[0].occupant, sent[0].from, sent[0].to], [`team@${SERVICE}`, null, alice.jid, `team@${SERVICE}`]);
      const reached = events.filter((e) => e.direction === 'out');
      assert.deepEqual(reached.map((e) => e.to).sort(), [alice.jid, bob.jid, carol.jid].sort());
      for (const e of reached) {
        assert.deepEqual([e.room, e.occupant, e.from, e.message_type], [`team@${SERVICE}`, 'Al', `team@${SERVICE}/Al`, 'groupchat']);
      }
      // One-to-one chat still reaches the default handler; the room message did not.
      const id = await alice.message(bob.bare, 'direct');
      await hook.waitFor((r) => r.url === '/default' && r.text.includes('direct'), 1);
      assert.equal(hook.requests.filter((r) => r.url === '/default' && r.text.includes('stand-up')).length, 0);
      void id;
    } finally {
      await Promise.all(cs.map((c) => c.close()));
    }
  });
});

test('slixmpp (a real client) joins a room, speaks, and reads what an occupant answers', { skip: hasSlixmpp ? false : 'python3-slixmpp is not installed' }, async () => {
  const [alice] = await users('alice');
  try {
    await join(alice!, 'interop', 'Alice');
    const hello = alice!.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'hello from slixmpp', 30_000, 'the slixmpp message');
    const py = spawn(SLIXMPP, [fileURLToPath(new URL('./fixtures/slixmpp_muc.py', import.meta.url)), 'carol@localhost', 'pw', String(server.port), `interop@${SERVICE}`, 'Slix'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    py.stdout.on('data', (d: Buffer) => (out += d.toString()));
    py.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => py.once('exit', (code) => resolve(code)));
    const m = await hello;
    assert.equal(m.attrs.from, `interop@${SERVICE}/Slix`);
    await alice!.send(xml('message', { to: `interop@${SERVICE}`, type: 'groupchat' }, xml('body', {}, 'reply to slixmpp')));
    assert.equal(await exited, 0, out);
    assert.match(out, /JOINED 2/);
    assert.match(out, /GOT reply to slixmpp FROM Alice/);
  } finally {
    await alice!.close();
  }
});

describe('a session replaced by a newer one', () => {
  let capped: Petrel;

  before(async () => {
    capped = await preparePetrel({ users: [['alice', 'pw'], ['bob', 'pw']], extraToml: '[modules.mod_muc]\n' });
    const toml = await readFile(capped.configPath, 'utf8');
    await writeFile(capped.configPath, toml.replace('[general]\n', '[general]\n  max_user_sessions = 1\n'));
    await capped.start();
  });

  after(async () => {
    await capped?.dispose();
  });

  test('leaves its rooms: past max_user_sessions the replaced session is no longer an occupant', async () => {
    const alice = await connect({ port: capped.port }, 'alice', 'pw');
    const first = await connect({ port: capped.port }, 'bob', 'pw', { resource: 'first' });
    let second: TestClient | undefined;
    try {
      await join(alice, 'replaced', 'A');
      await join(first, 'replaced', 'B');
      const left = alice.waitFor(presenceFrom(`replaced@${SERVICE}/B`, 'unavailable'), 10_000, "B's unavailable presence");
      second = await connect({ port: capped.port }, 'bob', 'pw', { resource: 'second' });
      await first.disconnected;
      await left;
      // The room no longer sends to the replaced session: a new occupant named B can join.
      assert.deepEqual(statusCodes(await join(second, 'replaced', 'B')), ['110']);
    } finally {
      await Promise.all([alice, first, second].map((c) => c?.close()));
    }
  });
});

describe("mod_muc's access options as [access] rules", () => {
  let ruled: Petrel;

  before(async () => {
    ruled = await startPetrel({
      users: [['alice', 'pw'], ['bob', 'pw'], ['mallory', 'pw'], ['boss', 'pw']],
      extraToml: `[acl]
  creators = [{user = "alice"}]
  blocked = [{user = "mallory"}]
  admin = [{user = "boss"}]

[access]
  muc = [{acl = "blocked", value = "deny"}, {acl = "all", value = "allow"}]
  muc_create = [{acl = "creators", value = "allow"}, {acl = "admin", value = "allow"}]
  muc_admin = [{acl = "admin", value = "allow"}]

[modules.mod_muc]
  access = "muc"
  access_create = "muc_create"
  access_admin = "muc_admin"
`,
    });
  });

  after(async () => {
    await ruled?.dispose();
  });

  test('access_create lets only its class create rooms, access keeps a denied user out, and access_admin makes a user an owner of every room', async () => {
    const [alice, bob, mallory, boss] = await Promise.all(['alice', 'bob', 'mallory', 'boss'].map((n) => connect({ port: ruled.port }, n, 'pw')));
    try {
      // Not in muc_create: no new room.
      const refused = await join(bob, 'bobs-room', 'Bob');
      assert.equal(refused.attrs.type, 'error');
      assert.equal(errorOf(refused), 'not-allowed');
      // In it: the room is made, and bob may join it as anyone may.
      assert.deepEqual(statusCodes(await join(alice, 'allowed', 'Alice')).sort(), ['110', '201']);
      assert.deepEqual(statusCodes(await join(bob, 'allowed', 'Bob')), ['110']);
      // Denied by access: not even an existing room.
      const kept = await join(mallory, 'allowed', 'M');
      assert.equal(kept.attrs.type, 'error');
      assert.equal(errorOf(kept), 'forbidden');
      // A service administrator enters alice's room as an owner.
      const admin = await join(boss, 'allowed', 'Boss');
      assert.equal(admin.getChild('x', MUC_USER)!.getChild('item')!.attrs.affiliation, 'owner');
    } finally {
      await Promise.all([alice, bob, mallory, boss].map((c) => c.close()));
    }
  });
});
