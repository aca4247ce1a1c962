// A node killed with SIGKILL: after cluster.heartbeat_timeout the
// survivors take its sessions out of their tables, the users' contacts see
// them unavailable once, and what was sent to them meanwhile is kept in
// offline storage and delivered at their next login.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isMessage, settle, xml, type TestClient, type XmlElement } from '../helpers/client.ts';
import { pidOf } from '../delivery/helpers.ts';
import { clusterSuite, natsReachable, NATS_UNREACHABLE, seen } from '../helpers/cluster.ts';
import { pgReachable, PG_UNREACHABLE } from '../postgres/db.ts';

const skip = !(await pgReachable()) ? PG_UNREACHABLE : !(await natsReachable()) ? NATS_UNREACHABLE : false;

describe('a cluster of three nodes losing one', { skip }, () => {
  const suite = clusterSuite({ nodes: 3, heartbeatInterval: 200, heartbeatTimeout: 1500, requestTimeout: 1000 }, ['alice', 'bob', 'carol', 'dan']);
  const { clients, login } = suite;
  const befriend = async (a: TestClient, b: TestClient) => {
    await a.send(xml('presence', { to: b.bare, type: 'subscribe' }));
    await b.waitFor((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === a.bare);
    await b.send(xml('presence', { to: a.bare, type: 'subscribed' }));
    await b.send(xml('presence', { to: a.bare, type: 'subscribe' }));
    await a.waitFor((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === b.bare);
    await a.send(xml('presence', { to: b.bare, type: 'subscribed' }));
  };

  test('the users of a killed node go unavailable to their contacts once, and messages to them go to offline storage', async () => {
    const alice = await login(0, 'alice');
    const bob = await login(1, 'bob');
    const carol = await login(2, 'carol');
    // Available first: the headlines of seen() follow the presence changes on the bus.
    for (const c of [alice, bob, carol]) await c.available();
    await seen(alice, bob);
    await seen(carol, bob);
    await seen(alice, carol);
    await befriend(alice, bob);
    await befriend(carol, bob);
    await alice.waitFor((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === undefined);
    await carol.waitFor((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === undefined);
    const bobJid = bob.jid;

    await suite.cluster.kill(1);
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

    const r = await suite.cluster.node(0).cli(['cluster']);
    assert.match(r.stdout, /2 live node/);
    assert.doesNotMatch(r.stdout, /node2 .* live/);

    // After the cleanup, too, a message to Bob is kept.
    const later = await alice.message(bob.bare, 'after the node was declared dead');
    const back = await login(0, 'bob');
    await back.available();
    for (const id of [toFull, toBare, later]) await back.waitFor(isMessage(id), 10_000, `offline message ${id}`);
  });

  test('a node paused past the heartbeat timeout comes back: its users are available again and reachable', async () => {
    const alice = clients.find((c) => c.bare === 'alice@localhost')!;
    const dan = await login(2, 'dan');
    await dan.available();
    await seen(alice, dan);
    await befriend(alice, dan);
    await alice.waitFor((el) => el.name === 'presence' && el.attrs.from === dan.jid && el.attrs.type === undefined);
    const pid = pidOf(suite.cluster.node(2));
    process.kill(pid, 'SIGSTOP');
    try {
      await alice.waitFor((el) => el.name === 'presence' && el.attrs.from === dan.jid && el.attrs.type === 'unavailable', 15_000, 'Dan\'s unavailable presence');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await alice.waitFor((el) => el.name === 'presence' && el.attrs.from === dan.jid && el.attrs.type === undefined, 15_000, 'Dan\'s presence again');
    await seen(alice, dan);
    const id = await alice.message(dan.jid, 'welcome back');
    await dan.waitFor(isMessage(id));
  });
});

describe('a node stalled past the request timeout but within the heartbeat timeout', { skip }, () => {
  const suite = clusterSuite({ nodes: 2, heartbeatInterval: 200, heartbeatTimeout: 6000, requestTimeout: 300 }, ['erin', 'fay']);
  const { clients, login } = suite;

  test('a delivery that timed out loses nothing, and the other node\'s sessions come back for the presence that follows', async () => {
    const erin = await login(0, 'erin');
    const fay = await login(1, 'fay');
    for (const c of [erin, fay]) await c.available();
    await seen(erin, fay);
    await erin.send(xml('presence', { to: fay.bare, type: 'subscribe' }));
    await fay.waitFor((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === erin.bare);
    await fay.send(xml('presence', { to: erin.bare, type: 'subscribed' }));
    await erin.waitFor((el) => el.name === 'presence' && el.attrs.from === fay.jid && el.attrs.type === undefined);

    // Erin's node stops answering for longer than Fay's node waits for a delivery, not long enough to be taken for dead.
    const pid = pidOf(suite.cluster.node(0));
    process.kill(pid, 'SIGSTOP');
    let id: string;
    try {
      id = await fay.message(erin.jid, 'while your node was stalled');
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Fay's node asks Erin's again for its sessions: Erin's is back in its table (a headline reaches her), and a presence change of Fay reaches her.
    await seen(erin, fay);
    await fay.send(xml('presence', {}, xml('show', {}, 'away')));
    await erin.waitFor((el) => el.name === 'presence' && el.attrs.from === fay.jid && el.getChildText('show') === 'away', 10_000, 'Fay\'s away presence');

    // Not lost: routed again as if Erin's session were gone, so kept offline for her next login.
    await erin.close();
    clients.splice(clients.indexOf(erin), 1);
    const back = await login(0, 'erin');
    await back.available();
    await back.waitFor(isMessage(id), 10_000, 'the message routed again to offline storage');
  });
});
