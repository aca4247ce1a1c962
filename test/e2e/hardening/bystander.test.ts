// One user's huge events cannot cost another user's events: while mallory
// sends messages of a megabyte and more, batched with alice's small ones, and
// the endpoint is down so that they pile up and are claimed in pages once it
// is back, every event of alice's reaches the webhook. Both outbox stores, a
// real server process, real clients, a real webhook.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, isMessage, type TestClient } from '../helpers/client.ts';
import { Webhook, poolToml } from '../delivery/helpers.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';

const reachable = await pgReachable();
const HUGE = 1_500_000;
const ROUNDS = 20;

for (const store of ['internal', 'rdbms'] as const) {
  describe(`a bystander's events with the ${store === 'internal' ? 'SQLite' : 'PostgreSQL'} outbox`, { skip: store === 'rdbms' && !reachable ? PG_UNREACHABLE : false }, () => {
    const hook = new Webhook();
    let db: TestDatabase | undefined;
    let server: Petrel;
    const clients: TestClient[] = [];

    before(async () => {
      await hook.up();
      if (store === 'rdbms') db = await createTestDatabase();
      server = await startPetrel({
        users: [['alice', 'pw'], ['mallory', 'pw'], ['bob', 'pw'], ['carol', 'pw']],
        listeners: [{ max_stanza_size: 4 * 1024 * 1024 }],
        extraToml: `${db?.toml ?? ''}
${poolToml('http_pool', hook.port, { timeout: 10_000 })}
[modules.mod_event_pusher]
  outbox_backend = "${store}"
  [modules.mod_event_pusher.backend.http]
    pool_name = "http_pool"
    path = "/events"
    [modules.mod_event_pusher.backend.http.retry]
      max_attempts = 1000
      initial_delay = 20
      max_delay = 200
`,
      });
    });
    after(async () => {
      await Promise.all(clients.splice(0).map((c) => c.close()));
      await server?.dispose();
      await hook.down().catch(() => {});
      await db?.drop();
    });

    test('every event of a user whose small messages are batched with huge ones of another user is delivered', async () => {
      const alice = await connect({ port: server.port }, 'alice', 'pw');
      const mallory = await connect({ port: server.port }, 'mallory', 'pw');
      const bob = await connect({ port: server.port }, 'bob', 'pw');
      clients.push(alice, mallory, bob);
      const huge = 'x'.repeat(HUGE);
      // The endpoint is down while they send: the events pile up, and are claimed in pages once it is back.
      await hook.down();
      const mine: string[] = [];
      const theirs: string[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        // To carol, who is offline: mod_offline keeps them.
        theirs.push(await mallory.message(`carol@${server.domain}`, huge + i));
        for (let j = 0; j < 5; j++) mine.push(await alice.message(bob.jid, `small ${i} ${j}`));
      }
      for (const id of mine) await bob.waitFor(isMessage(id), 60_000, `message ${id}`);
      await hook.up();
      const alices = () => new Set(hook.on('/events').filter((r) => r.body.startsWith('author=alice&')).map((r) => r.body));
      await hook.until(() => alices().size >= mine.length, 60_000, `alice's ${mine.length} events`).catch(() => {});
      const got = alices();
      const lost = [];
      for (let i = 0; i < ROUNDS; i++) for (let j = 0; j < 5; j++) if (!got.has(`author=alice&server=localhost&receiver=bob&message=small+${i}+${j}`)) lost.push(`${i} ${j}`);
      assert.deepEqual(lost, [], `${lost.length} of alice's ${mine.length} events lost`);
    });
  });
}
