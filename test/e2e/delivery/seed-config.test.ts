// MongooseIM's documented example, copied as written (only the host points at
// the test's listener, over plain HTTP), still works with the outbox
// underneath: the event is stored, sent, and removed once delivered.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, isMessage } from '../helpers/client.ts';
import { Webhook, openStore } from './helpers.ts';

const hook = new Webhook();
let server: Petrel;

before(async () => {
  await hook.up();
  server = await startPetrel({
    users: [['alice', 'pw'], ['bob', 'pw']],
    extraToml: `
[outgoing_pools.http.http_pool]
  scope = "global"
  workers = 50

  [outgoing_pools.http.http_pool.connection]
    host = "http://127.0.0.1:${hook.port}"
    path_prefix = "/webservice"
    request_timeout = 2000

[modules.mod_event_pusher.backend.http]
  pool_name = "http_pool"
  path = "/notifications"
`,
  });
});

after(async () => {
  await server?.dispose();
  await hook.down().catch(() => {});
});

test('the documented example configuration delivers through the outbox', async () => {
  const alice = await connect({ port: server.port }, 'alice', 'pw');
  const bob = await connect({ port: server.port }, 'bob', 'pw');
  try {
    const id = await alice.message(bob.jid, 'Hi Test!&escape=Hello');
    await bob.waitFor(isMessage(id));
    await hook.until(() => hook.on('/webservice/notifications').length === 1);
    const r = hook.on('/webservice/notifications')[0]!;
    assert.equal(r.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(r.body, 'author=alice&server=localhost&receiver=bob&message=Hi+Test%21%26escape%3DHello');
    assert.match(String(r.headers['webhook-id']), /^msg_[A-Za-z0-9_-]{22}$/);
  } finally {
    await alice.close();
    await bob.close();
  }
  // The row went through the outbox table (AUTOINCREMENT keeps the last id given)
  // and was deleted once delivered.
  const db = openStore(server);
  try {
    await waitFor(() => Number((db.prepare('SELECT COUNT(*) AS n FROM event_outbox').get() as { n: number }).n) === 0);
    const seq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'event_outbox'").get() as { seq: number } | undefined;
    assert.equal(Number(seq?.seq), 1);
  } finally {
    db.close();
  }
  const summary = await server.cli(['deliveries']);
  assert.equal(summary.code, 0, summary.stderr);
  assert.match(summary.stdout, /^0 http_pool:\/notifications:mod_event_pusher_http_defaults\s+0\s+0\s+0\s+0$/m);
});

async function waitFor(pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
