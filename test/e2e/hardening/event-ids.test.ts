// The webhook-id of an event comes from a reference the server allocates and
// stores with the event, never from what the client chose: two messages with
// the same stanza id, sender, recipient and body are two events with two ids,
// and every attempt of one event, before and after a restart, carries its id.
// Run on both outbox stores: the embedded SQLite file and PostgreSQL.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, isMessage, xml, type TestClient } from '../helpers/client.ts';
import { Webhook, idOf, poolToml, restart } from '../delivery/helpers.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';

const reachable = await pgReachable();

function pusherToml(port: number, store: 'internal' | 'rdbms'): string {
  return `
${poolToml('http_pool', port)}
[modules.mod_event_pusher]
  outbox_backend = "${store}"
  [modules.mod_event_pusher.backend.http]
    pool_name = "http_pool"
    path = "/events"
    [modules.mod_event_pusher.backend.http.retry]
      max_attempts = 1000
      initial_delay = 20
      max_delay = 100
`;
}

for (const store of ['internal', 'rdbms'] as const) {
  describe(`event ids with the ${store === 'internal' ? 'SQLite' : 'PostgreSQL'} outbox`, { skip: store === 'rdbms' && !reachable ? PG_UNREACHABLE : false }, () => {
    const hook = new Webhook();
    let db: TestDatabase | undefined;
    let server: Petrel;
    const clients: TestClient[] = [];

    before(async () => {
      await hook.up();
      if (store === 'rdbms') db = await createTestDatabase();
      server = await startPetrel({ users: [['alice', 'pw'], ['bob', 'pw']], extraToml: (db?.toml ?? '') + pusherToml(hook.port, store) });
    });
    after(async () => {
      await Promise.all(clients.splice(0).map((c) => c.close()));
      await server?.dispose();
      await hook.down().catch(() => {});
      await db?.drop();
    });

    const pair = async (): Promise<[TestClient, TestClient]> => {
      const alice = await connect({ port: server.port }, 'alice', 'pw');
      const bob = await connect({ port: server.port }, 'bob', 'pw');
      clients.push(alice, bob);
      return [alice, bob];
    };

    test('two messages with the same stanza id, sender, recipient and body get different webhook-ids', async () => {
      const [alice, bob] = await pair();
      const same = () => xml('message', { to: bob.jid, type: 'chat', id: 'same-id' }, xml('body', {}, 'same body'));
      await alice.send(same());
      await alice.send(same());
      await bob.waitFor(isMessage('same-id'));
      await bob.waitFor(isMessage('same-id'));
      const mine = () => hook.on('/events').filter((r) => r.body.endsWith('message=same+body'));
      await hook.until(() => mine().length >= 2, 15_000, 'both events');
      const ids = mine().map(idOf);
      assert.equal(ids.length, 2);
      for (const id of ids) assert.match(id, /^msg_[A-Za-z0-9_-]{22}$/);
      assert.notEqual(ids[0], ids[1]);
    });

    test('every attempt of one event carries its webhook-id, before and after a restart in the middle of its retries', async () => {
      let failing = true;
      hook.script('/events', (r) => ({ status: failing && r.body.endsWith('message=keep+retrying') ? 503 : 200 }));
      const [alice, bob] = await pair();
      const id = await alice.message(bob.jid, 'keep retrying');
      await bob.waitFor(isMessage(id));
      const attempts = () => hook.on('/events').filter((r) => r.body.endsWith('message=keep+retrying'));
      await hook.until(() => attempts().length >= 3, 15_000, 'three failed attempts');
      await Promise.all(clients.splice(0).map((c) => c.close()));
      assert.equal((await server.stop()).code, 0);
      const before = attempts().length;
      failing = false;
      await restart(server);
      await hook.until(() => attempts().some((r) => r.status === 200), 15_000, 'the attempt that succeeds after the restart');
      const all = attempts();
      assert.ok(all.length > before, 'an attempt after the restart');
      assert.equal(new Set(all.map(idOf)).size, 1, `webhook-ids: ${[...new Set(all.map(idOf))].join(', ')}`);
    });
  });
}
