// A node killed with SIGKILL: after cluster.heartbeat_timeout the
// survivors take its sessions out of their tables, the users' contacts see
// them unavailable once, and what was sent to them meanwhile is kept in
// offline storage and delivered at their next login.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, isMessage, settle, xml, type TestClient, type XmlElement } from '../helpers/client.ts';
import { natsReachable, NATS_UNREACHABLE, seen, startTestCluster, type TestCluster } from '../helpers/cluster.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';

const skip = !(await pgReachable()) ? PG_UNREACHABLE : !(await natsReachable()) ? NATS_UNREACHABLE : false;

describe('a cluster of three nodes losing one', { skip }, () => {
  let db: TestDatabase;
  let cluster: TestCluster;
  const clients: TestClient[] = [];

  const login = async (node: number, user: string) => {
    const c = await connect(cluster.node(node), user, `pw-${user}`);
    clients.push(c);
    return c;
  };
  const befriend = async (a: TestClient, b: TestClient) => {
    await a.send(xml('presence', { to: b.bare, type: 'subscribe' }));
    await b.waitFor((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === a.bare);
    await b.send(xml('presence', { to: a.bare, type: 'subscribed' }));
    await b.send(xml('presence', { to: a.bare, type: 'subscribe' }));
    await a.waitFor((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === b.bare);
    await a.send(xml('presence', { to: b.bare, type: 'subscribed' }));
  };

  before(async () => {
    db = await createTestDatabase();
    cluster = await startTestCluster({ nodes: 3, db, heartbeatInterval: 200, heartbeatTimeout: 1500, requestTimeout: 1000 });
    await cluster.register([['alice', 'pw-alice'], ['bob', 'pw-bob'], ['carol', 'pw-carol']]);
    for (let i = 0; i < 3; i++) await cluster.waitForNodes(i, 3);
  });

  after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await cluster?.dispose();
    await db?.drop();
  });

  test('the users of a killed node go unavailable to their contacts once, and messages to them go to offline storage', async () => {
    const alice = await login(0, 'alice');
    const bob = await login(1, 'bob');
    const carol = await login(2, 'carol');
    await seen(alice, bob);
    await seen(carol, bob);
    await seen(alice, carol);
    for (const c of [alice, bob, carol]) await c.available();
    await befriend(alice, bob);
    await befriend(carol, bob);
    await alice.waitFor((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === undefined);
    await carol.waitFor((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === undefined);
    const bobJid = bob.jid;

    await cluster.kill(1);
    // Sent before the survivors declare the node dead: its node does not answer, so it is kept offline.
    const toFull = await alice.message(bobJid, 'to the full JID of a dead session');
    const toBare = await carol.message(bob.bare, 'to the bare JID of a dead session');

    const isUnavailable = (el: XmlElement) => el.name === 'presence' && el.attrs.from === bobJid && el.attrs.type === 'unavailable';
    await alice.waitFor(isUnavailable, 15_000, 'Bob\'s unavailable presence');
    await carol.waitFor(isUnavailable, 15_000, 'Bob\'s unavailable presence');
    // Once: nothing more of the kind is queued after a round trip each way.
    await settle(alice, carol);
    await settle(carol, alice);
    assert.equal(alice.take(isUnavailable).length, 0, 'Alice saw Bob go unavailable twice');
    assert.equal(carol.take(isUnavailable).length, 0, 'Carol saw Bob go unavailable twice');

    const r = await cluster.node(0).cli(['cluster']);
    assert.match(r.stdout, /2 live node/);
    assert.doesNotMatch(r.stdout, /node2 .* live/);

    // After the cleanup, too, a message to Bob is kept.
    const later = await alice.message(bob.bare, 'after the node was declared dead');
    const back = await login(0, 'bob');
    await back.available();
    for (const id of [toFull, toBare, later]) await back.waitFor(isMessage(id), 10_000, `offline message ${id}`);
  });
});
