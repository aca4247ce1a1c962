// XEP-0280 Message Carbons and XEP-0352 Client State Indication against a
// real server, with @xmpp/client on each side.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, startPetrel, type Petrel } from './helpers/server.ts';
import { connect, isMessage, settle, xml, type TestClient, type XmlElement } from './helpers/client.ts';
import { RawConnection } from './helpers/raw.ts';

const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_CSI = 'urn:xmpp:csi:0';

let server: Petrel;
let metricsPort: number;
const open: TestClient[] = [];

async function login(user: string, resource: string): Promise<TestClient> {
  const c = await connect(server, user, `pw-${user}`, { resource });
  open.push(c);
  return c;
}

/** The message a carbon of `kind` carries, or undefined. */
function carried(el: XmlElement, kind: 'sent' | 'received'): XmlElement | undefined {
  return el.getChild(kind, NS_CARBONS)?.getChild('forwarded', NS_FORWARD)?.getChild('message');
}

function isCarbon(kind: 'sent' | 'received', body: string): (el: XmlElement) => boolean {
  return (el) => el.name === 'message' && carried(el, kind)?.getChildText('body') === body;
}

/** Sends a CSI nonza and waits until the server has read it (a ping answered after it). */
async function setState(c: TestClient, state: 'active' | 'inactive'): Promise<void> {
  await c.send(xml(state, { xmlns: NS_CSI }));
  await c.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
}

async function enableCarbons(c: TestClient): Promise<void> {
  await c.iq(xml('iq', { type: 'set' }, xml('enable', { xmlns: NS_CARBONS })));
}

before(async () => {
  metricsPort = await freePort();
  server = await startPetrel({
    users: [['alice', 'pw-alice'], ['bob', 'pw-bob'], ['carol', 'pw-carol']],
    sasl_mechanisms: ['scram_sha256', 'plain'],
    extraToml:
      '[modules.mod_carboncopy]\n[modules.mod_csi]\n  buffer_max = 3\n\n' +
      `[[listen.http]]\n  port = ${metricsPort}\n  ip_address = "127.0.0.1"\n  [[listen.http.handlers.mongoose_prometheus_handler]]\n    host = "_"\n    path = "/metrics"\n`,
  });
});

after(async () => {
  for (const c of open) await c.close();
  await server.dispose();
});

describe('mod_carboncopy', () => {
  test('the server announces urn:xmpp:carbons:2 and answers <enable/> and <disable/> with a result', async () => {
    const a = await login('alice', 'disco');
    const info = await a.iq(xml('iq', { type: 'get', to: 'localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
    const features = info.getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
    assert.ok(features.includes(NS_CARBONS));
    const r1 = await a.iq(xml('iq', { type: 'set' }, xml('enable', { xmlns: NS_CARBONS })));
    assert.equal(r1.attrs.type, 'result');
    // Enabling twice is no error.
    await enableCarbons(a);
    const r2 = await a.iq(xml('iq', { type: 'set' }, xml('disable', { xmlns: NS_CARBONS })));
    assert.equal(r2.attrs.type, 'result');
    await a.close();
  });

  test("a resource with carbons enabled gets a copy of what the user's other resource receives and sends, and nothing marked private", async () => {
    const phone = await login('alice', 'phone');
    const laptop = await login('alice', 'laptop');
    const bob = await login('bob', 'desk');
    await Promise.all([phone.available(), laptop.available(), bob.available()]);
    await enableCarbons(laptop);

    // Received: bob writes to alice's phone; the laptop gets a <received/> copy.
    const id = await bob.message(phone.jid, 'hello phone');
    await phone.waitFor(isMessage(id));
    const rc = await laptop.waitFor(isCarbon('received', 'hello phone'));
    assert.equal(rc.attrs.from, 'alice@localhost');
    assert.equal(carried(rc, 'received')!.attrs.from, bob.jid);
    assert.equal(carried(rc, 'received')!.attrs.to, phone.jid);

    // Sent: the phone writes to bob; the laptop gets a <sent/> copy.
    await phone.message(bob.jid, 'hello bob');
    await bob.waitFor((el) => el.getChildText('body') === 'hello bob');
    const sc = await laptop.waitFor(isCarbon('sent', 'hello bob'));
    assert.equal(carried(sc, 'sent')!.attrs.from, phone.jid);
    assert.equal(carried(sc, 'sent')!.attrs.to, bob.jid);

    // <private/> (XEP-0280 §9) and <no-copy/> (XEP-0334): no copy.
    await bob.send(xml('message', { to: phone.jid, type: 'chat', id: 'p1' }, xml('body', {}, 'private one'), xml('private', { xmlns: NS_CARBONS })));
    await bob.send(xml('message', { to: phone.jid, type: 'chat', id: 'p2' }, xml('body', {}, 'no copy'), xml('no-copy', { xmlns: 'urn:xmpp:hints' })));
    await phone.waitFor(isMessage('p2'));
    // A headline is not a one-to-one chat message.
    await bob.send(xml('message', { to: phone.jid, type: 'headline', id: 'h1' }, xml('body', {}, 'headline')));
    await phone.waitFor(isMessage('h1'));
    await settle(bob, laptop);
    assert.deepEqual(laptop.take((el) => el.getChild('received', NS_CARBONS) !== undefined || el.getChild('sent', NS_CARBONS) !== undefined).map(String), []);

    // The phone, without carbons, never gets copies of the laptop's traffic.
    await laptop.message(bob.jid, 'from the laptop');
    await bob.waitFor((el) => el.getChildText('body') === 'from the laptop');
    await settle(laptop, phone);
    assert.deepEqual(phone.take((el) => el.getChild('sent', NS_CARBONS) !== undefined).map(String), []);

    // A message to the bare JID that reaches both resources is not copied as well.
    const both = await bob.message('alice@localhost', 'to both');
    await phone.waitFor(isMessage(both));
    await laptop.waitFor(isMessage(both));
    await settle(bob, laptop);
    assert.equal(laptop.take(isCarbon('received', 'to both')).length, 0);
    for (const c of [phone, laptop, bob]) await c.close();
  });
});

describe('mod_csi', () => {
  test('the stream features after authentication include <csi/>', async () => {
    const raw = await RawConnection.open(server.port);
    await raw.openStream();
    raw.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0carol\0pw-carol').toString('base64')}</auth>`);
    await raw.waitFor('<success');
    assert.match(await raw.openStream(), /<csi xmlns=['"]urn:xmpp:csi:0['"]\/>/);
    raw.destroy();
  });

  test('an inactive client gets messages at once, and on <active/> only the latest presence of each contact', async () => {
    const phone = await login('carol', 'phone');
    const tablet = await login('carol', 'tablet');
    const bob = await login('bob', 'csi');
    await phone.available();
    await tablet.available();
    await phone.waitFor((el) => el.name === 'presence' && el.attrs.from === tablet.jid);
    await setState(phone, 'inactive');
    // The tablet's presence changes three times; the phone is a contact of it (the same account).
    for (const s of ['one', 'two', 'three']) await tablet.send(xml('presence', {}, xml('status', {}, s)));
    await tablet.waitFor((el) => el.name === 'presence' && el.attrs.from === tablet.jid && el.getChildText('status') === 'three');
    // A message goes through while inactive.
    const id = await bob.message(phone.jid, 'wake up');
    await phone.waitFor(isMessage(id));
    assert.deepEqual(phone.take((el) => el.name === 'presence' && el.attrs.from === tablet.jid).map(String), []);
    await phone.send(xml('active', { xmlns: NS_CSI }));
    const p = await phone.waitFor((el) => el.name === 'presence' && el.attrs.from === tablet.jid);
    assert.equal(p.getChildText('status'), 'three');
    await settle(bob, phone);
    assert.deepEqual(phone.take((el) => el.name === 'presence' && el.attrs.from === tablet.jid).map(String), []);
    // MongooseIM's metrics of mod_csi count both changes.
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(text, /^mod_csi_inactive_count\{host_type="localhost"\} [1-9]/m);
    assert.match(text, /^mod_csi_active_count\{host_type="localhost"\} [1-9]/m);
    for (const c of [phone, tablet, bob]) await c.close();
  });

  test('an inactive client gets the held presence once more than buffer_max contacts have some waiting', async () => {
    const watcher = await login('carol', 'watcher');
    await watcher.available();
    await setState(watcher, 'inactive');
    // Four resources of the same account: four senders of presence, one more than buffer_max = 3.
    const others: TestClient[] = [];
    for (let i = 0; i < 4; i++) others.push(await login('carol', `r${i}`));
    const fromOthers = (el: XmlElement) => el.name === 'presence' && others.some((o) => o.jid === el.attrs.from);
    // Each one's presence reaches the watcher's session before its own echo (the same broadcast).
    for (const o of others.slice(0, 3)) await o.available();
    await settle(others[0]!, watcher);
    assert.deepEqual(watcher.take(fromOthers).map(String), [], 'three contacts: all held');
    await others[3]!.available();
    for (const o of others) await watcher.waitFor((el) => el.name === 'presence' && el.attrs.from === o.jid);
    for (const c of [watcher, ...others]) await c.close();
  });
});
