// XEP-0198 Stream Management against a real server: acknowledgements,
// resumption by a real client library after its TCP connection dropped,
// the <failed/> answers, the buffer limit, and where the unacknowledged
// messages of a session that is not resumed end up (offline storage).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from './helpers/server.ts';
import { connect, isMessage, xml, type TestClient } from './helpers/client.ts';
import { RawConnection, streamErrorCondition } from './helpers/raw.ts';

const NS_SM = 'urn:xmpp:sm:3';

const USERS: Array<[string, string]> = [
  ['alice', 'pw-alice'],
  ['bob', 'pw-bob'],
  ['carol', 'pw-carol'],
  ['dave', 'pw-dave'],
  ['erin', 'pw-erin'],
  ['gina', 'pw-gina'],
];

/** Logs in over a raw socket and binds `resource`, up to the bind result. */
async function rawLogin(server: Petrel, user: string, resource: string): Promise<RawConnection> {
  const raw = await RawConnection.open(server.port);
  await raw.login(user, `pw-${user}`, resource);
  return raw;
}

function bodies(c: TestClient, from: string): string[] {
  return c.take((el) => el.name === 'message' && el.attrs.from?.startsWith(from) === true && el.getChild('body') !== undefined).map((el) => el.getChildText('body')!);
}

describe('mod_stream_management', () => {
  let server: Petrel;
  const open: TestClient[] = [];
  const raws: RawConnection[] = [];

  before(async () => {
    server = await startPetrel({
      users: USERS,
      sasl_mechanisms: ['scram_sha256', 'plain'],
      extraToml: '[modules.mod_stream_management]\n  resume_timeout = 600\n[modules.mod_carboncopy]\n[modules.mod_csi]\n',
    });
  });

  after(async () => {
    for (const c of open) await c.close();
    for (const r of raws) r.destroy();
    await server.dispose();
  });

  test('the server offers stream management after authentication, refuses <enable/> before binding and <resume/> with an unknown id', async () => {
    const raw = await RawConnection.open(server.port);
    raws.push(raw);
    await raw.openStream();
    const creds = Buffer.from('\0alice\0pw-alice').toString('base64');
    raw.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${creds}</auth>`);
    await raw.waitFor('<success');
    const features = await raw.openStream();
    assert.match(features, /<sm xmlns=['"]urn:xmpp:sm:3['"]\/>/);
    raw.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    assert.match(await raw.waitFor('</failed>'), /<unexpected-request/);
    raw.send(`<resume xmlns='${NS_SM}' previd='no-such-session' h='0'/>`);
    assert.match(await raw.waitFor('</failed>'), /<item-not-found/);
    // The stream goes on: binding still works.
    raw.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>`);
    assert.match(await raw.waitFor('</iq>'), /<jid>alice@localhost\/r<\/jid>/);
    raw.send(`<enable xmlns='${NS_SM}'/>`);
    assert.match(await raw.waitFor(/<enabled[^>]*\/>/), /<enabled xmlns=['"]urn:xmpp:sm:3['"]\/>/);
    // A second <enable/> on the same stream is refused.
    raw.send(`<enable xmlns='${NS_SM}'/>`);
    assert.match(await raw.waitFor('</failed>'), /<unexpected-request/);
    raw.send('</stream:stream>');
    await raw.untilClosed();
  });

  test('the server counts the stanzas it handled and asks for an acknowledgement after each stanza it sends', async () => {
    const raw = await rawLogin(server, 'alice', 'count');
    raws.push(raw);
    raw.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const enabled = await raw.waitFor(/<enabled[^>]*\/>/);
    assert.match(enabled, /resume=['"]true['"]/);
    assert.match(enabled, / id=['"][^'"]+['"]/);
    assert.match(enabled, /max=['"]600['"]/);
    raw.send(`<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await raw.waitFor(/<iq[^>]*id=['"]p1['"]/);
    // ack_freq = 1 (the default): an <r/> follows the stanza.
    await raw.waitFor(/<r xmlns=['"]urn:xmpp:sm:3['"]\/>/);
    raw.send(`<a xmlns='${NS_SM}' h='1'/>`);
    raw.send(`<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await raw.waitFor(/<iq[^>]*id=['"]p2['"]/);
    raw.send(`<r xmlns='${NS_SM}'/>`);
    assert.match(await raw.waitFor(/<a [^>]*\/>/), /h=['"]2['"]/);
    // An h behind one already given is a stale answer: ignored, the stream goes on.
    raw.send(`<a xmlns='${NS_SM}' h='2'/>`);
    raw.send(`<a xmlns='${NS_SM}' h='1'/>`);
    raw.send(`<iq type='get' id='p3' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await raw.waitFor(/<iq[^>]*id=['"]p3['"]/);
    // An h beyond what was sent ends the stream.
    raw.send(`<a xmlns='${NS_SM}' h='7'/>`);
    assert.equal(streamErrorCondition(await raw.untilClosed()), 'undefined-condition');
  });

  test('@xmpp/client resumes after its TCP connection dropped: the messages sent meanwhile arrive once each, none lost', async () => {
    const alice = await connect(server, 'alice', 'pw-alice', { resource: 'phone' });
    open.push(alice);
    const bob = await connect(server, 'bob', 'pw-bob', { resource: 'desk' });
    open.push(bob);
    const sm = (alice.xmpp as unknown as { streamManagement: { enabled: boolean; id: string; on(e: string, f: () => void): void } }).streamManagement;
    assert.equal(sm.enabled, true, 'the library enabled stream management');
    assert.notEqual(sm.id, '', 'with resumption');
    // Before the drop.
    for (let i = 0; i < 3; i++) await bob.message(alice.jid, `before ${i}`);
    await alice.waitFor((el) => el.getChildText('body') === 'before 2');
    // The connection dies; the library reconnects a second later and resumes.
    (alice.xmpp.reconnect as unknown as { start(): void }).start();
    const resumed = new Promise<void>((resolve) => sm.on('resumed', resolve));
    const detachedBefore = server.logs.filter((l) => l.what === 'c2s_session_detached').length;
    (alice.xmpp as unknown as { socket: { destroy(): void } }).socket.destroy();
    await waitUntil(() => server.logs.filter((l) => l.what === 'c2s_session_detached').length > detachedBefore);
    for (let i = 0; i < 5; i++) await bob.message(alice.jid, `while dead ${i}`);
    await resumed;
    await alice.waitFor((el) => el.getChildText('body') === 'while dead 4');
    // A marker after the resumption: whatever was going to be re-sent has been.
    await bob.message(alice.jid, 'after');
    await alice.waitFor((el) => el.getChildText('body') === 'after');
    const got = bodies(alice, 'bob@localhost');
    const want = ['before 0', 'before 1', 'while dead 0', 'while dead 1', 'while dead 2', 'while dead 3'];
    // Everything not claimed by a waitFor above, each exactly once, in order.
    assert.deepEqual(got, want);
    assert.equal(alice.jid, 'alice@localhost/phone', 'the same resource after resumption');
    alice.xmpp.reconnect.stop();
  });

  test('a resumed session keeps its carbons, and the presence held while it was inactive comes on the new connection', async () => {
    // Under a loaded machine (other test files run beside this one) a reconnection can take a while.
    const SLOW = 30_000;
    const phone = await connect(server, 'gina', 'pw-gina', { resource: 'phone' });
    open.push(phone);
    // IQs by hand: @xmpp/client 0.14 does not count the IQ results its iqCaller
    // takes in its stream-management h, so the server would rightly send them again.
    const iq = async (id: string, payload: ReturnType<typeof xml>, to?: string) => {
      await phone.send(xml('iq', { type: payload.name === 'ping' ? 'get' : 'set', id, ...(to === undefined ? {} : { to }) }, payload));
      await phone.waitFor((el) => el.name === 'iq' && el.attrs.id === id, SLOW);
    };
    await iq('carbons-on', xml('enable', { xmlns: 'urn:xmpp:carbons:2' }));
    await phone.available();
    const laptop = await connect(server, 'gina', 'pw-gina', { resource: 'laptop' });
    open.push(laptop);
    await laptop.available();
    await phone.waitFor((el) => el.name === 'presence' && el.attrs.from === laptop.jid, SLOW);
    await phone.send(xml('inactive', { xmlns: 'urn:xmpp:csi:0' }));
    await iq('sync', xml('ping', { xmlns: 'urn:xmpp:ping' }), 'localhost');
    await laptop.send(xml('presence', {}, xml('status', {}, 'held')));
    await laptop.waitFor((el) => el.name === 'presence' && el.attrs.from === laptop.jid && el.getChildText('status') === 'held', SLOW);

    const sm = (phone.xmpp as unknown as { streamManagement: { on(e: string, f: () => void): void } }).streamManagement;
    (phone.xmpp.reconnect as unknown as { start(): void }).start();
    const resumed = new Promise<void>((resolve) => sm.on('resumed', resolve));
    const detachedBefore = server.logs.filter((l) => l.what === 'c2s_session_detached').length;
    (phone.xmpp as unknown as { socket: { destroy(): void } }).socket.destroy();
    await waitUntil(() => server.logs.filter((l) => l.what === 'c2s_session_detached').length > detachedBefore);
    const bob = await connect(server, 'bob', 'pw-bob', { resource: 'carbons' });
    open.push(bob);
    await bob.message(laptop.jid, 'for the laptop');
    await laptop.waitFor((el) => el.getChildText('body') === 'for the laptop', SLOW);
    await resumed;
    const carbon = await phone.waitFor((el) => el.getChild('received', 'urn:xmpp:carbons:2') !== undefined, SLOW);
    assert.equal(carbon.getChild('received')!.getChild('forwarded')!.getChild('message')!.getChildText('body'), 'for the laptop');
    const held = await phone.waitFor((el) => el.name === 'presence' && el.attrs.from === laptop.jid, SLOW);
    assert.equal(held.getChildText('status'), 'held');
    // Carbons are still on for the resumed session.
    await bob.message(laptop.jid, 'after the resumption');
    const again = await phone.waitFor((el) => el.getChild('received', 'urn:xmpp:carbons:2') !== undefined, SLOW);
    assert.equal(again.getChild('received')!.getChild('forwarded')!.getChild('message')!.getChildText('body'), 'after the resumption');
    // Nothing came twice: every presence and IQ result the phone got after enabling is there once.
    const seen = phone.take((el) => el.name === 'presence' || el.name === 'iq').map(String);
    assert.deepEqual(seen.filter((s, i) => seen.indexOf(s) !== i), []);
    (phone.xmpp.reconnect as unknown as { stop(): void }).stop();
  });

  test('a second connection resuming a session still connected takes it over and the first one gets a conflict stream error', async () => {
    const first = await rawLogin(server, 'carol', 'tab');
    raws.push(first);
    first.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const id = /id=['"]([^'"]+)['"]/.exec(await first.waitFor(/<enabled[^>]*\/>/))![1]!;
    const bob = await connect(server, 'bob', 'pw-bob', { resource: 'takeover' });
    open.push(bob);
    await bob.message('carol@localhost/tab', 'unacked one');
    await first.waitFor('unacked one');
    // Another user cannot take it.
    const thief = await RawConnection.open(server.port);
    raws.push(thief);
    await thief.openStream();
    thief.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0dave\0pw-dave').toString('base64')}</auth>`);
    await thief.waitFor('<success');
    await thief.openStream();
    thief.send(`<resume xmlns='${NS_SM}' previd='${id}' h='0'/>`);
    assert.match(await thief.waitFor('</failed>'), /<item-not-found/);
    // The owner can.
    const second = await RawConnection.open(server.port);
    raws.push(second);
    await second.openStream();
    second.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0carol\0pw-carol').toString('base64')}</auth>`);
    await second.waitFor('<success');
    await second.openStream();
    second.send(`<resume xmlns='${NS_SM}' previd='${id}' h='0'/>`);
    const resumed = await second.waitFor(/<resumed[^>]*\/>/);
    assert.match(resumed, new RegExp(`previd=['"]${id}['"]`));
    // The stanza the client did not acknowledge comes again on the new connection.
    await second.waitFor('unacked one');
    assert.equal(streamErrorCondition(await first.untilClosed()), 'conflict');
    // The resumed session is carol@localhost/tab.
    await bob.message('carol@localhost/tab', 'to the resumed session');
    await second.waitFor('to the resumed session');
  });

  test('a session not resumed within its timeout sends its unacknowledged messages to offline storage, delivered at the next login', async () => {
    const raw = await rawLogin(server, 'dave', 'gone');
    raws.push(raw);
    // The client's preferred maximum of 1 s is below resume_timeout, so it is used.
    raw.send(`<enable xmlns='${NS_SM}' resume='true' max='1'/>`);
    assert.match(await raw.waitFor(/<enabled[^>]*\/>/), /max=['"]1['"]/);
    const bob = await connect(server, 'bob', 'pw-bob', { resource: 'sender1' });
    open.push(bob);
    await bob.message('dave@localhost/gone', 'seen but not acknowledged');
    await raw.waitFor('seen but not acknowledged');
    const detachedBefore = server.logs.filter((l) => l.what === 'c2s_session_detached').length;
    raw.destroy();
    await waitUntil(() => server.logs.filter((l) => l.what === 'c2s_session_detached').length > detachedBefore);
    await bob.message('dave@localhost/gone', 'sent while the connection was dead');
    await server.waitForLog((l) => l.what === 'sm_rerouted' && l.jid === 'dave@localhost/gone', 10_000);
    const dave = await connect(server, 'dave', 'pw-dave', { resource: 'again' });
    open.push(dave);
    await dave.available();
    await dave.waitFor((el) => el.getChildText('body') === 'sent while the connection was dead');
    await bob.message(dave.jid, 'marker');
    await dave.waitFor((el) => el.getChildText('body') === 'marker');
    assert.deepEqual(bodies(dave, 'bob@localhost'), ['seen but not acknowledged']);
  });

  test('a session closed cleanly with messages not acknowledged sends them to offline storage', async () => {
    const raw = await rawLogin(server, 'erin', 'closing');
    raws.push(raw);
    raw.send(`<enable xmlns='${NS_SM}'/>`);
    await raw.waitFor(/<enabled[^>]*\/>/);
    const bob = await connect(server, 'bob', 'pw-bob', { resource: 'sender2' });
    open.push(bob);
    const id = await bob.message('erin@localhost/closing', 'not acknowledged before the close');
    await raw.waitFor('not acknowledged before the close');
    raw.send('</stream:stream>');
    await raw.untilClosed();
    const erin = await connect(server, 'erin', 'pw-erin', { resource: 'next' });
    open.push(erin);
    await erin.available();
    const m = await erin.waitFor(isMessage(id));
    assert.equal(m.getChildText('body'), 'not acknowledged before the close');
    assert.ok(m.getChild('delay', 'urn:xmpp:delay') !== undefined, 'it came from offline storage');
  });
});

describe('mod_stream_management with a small buffer_max', () => {
  let server: Petrel;
  const open: TestClient[] = [];

  before(async () => {
    server = await startPetrel({
      users: [['frank', 'pw-frank'], ['bob', 'pw-bob']],
      sasl_mechanisms: ['scram_sha256', 'plain'],
      extraToml: '[modules.mod_stream_management]\n  buffer_max = 2\n  ack = false\n',
    });
  });

  after(async () => {
    for (const c of open) await c.close();
    await server.dispose();
  });

  test('a client that leaves more than buffer_max stanzas unacknowledged gets resource-constraint, and none of them is lost', async () => {
    const raw = await rawLogin(server, 'frank', 'slow');
    raw.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    await raw.waitFor(/<enabled[^>]*\/>/);
    const bob = await connect(server, 'bob', 'pw-bob', { resource: 'b' });
    open.push(bob);
    for (let i = 0; i < 3; i++) await bob.message('frank@localhost/slow', `n${i}`);
    const text = await raw.untilClosed();
    assert.equal(streamErrorCondition(text), 'resource-constraint');
    assert.ok(!/<r xmlns/.test(text), 'ack = false: the server never asked for an acknowledgement');
    // The next login (without stream management: with ack = false and so
    // small a buffer, a client that enables it would soon be cut off too).
    const later = await rawLogin(server, 'frank', 'later');
    later.send('<presence/>');
    // The body, not just the text: a stanza id may contain "n2" too.
    const got = await later.waitFor('<body>n2</body>');
    assert.match(got, /<body>n0<\/body>[\s\S]*<body>n1<\/body>[\s\S]*<body>n2<\/body>/);
    later.send('</stream:stream>');
    await later.untilClosed();
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
