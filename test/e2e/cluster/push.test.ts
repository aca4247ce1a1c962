// XEP-0357 push registrations in a cluster: kept in PostgreSQL (backend =
// "rdbms"), a registration made on one node serves a message routed to
// offline storage by another.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type TestClient } from '../helpers/client.ts';
import { Webhook } from '../delivery/helpers.ts';
import { natsReachable, NATS_UNREACHABLE, startTestCluster, type TestCluster } from '../helpers/cluster.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';
import { enableIq, publishOptions, pushToml } from '../push/helpers.ts';

const skip = !(await pgReachable()) ? PG_UNREACHABLE : !(await natsReachable()) ? NATS_UNREACHABLE : false;

describe('push notifications in a cluster of two nodes', { skip }, () => {
  const mp = new Webhook();
  let db: TestDatabase;
  let cluster: TestCluster;
  const clients: TestClient[] = [];

  before(async () => {
    db = await createTestDatabase();
    await mp.up();
    cluster = await startTestCluster({
      nodes: 2, db,
      extraToml: `[modules.mod_event_pusher]\n  outbox_backend = "rdbms"\n${pushToml({ port: mp.port, backend: 'rdbms' })}`,
    });
    await cluster.register([['alice', 'pw-alice'], ['bob', 'pw-bob']]);
    await cluster.waitForNodes(1, 2);
  });

  after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await cluster?.dispose();
    await mp.down().catch(() => {});
    await db?.drop();
  });

  test('a device registered through one node is notified of a message sent through the other', async () => {
    const alice = await connect(cluster.node(0), 'alice', 'pw-alice');
    await alice.iq(enableIq({ jid: 'pubsub.localhost', node: 'cluster-node' }, publishOptions({ service: 'fcm', device_id: 'cluster-token' })));
    await alice.close();
    const bob = await connect(cluster.node(1), 'bob', 'pw-bob');
    clients.push(bob);
    await bob.message('alice@localhost', 'while your phone sleeps');
    await mp.until(() => mp.on('/v3/notification/cluster-token').length >= 1, 15_000, 'the notification');
    const body = JSON.parse(mp.on('/v3/notification/cluster-token')[0]!.body) as { alert: { body: string; title: string } };
    assert.equal(body.alert.body, 'while your phone sleeps');
    assert.equal(body.alert.title, 'bob@localhost');
  });
});
