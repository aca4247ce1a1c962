// Users on different nodes of one cluster talk as they would on one server:
// messages to full and bare JIDs (RFC 6121 priority across nodes), presence
// broadcasts and probes, roster pushes, shared offline storage,
// max_user_sessions counted cluster-wide, and `petrel unregister` on one
// node ending a session on another.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, isMessage, settle, xml, type TestClient } from '../helpers/client.ts';
import { natsReachable, NATS_UNREACHABLE, seen, startTestCluster, type TestCluster } from '../helpers/cluster.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';

const skip = !(await pgReachable()) ? PG_UNREACHABLE : !(await natsReachable()) ? NATS_UNREACHABLE : false;
const NS_ROSTER = 'jabber:iq:roster';

describe('two nodes of one cluster', { skip }, () => {
  let db: TestDatabase;
  let cluster: TestCluster;
  const clients: TestClient[] = [];

  const login = async (node: number, user: string, resource?: string) => {
    const c = await connect(cluster.node(node), user, `pw-${user}`, { resource });
    clients.push(c);
    return c;
  };
  const closeAll = () => Promise.all(clients.splice(0).map((c) => c.close()));
  /** Mutual subscription between two online users (RFC 6121 §3). */
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
    cluster = await startTestCluster({ nodes: 2, db });
    await cluster.register([
      ['alice', 'pw-alice'], ['bob', 'pw-bob'], ['carol', 'pw-carol'], ['dave', 'pw-dave'], ['erin', 'pw-erin'], ['frank', 'pw-frank'], ['gina', 'pw-gina'], ['hugo', 'pw-hugo'], ['iris', 'pw-iris'],
    ]);
    await cluster.waitForNodes(0, 2);
    await cluster.waitForNodes(1, 2);
  });

  after(async () => {
    await closeAll();
    await cluster?.dispose();
    await db?.drop();
  });

  test('petrel cluster lists both nodes as live', async () => {
    const r = await cluster.node(0).cli(['cluster']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /2 live node/);
    assert.match(r.stdout, /node1 .* live/);
    assert.match(r.stdout, /node2 .* live/);
  });

  test('a user on one node messages a user on the other at the full and at the bare JID', async () => {
    const alice = await login(0, 'alice');
    const bob = await login(1, 'bob');
    await bob.available();
    await seen(alice, bob);
    const id1 = await alice.message(bob.jid, 'to the full JID');
    const m1 = await bob.waitFor(isMessage(id1));
    assert.equal(m1.attrs.from, alice.jid);
    const id2 = await alice.message(bob.bare, 'to the bare JID');
    const m2 = await bob.waitFor(isMessage(id2));
    assert.equal(m2.getChildText('body'), 'to the bare JID');
    const id3 = await bob.message(alice.jid, 'and back');
    await alice.waitFor(isMessage(id3));
    await closeAll();
  });

  test('a message to the bare JID goes to the resource of highest priority, whichever node it is on', async () => {
    const sender = await login(0, 'carol');
    const low = await login(0, 'dave', 'low');
    const high = await login(1, 'dave', 'high');
    await seen(low, high);
    await low.available(1);
    await high.available(5);
    // Wait until node 1 sees "high" at priority 5: its presence reaches "low" through the cluster.
    await low.waitFor((el) => el.name === 'presence' && el.attrs.from === high.jid && el.getChildText('priority') === '5');
    await seen(sender, high);
    const id = await sender.message(dave(), 'to the highest priority');
    await high.waitFor(isMessage(id));
    await settle(sender, low);
    assert.equal(low.take(isMessage(id)).length, 0, 'the lower priority resource got it too');
    // Now the local resource is the higher one.
    await low.available(10);
    await high.waitFor((el) => el.name === 'presence' && el.attrs.from === low.jid && el.getChildText('priority') === '10');
    const id2 = await sender.message(dave(), 'now to the local one');
    await low.waitFor(isMessage(id2));
    await settle(sender, high);
    assert.equal(high.take(isMessage(id2)).length, 0);
    await closeAll();
    function dave() {
      return 'dave@localhost';
    }
  });

  test('presence crosses nodes: broadcasts, probes at login, and unavailable at logout', async () => {
    const alice = await login(0, 'alice');
    const bob = await login(1, 'bob');
    await alice.available();
    await bob.available();
    await seen(alice, bob);
    await befriend(alice, bob);
    await alice.waitFor((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === undefined);
    await bob.waitFor((el) => el.name === 'presence' && el.attrs.from === alice.jid && el.attrs.type === undefined);
    // A broadcast: Bob changes his status.
    await bob.send(xml('presence', {}, xml('status', {}, 'lunch')));
    const st = await alice.waitFor((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.getChildText('status') === 'lunch');
    assert.equal(st.attrs.type, undefined);
    // A probe: Alice logs in again on node 1 and learns Bob's presence, kept on node 2 (index 1).
    await alice.close();
    const unavailable = await bob.waitFor((el) => el.name === 'presence' && el.attrs.from === alice.jid && el.attrs.type === 'unavailable');
    assert.ok(unavailable);
    const again = await login(0, 'alice');
    await again.available();
    const probed = await again.waitFor((el) => el.name === 'presence' && el.attrs.from === bob.jid);
    assert.equal(probed.getChildText('status'), 'lunch');
    await closeAll();
  });

  test('a roster change on one node is pushed to the user\'s resource on the other', async () => {
    const here = await login(0, 'erin', 'here');
    const there = await login(1, 'erin', 'there');
    await there.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: NS_ROSTER })));
    // Node 1 learns that "there" asked for the roster; a round trip through "here"'s presence shows the table is current.
    await here.available();
    await there.available();
    await here.waitFor((el) => el.name === 'presence' && el.attrs.from === there.jid);
    await seen(here, there);
    await here.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: NS_ROSTER }, xml('item', { jid: 'frank@localhost', name: 'Frank' }))));
    const push = await there.waitFor((el) => el.name === 'iq' && el.attrs.type === 'set' && el.getChild('query', NS_ROSTER) !== undefined);
    assert.equal(push.getChild('query', NS_ROSTER)!.getChild('item')!.attrs.jid, 'frank@localhost');
    await closeAll();
  });

  test('a message to a user who is offline is stored and delivered at login on the other node', async () => {
    const alice = await login(0, 'alice');
    const id = await alice.message('frank@localhost', 'while you were away');
    // The store is shared; logging in on the other node brings it.
    const t0 = Date.now();
    for (;;) {
      const rows = await db.query<{ n: string }>("SELECT COUNT(*) AS n FROM petrel_offline WHERE username = 'frank'").catch(() => [{ n: '0' }]);
      if (Number(rows[0]!.n) > 0 || Date.now() - t0 > 5000) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const frank = await login(1, 'frank');
    await frank.available();
    const m = await frank.waitFor(isMessage(id));
    assert.equal(m.getChildText('body'), 'while you were away');
    await closeAll();
  });

  test('messages sent to a user while they log in on the other node all reach that session, none waits for the next login', async () => {
    const hugo = await login(0, 'hugo');
    const sent: string[] = [];
    let sending = true;
    // Sent to the bare JID one after another, before, during and after the login on the other node.
    const burst = (async () => {
      while (sending || sent.length < 40) {
        sent.push(await hugo.message('iris@localhost', `burst ${sent.length}`));
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    const iris = await login(1, 'iris');
    await iris.available();
    await new Promise((r) => setTimeout(r, 300));
    sending = false;
    await burst;
    await settle(hugo, iris);
    for (const id of sent) await iris.waitFor(isMessage(id), 10_000, `message ${id} in the session that logged in`);
    await closeAll();
  });

  test('max_user_sessions counts sessions on every node and replaces the oldest wherever it is', async () => {
    // The test servers' default is 10; log in 10 times on node 2, then once more on node 1.
    const olds: TestClient[] = [];
    for (let i = 0; i < 10; i++) olds.push(await login(1, 'gina', `r${i}`));
    const watcher = olds[9]!;
    const other = await login(0, 'alice');
    // Node 1 has all ten in its table once the last one's message reached it.
    await seen(other, watcher);
    const fresh = await login(0, 'gina', 'new');
    await olds[0]!.disconnected;
    assert.ok(olds[0]!.errors.some((e) => (e as { condition?: string }).condition === 'conflict'), 'the oldest session ended with a conflict stream error');
    const id = await fresh.message(watcher.jid, 'still here');
    await watcher.waitFor(isMessage(id));
    await closeAll();
  });

  test('petrel unregister run on one node ends the user\'s session on the other', async () => {
    await cluster.register([['henry', 'pw-henry']]);
    const henry = await login(1, 'henry');
    const alice = await login(0, 'alice');
    await seen(alice, henry);
    await cluster.node(0).unregister('henry');
    await henry.disconnected;
    assert.ok(henry.errors.some((e) => (e as { condition?: string }).condition === 'not-authorized'), 'the session ended with not-authorized');
    await closeAll();
  });

  test('a login with the resource of a session on the other node replaces that session', async () => {
    const first = await login(0, 'erin', 'phone');
    const watcher = await login(1, 'alice');
    await seen(watcher, first);
    const second = await login(1, 'erin', 'phone');
    await first.disconnected;
    assert.ok(first.errors.some((e) => (e as { condition?: string }).condition === 'conflict'), 'the first session ended with a conflict stream error');
    await seen(watcher, second);
    const id = await watcher.message('erin@localhost/phone', 'to the new session');
    await second.waitFor(isMessage(id));
    await closeAll();
  });
});
