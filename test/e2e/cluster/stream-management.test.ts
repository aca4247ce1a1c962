// XEP-0198 across nodes: the <a/> a node sends counts a stanza for another
// node's session only once that node acknowledged it, or once it was
// routed again (offline storage) after no acknowledgement came. A node
// that took a stanza for a session with stream management holds it until
// the client acknowledges it; the sender's node keeps a copy meanwhile and
// routes it again if that node dies, and drops it when the session's end
// routed it there (so it is stored once).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, isMessage, settle, xml, type TestClient } from '../helpers/client.ts';
import { RawConnection } from '../helpers/raw.ts';
import { freePort } from '../helpers/server.ts';
import { pidOf } from '../delivery/helpers.ts';
import { natsReachable, NATS_UNREACHABLE, seen, startTestCluster, type TestCluster } from '../helpers/cluster.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';

const skip = !(await pgReachable()) ? PG_UNREACHABLE : !(await natsReachable()) ? NATS_UNREACHABLE : false;
const NS_SM = 'urn:xmpp:sm:3';

describe('stream management in a cluster', { skip }, () => {
  let db: TestDatabase;
  let cluster: TestCluster;
  let metricsPort = 0;
  const clients: TestClient[] = [];
  let stopped: number | null = null;

  const counter = async (name: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
    return m === null ? NaN : Number(m[1]);
  };

  before(async () => {
    db = await createTestDatabase();
    metricsPort = await freePort();
    cluster = await startTestCluster({
      nodes: 2, db, heartbeatInterval: 200, heartbeatTimeout: 5000, requestTimeout: 1000,
      extraToml: '[modules.mod_stream_management]\n',
      extraTomlFor: (i) => i !== 0 ? '' :
        `[[listen.http]]\n  port = ${metricsPort}\n  ip_address = "127.0.0.1"\n  [[listen.http.handlers.mongoose_prometheus_handler]]\n    host = "_"\n    path = "/metrics"\n`,
    });
    await cluster.register([['alice', 'pw-alice'], ['bob', 'pw-bob'], ['carol', 'pw-carol'], ['dave', 'pw-dave'], ['erin', 'pw-erin']]);
    await cluster.waitForNodes(0, 2);
  });

  after(async () => {
    if (stopped !== null) process.kill(stopped, 'SIGCONT');
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await cluster?.dispose();
    await db?.drop();
  });

  test('the server acknowledges a message for a session on a node that does not answer only once it was routed again', async () => {
    const bob = await connect(cluster.node(1), 'bob', 'pw-bob');
    const carol = await connect(cluster.node(0), 'carol', 'pw-carol');
    clients.push(bob, carol);
    await seen(carol, bob);
    const raw = await RawConnection.open(cluster.node(0).port);
    try {
      await raw.login('alice', 'pw-alice', 'sm');
      raw.send(`<enable xmlns='${NS_SM}'/>`);
      await raw.waitFor(/<enabled[^>]*\/>/);
      assert.equal(await counter('petrel_cluster_remote_delivery_failures_total'), 0);
      // Bob's node stops answering (but is not dead yet: its heartbeat timeout is long).
      stopped = pidOf(cluster.node(1));
      process.kill(stopped, 'SIGSTOP');
      raw.send(`<message to='${bob.jid}' type='chat' id='sm1'><body>are you there?</body></message><r xmlns='${NS_SM}'/>`);
      const a = await raw.waitFor(/<a [^>]*\/>/, 15_000);
      assert.match(a, /h=['"]1['"]/);
      // The acknowledgement came after the delivery was given up and the message routed again.
      assert.equal(await counter('petrel_cluster_remote_delivery_failures_total'), 1);
      assert.ok((await counter('petrel_cluster_remote_deliveries_total')) >= 1);
      process.kill(stopped, 'SIGCONT');
      stopped = null;
      // Bob's session went from node 1's table, so the message went to offline storage; he gets it at his next login.
      await bob.close();
      const back = await connect(cluster.node(0), 'bob', 'pw-bob');
      clients.push(back);
      await back.available();
      const m = await back.waitFor((el) => el.name === 'message' && el.attrs.id === 'sm1', 15_000, 'the message kept offline');
      assert.equal(m.getChildText('body'), 'are you there?');
    } finally {
      raw.destroy();
    }
  });

  // Last: it kills node 1.
  test('a message another node took for a client that never acknowledged it survives that node\'s death, and a session that ended stores it once', async () => {
    const alice = await connect(cluster.node(0), 'alice', 'pw-alice', { resource: 'held' });
    clients.push(alice);
    const raws: RawConnection[] = [];
    try {
      // Dave and Erin on node 1 with stream management, never acknowledging anything.
      const open = async (user: string) => {
        const raw = await RawConnection.open(cluster.node(1).port);
        raws.push(raw);
        const jid = await raw.login(user, `pw-${user}`, 'sm');
        raw.send(`<enable xmlns='${NS_SM}'/>`);
        await raw.waitFor(/<enabled[^>]*\/>/);
        // Node 0 knows the session once a headline (dropped, never stored, for an unknown session) gets through.
        for (let i = 0; ; i++) {
          assert.ok(i < 20, `node 0 never learnt of ${jid}`);
          const id = `reach-${user}-${i}`;
          await alice.send(xml('message', { to: jid, type: 'headline', id }, xml('body', {}, 'hi')));
          try {
            await raw.waitFor(new RegExp(`id=['"]${id}['"]`), 1000);
            break;
          } catch {
            // Not yet.
          }
        }
        return { raw, jid };
      };
      const dave = await open('dave');
      const erin = await open('erin');
      await alice.send(xml('message', { to: dave.jid, type: 'chat', id: 'held1' }, xml('body', {}, 'for dave')));
      await alice.send(xml('message', { to: erin.jid, type: 'chat', id: 'held2' }, xml('body', {}, 'for erin')));
      await dave.raw.waitFor(/id=['"]held1['"]/);
      await erin.raw.waitFor(/id=['"]held2['"]/);
      // Dave's session ends: node 1 stores what he did not acknowledge offline, and tells node 0 so.
      dave.raw.send('</stream:stream>');
      await dave.raw.untilClosed();
      // Once stored (node 1 then tells node 0, before it takes the next delivery), node 1 may die.
      for (let i = 0; ; i++) {
        const rows = await db.query<{ n: string }>("SELECT COUNT(*) AS n FROM petrel_offline WHERE username = 'dave'");
        if (Number(rows[0]!.n) > 0) break;
        assert.ok(i < 200, 'the message dave did not acknowledge was stored offline');
        await new Promise((r) => setTimeout(r, 25));
      }
      await alice.send(xml('message', { to: erin.jid, type: 'chat', id: 'held3' }, xml('body', {}, 'for erin again')));
      await erin.raw.waitFor(/id=['"]held3['"]/);
      // Node 1 dies with Erin's messages, which Erin never acknowledged.
      await cluster.kill(1);
      await cluster.node(0).waitForLog((l) => (l.what === 'cluster_node_down' || l.what === 'cluster_node_gone') && l.node === 'node2', 15_000);

      const daveBack = await connect(cluster.node(0), 'dave', 'pw-dave', { resource: 'back' });
      clients.push(daveBack);
      let daveGot = 0;
      daveBack.xmpp.on('stanza', (el) => {
        if (isMessage('held1')(el)) daveGot++;
      });
      const got1 = daveBack.waitFor(isMessage('held1'), 10_000, 'held1');
      await daveBack.available();
      await got1;
      // Anything stored with it comes with it, before a message sent now.
      await settle(alice, daveBack);
      assert.equal(daveGot, 1, 'dave gets his message once, from offline storage');

      const erinBack = await connect(cluster.node(0), 'erin', 'pw-erin', { resource: 'back' });
      clients.push(erinBack);
      const got2 = erinBack.waitFor(isMessage('held2'), 10_000, 'held2');
      const got3 = erinBack.waitFor(isMessage('held3'), 10_000, 'held3');
      await erinBack.available();
      assert.equal((await got2).getChildText('body'), 'for erin');
      assert.equal((await got3).getChildText('body'), 'for erin again');
    } finally {
      for (const r of raws) r.destroy();
    }
  });
});
