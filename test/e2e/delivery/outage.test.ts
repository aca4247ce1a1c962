// At-least-once delivery through an endpoint outage and a server crash, with
// a real server process, real XMPP clients and a real webhook listener.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, isMessage, type TestClient } from '../helpers/client.ts';
import { Webhook, idOf, killHard, openStore, poolToml, restart } from './helpers.ts';

const hook = new Webhook();
let server: Petrel;

function handlerToml(): string {
  return `
${poolToml('http_pool', hook.port)}
[modules.mod_event_pusher.backend.http]
  pool_name = "http_pool"
  path = "/events"
  [modules.mod_event_pusher.backend.http.retry]
    max_attempts = 1000
    initial_delay = 20
    max_delay = 200
`;
}

before(async () => {
  await hook.up();
  server = await startPetrel({ users: [['alice', 'pw'], ['bob', 'pw']], extraToml: handlerToml() });
});

after(async () => {
  await server?.dispose();
  await hook.down().catch(() => {});
});

async function pair(): Promise<[TestClient, TestClient]> {
  const alice = await connect({ port: server.port }, 'alice', 'pw');
  const bob = await connect({ port: server.port }, 'bob', 'pw');
  return [alice, bob];
}

/** Sends `n` chat messages and waits until bob has every one of them; returns their ids. */
async function burst(alice: TestClient, bob: TestClient, n: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(await alice.message(bob.jid, `${tag} ${i}`));
  for (const id of ids) await bob.waitFor(isMessage(id), 15_000, `message ${id}`);
  return ids;
}

test('every event of a burst sent while the endpoint is down arrives once it is back, with few duplicates', async () => {
  const [alice, bob] = await pair();
  try {
    await hook.down();
    const start = hook.received.length;
    await burst(alice, bob, 300, 'outage');
    // The endpoint stays down a little while the server keeps retrying.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(hook.received.length, start);
    await hook.up();
    const mine = () => hook.received.slice(start).filter((r) => r.path === '/events');
    await hook.until(() => new Set(mine().map(idOf)).size >= 300, 20_000, '300 distinct webhook-ids');
    const got = mine();
    const distinct = new Set(got.map(idOf));
    assert.equal(distinct.size, 300);
    assert.ok(got.length - distinct.size <= 3, `${got.length - distinct.size} duplicates out of 300`);
    for (const r of got) assert.match(r.body, /^author=alice&server=localhost&receiver=bob&message=outage\+\d+$/);
  } finally {
    await alice.close();
    await bob.close();
  }
});

test('events queued when the server is killed are delivered after it restarts', async () => {
  let [alice, bob] = await pair();
  await hook.down();
  const start = hook.received.length;
  // Once bob has a message, its event is committed: the message waited for it.
  await burst(alice, bob, 100, 'crash');
  await killHard(server);
  await Promise.all([alice.disconnected, bob.disconnected]);
  await alice.close();
  await bob.close();

  const db = openStore(server);
  const queued = Number((db.prepare("SELECT COUNT(*) AS n FROM event_outbox").get() as { n: number }).n);
  db.close();
  assert.equal(queued, 100);

  await restart(server);
  await hook.up();
  const bodies = () => new Set(hook.received.slice(start).filter((r) => r.path === '/events').map((r) => r.body));
  await hook.until(() => bodies().size >= 100, 20_000, '100 distinct events after the restart');
  for (let i = 0; i < 100; i++) assert.ok(bodies().has(`author=alice&server=localhost&receiver=bob&message=crash+${i}`), `event ${i}`);
  [alice, bob] = await pair();
  await alice.close();
  await bob.close();
});
