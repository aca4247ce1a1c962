// XEP-0357 registrations in PostgreSQL (`backend = "rdbms"`), with the
// outbox there too: enable with @xmpp/client, the row in
// petrel_event_pusher_push_subscription, the notification of an offline
// recipient at a test MongoosePush, the registration kept across a restart
// and removed on a 410.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect } from '../helpers/client.ts';
import { Webhook, restart } from '../delivery/helpers.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';
import { enableIq, publishOptions, pushToml } from './helpers.ts';

const reachable = await pgReachable();

describe('push registrations in PostgreSQL', { skip: reachable ? false : PG_UNREACHABLE }, () => {
  const mp = new Webhook();
  let db: TestDatabase;
  let server: Petrel;

  const rows = async (user: string) =>
    Number((await db.query<{ n: string }>('SELECT COUNT(*) AS n FROM petrel_event_pusher_push_subscription WHERE username = $1', [user]))[0]!.n);

  before(async () => {
    db = await createTestDatabase();
    await mp.up();
    server = await startPetrel({
      users: [['alice', 'pw'], ['bob', 'pw']],
      extraToml: `${db.toml}\n[modules.mod_event_pusher]\n  outbox_backend = "rdbms"\n${pushToml({ port: mp.port, backend: 'rdbms' })}`,
    });
  });

  after(async () => {
    await server?.dispose().catch(() => {});
    await mp.down().catch(() => {});
    await db?.drop().catch(() => {});
  });

  test('an enable is stored in PostgreSQL, and an offline recipient\'s message reaches MongoosePush as the documented JSON', async () => {
    const alice = await connect({ port: server.port }, 'alice', 'pw');
    await alice.iq(enableIq({ jid: 'pubsub.localhost', node: 'pg-node' }, publishOptions({ service: 'fcm', device_id: 'pg-token', priority: 'normal' })));
    await alice.close();
    const [row] = await db.query<{ pubsub_jid: string; node: string; form: string }>(
      'SELECT pubsub_jid, node, form FROM petrel_event_pusher_push_subscription WHERE username = $1', ['alice']);
    assert.deepEqual({ ...row, form: JSON.parse(row!.form) }, { pubsub_jid: 'pubsub.localhost', node: 'pg-node', form: { service: 'fcm', device_id: 'pg-token', priority: 'normal' } });

    const bob = await connect({ port: server.port }, 'bob', 'pw');
    await bob.message('alice@localhost', 'stored in postgres');
    await mp.until(() => mp.on('/v3/notification/pg-token').length >= 1, 10_000, 'the notification');
    assert.deepEqual(JSON.parse(mp.on('/v3/notification/pg-token')[0]!.body), {
      service: 'fcm', priority: 'normal',
      alert: { body: 'stored in postgres', title: 'bob@localhost', tag: 'bob@localhost', badge: 1 },
    });
    await bob.close();
  });

  test('the registration survives a restart, and a 410 removes it from PostgreSQL', async () => {
    await server.stop();
    await restart(server);
    mp.script('/v3/notification/pg-token', () => ({ status: 410 }));
    const bob = await connect({ port: server.port }, 'bob', 'pw');
    await bob.message('alice@localhost', 'after the restart');
    await mp.until(() => mp.on('/v3/notification/pg-token').length >= 2, 10_000, 'the notification after the restart');
    await server.waitForLog((l) => l.what === 'push_registration_disabled' && l.node === 'pg-node');
    assert.equal(await rows('alice'), 0);
    await bob.close();
  });
});
