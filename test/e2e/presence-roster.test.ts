// Rosters (RFC 6121 §2) and presence: the subscription handshake (§3),
// initial presence and probes (§4.2, §4.3), unavailable presence (§4.5).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from './helpers/server.ts';
import { connect, settle, xml, type TestClient, type XmlElement } from './helpers/client.ts';
import { RawConnection } from './helpers/raw.ts';

const NS_ROSTER = 'jabber:iq:roster';

interface Item {
  subscription: string | undefined;
  ask: string | undefined;
  name: string | undefined;
  groups: string[];
}

let server: Petrel;
const open: TestClient[] = [];

async function login(user: string, resource: string): Promise<TestClient> {
  const c = await connect(server, user, `pw-${user}`, { resource });
  open.push(c);
  return c;
}

function toItem(el: XmlElement): Item {
  return {
    subscription: el.attrs.subscription,
    ask: el.attrs.ask,
    name: el.attrs.name,
    groups: el.getChildren('group').map((g) => g.text()),
  };
}

/** The roster, by contact JID; asking for it also makes the resource "interested" in pushes (§2.1.6). */
async function roster(c: TestClient): Promise<Map<string, Item>> {
  const reply = await c.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: NS_ROSTER })));
  const q = reply.getChild('query', NS_ROSTER)!;
  return new Map(q.getChildren('item').map((i) => [i.attrs.jid!, toItem(i)]));
}

/** A roster push about `jid` (§2.1.6), answered as the RFC asks. */
async function push(c: TestClient, jid: string, subscription?: string): Promise<Item> {
  const iq = await c.waitFor(
    (el) => {
      if (el.name !== 'iq' || el.attrs.type !== 'set') return false;
      const item = el.getChild('query', NS_ROSTER)?.getChild('item');
      return item !== undefined && item.attrs.jid === jid && (subscription === undefined || item.attrs.subscription === subscription);
    },
    10_000,
    `a roster push about ${jid}${subscription ? ` with subscription ${subscription}` : ''}`,
  );
  // A push has no from (it comes from the user's own account, §2.1.6).
  assert.equal(iq.attrs.from, undefined);
  return toItem(iq.getChild('query', NS_ROSTER)!.getChild('item')!);
}

function presenceFrom(from: string, type?: string): (el: XmlElement) => boolean {
  return (el) => el.name === 'presence' && el.attrs.from === from && el.attrs.type === type;
}

before(async () => {
  server = await startPetrel({
    users: ['alice', 'bob', 'carol', 'dave', 'erin'].map((u) => [u, `pw-${u}`] as [string, string]),
  });
});

after(async () => {
  await Promise.all(open.map((c) => c.close()));
  await server.dispose();
});

describe('roster get, set and push', () => {
  let c1: TestClient;
  let c2: TestClient;
  let uninterested: TestClient;
  before(async () => {
    c1 = await login('carol', 'one');
    c2 = await login('carol', 'two');
    uninterested = await login('carol', 'three');
  });

  test('the roster of a new account is empty', async () => {
    assert.equal((await roster(c1)).size, 0);
    assert.equal((await roster(c2)).size, 0);
  });

  test('a roster set is pushed to every resource that asked for the roster and shows in the next get', async () => {
    const reply = await c1.iq(
      xml('iq', { type: 'set' }, xml('query', { xmlns: NS_ROSTER }, xml('item', { jid: 'zed@localhost', name: 'Zed' }, xml('group', {}, 'Friends')))),
    );
    assert.equal(reply.attrs.type, 'result');
    const expected: Item = { subscription: 'none', ask: undefined, name: 'Zed', groups: ['Friends'] };
    assert.deepEqual(await push(c1, 'zed@localhost'), expected);
    assert.deepEqual(await push(c2, 'zed@localhost'), expected);
    assert.deepEqual((await roster(c2)).get('zed@localhost'), expected);
  });

  test('a resource that never asked for the roster gets no pushes', async () => {
    await settle(c1, uninterested);
    assert.equal(uninterested.take((el) => el.name === 'iq' && el.getChild('query', NS_ROSTER) !== undefined).length, 0);
  });

  test('an item removed from the roster is pushed with subscription "remove" and is gone', async () => {
    await c2.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: NS_ROSTER }, xml('item', { jid: 'zed@localhost', subscription: 'remove' }))));
    assert.equal((await push(c1, 'zed@localhost', 'remove')).subscription, 'remove');
    await push(c2, 'zed@localhost', 'remove');
    assert.equal((await roster(c1)).has('zed@localhost'), false);
  });
});

describe('presence subscription', () => {
  let alice: TestClient;
  let bob: TestClient;
  before(async () => {
    alice = await login('alice', 'desk');
    bob = await login('bob', 'desk');
    await roster(alice);
    await roster(bob);
    await alice.available();
    await bob.available();
  });

  test('alice subscribes to bob, bob approves, and both rosters show the subscription', async () => {
    await alice.send(xml('presence', { type: 'subscribe', to: 'bob@localhost' }));
    // Alice's roster now has bob, with her request pending (§3.1.2).
    assert.deepEqual(await push(alice, 'bob@localhost'), { subscription: 'none', ask: 'subscribe', name: undefined, groups: [] });
    // Bob gets the request from alice's bare JID (§3.1.3).
    await bob.waitFor(presenceFrom('alice@localhost', 'subscribe'));

    await bob.send(xml('presence', { type: 'subscribed', to: 'alice@localhost' }));
    assert.equal((await push(bob, 'alice@localhost', 'from')).subscription, 'from');
    assert.equal((await push(alice, 'bob@localhost', 'to')).ask, undefined);
    await alice.waitFor(presenceFrom('bob@localhost', 'subscribed'));
    // Once approved, alice receives bob's current presence (§3.1.5).
    await alice.waitFor(presenceFrom(bob.jid));

    assert.equal((await roster(alice)).get('bob@localhost')?.subscription, 'to');
    assert.equal((await roster(bob)).get('alice@localhost')?.subscription, 'from');
  });

  test('a new resource of bob broadcasts its initial presence to alice', async () => {
    const phone = await login('bob', 'phone');
    await phone.available();
    await alice.waitFor(presenceFrom(phone.jid));
    // Bob did not subscribe to alice: his new resource gets no presence probe answer from her.
    await settle(alice, phone);
    assert.equal(phone.take(presenceFrom(alice.jid)).length, 0);
  });

  test('a presence change of bob reaches alice but not a user without a subscription', async () => {
    const erin = await login('erin', 'watcher');
    await erin.available();
    await bob.send(xml('presence', {}, xml('status', {}, 'busy')));
    const got = await alice.waitFor((el) => presenceFrom(bob.jid)(el) && el.getChildText('status') === 'busy');
    // Broadcast to the contact's bare JID, delivered to each available resource (RFC 6121 §4.4.2, §8.5.2.1.1).
    assert.ok(got.attrs.to === alice.bare || got.attrs.to === alice.jid, `to=${got.attrs.to}`);
    await settle(bob, erin);
    assert.equal(erin.take((el) => el.name === 'presence' && el.attrs.from?.startsWith('bob@') === true).length, 0);
    await erin.close();
  });

  test('alice coming online after bob gets his presence by probing', async () => {
    await alice.close();
    alice = await login('alice', 'laptop');
    await alice.send(xml('presence'));
    await alice.waitFor(presenceFrom(bob.jid));
  });

  test('when a resource of bob disconnects, alice receives its unavailable presence', async () => {
    const tablet = await login('bob', 'tablet');
    await tablet.available();
    await alice.waitFor(presenceFrom(tablet.jid));
    await tablet.close();
    await alice.waitFor(presenceFrom('bob@localhost/tablet', 'unavailable'));
  });

  test('when a resource of bob drops its TCP connection without closing the stream, alice receives its unavailable presence', async () => {
    const raw = await RawConnection.open(server.port);
    const jid = await raw.login('bob', 'pw-bob', 'flaky');
    raw.send('<presence/>');
    await alice.waitFor(presenceFrom(jid));
    raw.destroy();
    await alice.waitFor(presenceFrom(jid, 'unavailable'));
  });

  test('removing bob from alice roster cancels the subscription on both sides', async () => {
    await roster(alice);
    await alice.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: NS_ROSTER }, xml('item', { jid: 'bob@localhost', subscription: 'remove' }))));
    await push(alice, 'bob@localhost', 'remove');
    // §2.5.2: bob's server is told alice unsubscribed, so his item for her drops to "none".
    assert.equal((await push(bob, 'alice@localhost', 'none')).subscription, 'none');
    assert.equal((await roster(alice)).has('bob@localhost'), false);
    assert.equal((await roster(bob)).get('alice@localhost')?.subscription ?? 'none', 'none');
    // Bob's presence no longer reaches alice.
    await bob.send(xml('presence', {}, xml('status', {}, 'after removal')));
    await bob.waitFor((el) => presenceFrom(bob.jid)(el) && el.getChildText('status') === 'after removal');
    await settle(bob, alice);
    assert.equal(alice.take((el) => el.name === 'presence' && el.getChildText('status') === 'after removal').length, 0);
  });
});

describe('subscription requests to an offline or unknown user', () => {
  test('a subscription request to a user who does not exist is answered with unsubscribed', async () => {
    const dave = await login('dave', 'curious');
    await dave.available();
    await dave.send(xml('presence', { type: 'subscribe', to: 'nobody@localhost' }));
    await dave.waitFor(presenceFrom('nobody@localhost', 'unsubscribed'));
    await dave.close();
  });

  test('a subscription request waits for the contact and is delivered when they come online', async () => {
    const dave = await login('dave', 'home');
    await roster(dave);
    await dave.send(xml('presence', { type: 'subscribe', to: 'erin@localhost' }));
    // The request has been handled once dave's roster shows it pending.
    assert.equal((await push(dave, 'erin@localhost')).ask, 'subscribe');
    const erin = await login('erin', 'later');
    await erin.available();
    await erin.waitFor(presenceFrom('dave@localhost', 'subscribe'));
  });
});
