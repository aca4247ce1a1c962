// XEP-0198 across nodes: the <a/> a node sends counts a stanza for another
// node's session only once that node acknowledged it, or once it was
// routed again (offline storage) after no acknowledgement came.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type TestClient } from '../helpers/client.ts';
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
    await cluster.register([['alice', 'pw-alice'], ['bob', 'pw-bob'], ['carol', 'pw-carol']]);
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
});
