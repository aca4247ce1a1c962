// XEP-0280 Message Carbons across two nodes of one cluster: a user's
// resources on different nodes get one copy each of what the others send
// and receive, whichever node routed the message, and none once disabled.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, isMessage, settle, xml, type TestClient, type XmlElement } from '../helpers/client.ts';
import { natsReachable, NATS_UNREACHABLE, seen, startTestCluster, type TestCluster } from '../helpers/cluster.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';

const skip = !(await pgReachable()) ? PG_UNREACHABLE : !(await natsReachable()) ? NATS_UNREACHABLE : false;
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';

/** The message a carbon of `kind` carries, or undefined. */
function carried(el: XmlElement, kind: 'sent' | 'received'): XmlElement | undefined {
  return el.getChild(kind, NS_CARBONS)?.getChild('forwarded', NS_FORWARD)?.getChild('message');
}

function isCarbon(kind: 'sent' | 'received', body: string): (el: XmlElement) => boolean {
  return (el) => el.name === 'message' && carried(el, kind)?.getChildText('body') === body;
}

function isAnyCarbon(el: XmlElement): boolean {
  return el.getChild('sent', NS_CARBONS) !== undefined || el.getChild('received', NS_CARBONS) !== undefined;
}

async function carbons(c: TestClient, on: boolean): Promise<void> {
  const r = await c.iq(xml('iq', { type: 'set' }, xml(on ? 'enable' : 'disable', { xmlns: NS_CARBONS })));
  assert.equal(r.attrs.type, 'result');
}

describe('message carbons on two nodes of one cluster', { skip }, () => {
  let db: TestDatabase;
  let cluster: TestCluster;
  const clients: TestClient[] = [];

  const login = async (node: number, user: string, resource?: string) => {
    const c = await connect(cluster.node(node), user, `pw-${user}`, { resource });
    clients.push(c);
    return c;
  };

  before(async () => {
    db = await createTestDatabase();
    cluster = await startTestCluster({ nodes: 2, db, extraToml: '[modules.mod_carboncopy]\n' });
    await cluster.register([['alice', 'pw-alice'], ['bob', 'pw-bob'], ['carol', 'pw-carol']]);
    await cluster.waitForNodes(0, 2);
    await cluster.waitForNodes(1, 2);
  });

  after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await cluster?.dispose();
    await db?.drop();
  });

  test("resources on different nodes get one <sent/> and one <received/> copy of each other's messages, and none after disabling", async () => {
    const phone = await login(0, 'alice', 'phone');
    const laptop = await login(1, 'alice', 'laptop');
    const bob = await login(0, 'bob', 'desk');
    const carol = await login(1, 'carol', 'desk');
    await Promise.all([phone.available(), laptop.available(), bob.available(), carol.available()]);
    await carbons(phone, true);
    await carbons(laptop, true);
    // Each node knows the other's resources, carbons flag included.
    for (const [a, b] of [[phone, laptop], [laptop, phone], [bob, laptop], [carol, phone], [bob, carol], [carol, bob]] as const) await seen(a, b);
    /** Everything routed to `c` so far, from either node, has arrived. */
    const settled = async (c: TestClient) => {
      await settle(bob, c);
      await settle(carol, c);
    };

    // Received, routed by the recipient resource's node (bob on node1 to the phone on node1) and
    // by the other node (bob on node1 to the laptop on node2; carol on node2 to the phone on node1).
    const cases: Array<[TestClient, TestClient, TestClient, string]> = [
      [bob, phone, laptop, 'bob to the phone'],
      [bob, laptop, phone, 'bob to the laptop'],
      [carol, phone, laptop, 'carol to the phone'],
      [carol, laptop, phone, 'carol to the laptop'],
    ];
    for (const [from, to, other, body] of cases) {
      const id = await from.message(to.jid, body);
      await to.waitFor(isMessage(id));
      const rc = await other.waitFor(isCarbon('received', body));
      assert.equal(rc.attrs.from, 'alice@localhost');
      assert.equal(rc.attrs.to, other.jid);
      assert.equal(carried(rc, 'received')!.attrs.from, from.jid);
      assert.equal(carried(rc, 'received')!.attrs.to, to.jid);
    }

    // Sent: each resource's messages are copied to the other, on the other node.
    for (const [from, other, to, body] of [[phone, laptop, bob, 'phone to bob'], [laptop, phone, carol, 'laptop to carol']] as const) {
      await from.message(to.jid, body);
      await to.waitFor((el) => el.getChildText('body') === body);
      const sc = await other.waitFor(isCarbon('sent', body));
      assert.equal(carried(sc, 'sent')!.attrs.from, from.jid);
      assert.equal(carried(sc, 'sent')!.attrs.to, to.jid);
    }

    // A message to the bare JID that reaches both resources (equal priority) is copied to neither.
    const both = await bob.message('alice@localhost', 'to both');
    await phone.waitFor(isMessage(both));
    await laptop.waitFor(isMessage(both));

    // Exactly once: nothing more came, and no resource got a copy of its own traffic.
    await settled(phone);
    await settled(laptop);
    for (const [c, kind, body] of [
      [laptop, 'received', 'bob to the phone'], [phone, 'received', 'bob to the laptop'], [laptop, 'received', 'carol to the phone'], [phone, 'received', 'carol to the laptop'],
      [laptop, 'sent', 'phone to bob'], [phone, 'sent', 'laptop to carol'],
      [phone, 'received', 'to both'], [laptop, 'received', 'to both'],
      [phone, 'received', 'bob to the phone'], [laptop, 'received', 'bob to the laptop'], [phone, 'sent', 'phone to bob'], [laptop, 'sent', 'laptop to carol'],
    ] as const) {
      assert.deepEqual(c.take(isCarbon(kind, body)).map(String), [], `${c.jid}: ${kind} ${body}`);
    }

    // The laptop disables carbons: the phone's traffic, and what the phone receives, is no longer copied to it.
    await carbons(laptop, false);
    await seen(phone, laptop);
    await seen(bob, laptop);
    laptop.take(isAnyCarbon);
    const id = await bob.message(phone.jid, 'after disable, to the phone');
    await phone.waitFor(isMessage(id));
    await phone.message(bob.jid, 'after disable, from the phone');
    await bob.waitFor((el) => el.getChildText('body') === 'after disable, from the phone');
    await settled(laptop);
    assert.deepEqual(laptop.take(isAnyCarbon).map(String), []);

    // The phone still has carbons: what the laptop receives is copied to it once.
    const id2 = await carol.message(laptop.jid, 'still copied to the phone');
    await laptop.waitFor(isMessage(id2));
    await phone.waitFor(isCarbon('received', 'still copied to the phone'));
    await settled(phone);
    assert.equal(phone.take(isCarbon('received', 'still copied to the phone')).length, 0);
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });

  test('a resource that ended gets no more copies, and its carbons do not come back with a new session of the same resource', async () => {
    const phone = await login(0, 'alice', 'phone2');
    const tablet = await login(1, 'alice', 'tablet');
    const bob = await login(0, 'bob', 'desk2');
    await Promise.all([phone.available(), tablet.available(), bob.available()]);
    await carbons(tablet, true);
    await seen(phone, tablet);
    await seen(bob, tablet);
    const id = await bob.message(phone.jid, 'before the end');
    await phone.waitFor(isMessage(id));
    await tablet.waitFor(isCarbon('received', 'before the end'));
    await tablet.close();
    // A new session of the same resource starts without carbons.
    const again = await login(1, 'alice', 'tablet');
    await again.available();
    await seen(phone, again);
    await seen(bob, again);
    const id2 = await bob.message(phone.jid, 'after the end');
    await phone.waitFor(isMessage(id2));
    await settle(bob, again);
    await settle(phone, again);
    assert.deepEqual(again.take(isAnyCarbon).map(String), []);
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });
});
