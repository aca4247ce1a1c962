// A node that joins a running cluster learns the sessions the others have
// from their snapshots, page by page, before it takes its first login.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type TestClient } from '../helpers/client.ts';
import { RawConnection } from '../helpers/raw.ts';
import { natsReachable, NATS_UNREACHABLE, startTestCluster, type TestCluster } from '../helpers/cluster.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';

const skip = !(await pgReachable()) ? PG_UNREACHABLE : !(await natsReachable()) ? NATS_UNREACHABLE : false;
/** More than one page of a snapshot (200 sessions). */
const SESSIONS = 450;

describe('a node joining a running cluster', { skip }, () => {
  let db: TestDatabase;
  let cluster: TestCluster;
  const raws: RawConnection[] = [];
  const clients: TestClient[] = [];

  before(async () => {
    db = await createTestDatabase();
    cluster = await startTestCluster({
      nodes: 2, db, startNow: 1,
      general: 'max_user_sessions = "infinity"\nmax_c2s_connections_per_address = "infinity"\nmax_concurrent_password_hashing = 4',
    });
    await cluster.register([['many', 'pw-many'], ['alice', 'pw-alice']]);
  });

  after(async () => {
    for (const r of raws) r.destroy();
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await cluster?.dispose();
    await db?.drop();
  });

  test('knows every session of the nodes already running, however many there are', async () => {
    const logins: Array<Promise<void>> = [];
    for (let i = 0; i < SESSIONS; i++) {
      logins.push((async () => {
        const raw = await RawConnection.open(cluster.node(0).port);
        raws[i] = raw;
        await raw.login('many', 'pw-many', `r${String(i).padStart(3, '0')}`);
      })());
      if (logins.length % 20 === 0) await Promise.all(logins.slice(-20));
    }
    await Promise.all(logins);
    await cluster.node(1).start();
    const alice = await connect(cluster.node(1), 'alice', 'pw-alice');
    clients.push(alice);
    for (const i of [0, 199, 200, 201, 399, SESSIONS - 1]) {
      const resource = `r${String(i).padStart(3, '0')}`;
      await alice.message(`many@localhost/${resource}`, `to ${resource}`);
      const got = await raws[i]!.waitFor(new RegExp(`to ${resource}<`), 10_000);
      assert.match(got, new RegExp(`to ${resource}`));
    }
  });
});
