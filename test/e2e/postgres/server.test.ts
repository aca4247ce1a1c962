// A server whose every store is PostgreSQL: accounts registered with the
// command-line tool, logins with @xmpp/client, rosters, offline messages,
// and the event pusher's outbox, delivered to a real webhook through an
// outage and a SIGKILL, with `petrel deliveries` reading the same tables.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { preparePetrel, runCli, tempDir, type Petrel } from '../helpers/server.ts';
import { connect, isMessage, xml, type TestClient } from '../helpers/client.ts';
import { Webhook, idOf, killHard, poolToml, restart } from '../delivery/helpers.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from './db.ts';

const reachable = await pgReachable();

const NS_ROSTER = 'jabber:iq:roster';

describe('a server with every store in PostgreSQL', { skip: reachable ? false : PG_UNREACHABLE }, () => {
  const hook = new Webhook();
  let db: TestDatabase;
  let server: Petrel;
  const clients: TestClient[] = [];

  const login = async (user: string) => {
    const c = await connect(server, user, `pw-${user}`);
    clients.push(c);
    return c;
  };
  const closeAll = async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  };
  const count = async (table: string, where = 'true', values: unknown[] = []) =>
    Number((await db.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`, values))[0]!.n);
  /** Waits until `count(...)` is `n`: the server writes settle ops with its next batch, a moment after it logs them. */
  const countReaches = async (n: number, table: string, where = 'true', values: unknown[] = []) => {
    const t0 = Date.now();
    let got: number;
    while ((got = await count(table, where, values)) !== n) {
      assert.ok(Date.now() - t0 < 5000, `${table} where ${where}: ${got} rows, expected ${n}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  before(async () => {
    db = await createTestDatabase();
    await hook.up();
    server = await preparePetrel({
      extraToml: `${db.toml}
${poolToml('http_pool', hook.port)}
[modules.mod_event_pusher]
  outbox_backend = "rdbms"
  [[modules.mod_event_pusher.backend.http]]
    pool_name = "http_pool"
    path = "/events"
    [modules.mod_event_pusher.backend.http.retry]
      max_attempts = 1000
      initial_delay = 20
      max_delay = 200
  [[modules.mod_event_pusher.backend.http]]
    pool_name = "http_pool"
    path = "/picky"
    [modules.mod_event_pusher.backend.http.retry]
      max_attempts = 1
`,
    });
    // The harness writes the embedded store's sections; point them at PostgreSQL instead.
    const toml = (await readFile(server.configPath, 'utf8'))
      .replace('[auth.internal]', '[auth.rdbms]')
      .replace('[modules.mod_roster]\n', '[modules.mod_roster]\n  backend = "rdbms"\n')
      .replace('[modules.mod_offline]\n', '[modules.mod_offline]\n  backend = "rdbms"\n');
    await writeFile(server.configPath, toml);
    // The first answer refuses every event it gets; a replay then goes through.
    hook.script('/picky', ({ n }) => ({ status: n === 0 ? 400 : 200 }));
  });

  after(async () => {
    await closeAll();
    await server?.dispose().catch(() => {});
    await hook.down().catch(() => {});
    await db?.drop();
  });

  test('petrel register writes the account to PostgreSQL, and nothing to the data directory', async () => {
    for (const u of ['alice', 'bob', 'carol']) await server.register(u, `pw-${u}`);
    const again = await server.cli(['register', 'alice', 'localhost', 'x']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
    assert.deepEqual((await db.query('SELECT username FROM petrel_users ORDER BY username')).map((r) => r.username), ['alice', 'bob', 'carol']);
    assert.equal(existsSync(join(server.dir, 'data', 'petrel.sqlite')), false);
  });

  test('the server starts on PostgreSQL and names its stores; users log in with SCRAM', async () => {
    await server.start();
    const started = await server.waitForLog((l) => l.what === 'server_started');
    assert.deepEqual(started.stores, { accounts: 'rdbms', mod_roster: 'rdbms', mod_offline: 'rdbms', mod_event_pusher: 'rdbms' });
    const alice = await login('alice');
    assert.equal(alice.bare, 'alice@localhost');
    await assert.rejects(connect(server, 'alice', 'wrong'), /not-authorized/);
    await closeAll();
  });

  test('a roster item set by a client is a row in petrel_roster and comes back in the next roster get', async () => {
    const alice = await login('alice');
    await alice.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: NS_ROSTER }, xml('item', { jid: 'bob@localhost', name: 'Bob' }, xml('group', {}, 'Friends')))));
    assert.deepEqual(await db.query('SELECT contact, name, groups FROM petrel_roster WHERE username = $1', ['alice']), [
      { contact: 'bob@localhost', name: 'Bob', groups: ['Friends'] },
    ]);
    const reply = await alice.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: NS_ROSTER })));
    const items = reply.getChild('query', NS_ROSTER)!.getChildren('item');
    assert.deepEqual(items.map((i) => [i.attrs.jid, i.attrs.name]), [['bob@localhost', 'Bob']]);
    await closeAll();
  });

  test('a message to an offline user waits in petrel_offline and is handed over at its next login', async () => {
    const alice = await login('alice');
    const id = await alice.message('carol@localhost', 'while you were out');
    await countReaches(1, 'petrel_offline', 'username = $1', ['carol']);
    const carol = await login('carol');
    await carol.available();
    const got = await carol.waitFor(isMessage(id));
    assert.equal(got.getChildText('body'), 'while you were out');
    assert.ok(got.getChild('delay', 'urn:xmpp:delay'));
    assert.equal(await count('petrel_offline', 'username = $1', ['carol']), 0);
    await closeAll();
  });

  test('events queued in PostgreSQL while the endpoint is down survive a SIGKILL and are all delivered after the restart', async () => {
    const alice = await login('alice');
    const bob = await login('bob');
    await hook.down();
    const start = hook.received.length;
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push(await alice.message(bob.jid, `crash ${i}`));
    // A message reaches bob only once its events are committed (the outbox barrier).
    for (const id of ids) await bob.waitFor(isMessage(id), 10_000, `message ${id}`);
    await killHard(server);
    await Promise.all(clients.map((c) => c.disconnected));
    await closeAll();

    assert.equal(await count('petrel_event_outbox', "handler = 'http_pool:/events:mod_event_pusher_http_defaults' AND position('message=crash+'::bytea in payload) > 0"), 50);
    const summary = await server.cli(['deliveries']);
    assert.equal(summary.code, 0, summary.stderr);
    assert.match(summary.stdout, /^0 http_pool:\/events:mod_event_pusher_http_defaults\s+50\s+\d+\s+\d+\s+0$/m);

    await restart(server);
    await hook.up();
    const bodies = () => new Set(hook.received.slice(start).filter((r) => r.path === '/events').map((r) => r.body));
    await hook.until(() => bodies().size >= 50, 15_000, '50 distinct events after the restart');
    for (let i = 0; i < 50; i++) assert.ok(bodies().has(`author=alice&server=localhost&receiver=bob&message=crash+${i}`), `event ${i}`);
    await countReaches(0, 'petrel_event_outbox', "handler = 'http_pool:/events:mod_event_pusher_http_defaults'");
  });

  test('an event refused with 400 is dead-lettered in PostgreSQL, listed and replayed with petrel deliveries', async () => {
    const alice = await login('alice');
    const bob = await login('bob');
    const id = await alice.message(bob.jid, 'picky one');
    await bob.waitFor(isMessage(id));
    const picky = () => hook.on('/picky').filter((r) => r.body.includes('picky+one'));
    await hook.until(() => picky().length === 1);
    const wid = idOf(picky()[0]!);
    await server.waitForLog((l) => l.what === 'event_pusher_dead_lettered' && l.webhook_id === wid);
    await countReaches(1, 'petrel_event_dead_letter', 'event_id = $1', [wid]);

    const list = await server.cli(['deliveries', 'dead-letter', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^${wid}  http_pool:/picky:mod_event_pusher_http_defaults  attempts=1  error="HTTP 400"`, 'm'));
    const replay = await server.cli(['deliveries', 'dead-letter', 'replay', wid]);
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stdout, /Replayed 1 dead-lettered event/);
    await hook.until(() => picky().some((r) => r.status === 200), 10_000, 'the replayed event');
    assert.equal(idOf(picky().at(-1)!), wid);
    await countReaches(0, 'petrel_event_dead_letter', 'event_id = $1', [wid]);
    await closeAll();
  });

  test('petrel unregister removes the account with its roster and offline messages', async () => {
    const bob = await login('bob');
    await bob.message('alice@localhost', 'for later');
    await countReaches(1, 'petrel_offline', 'username = $1', ['alice']);
    await closeAll();
    assert.equal(await count('petrel_roster', 'username = $1', ['alice']), 1);
    await server.unregister('alice');
    assert.equal(await count('petrel_users', 'username = $1', ['alice']), 0);
    assert.equal(await count('petrel_roster', 'username = $1', ['alice']), 0);
    assert.equal(await count('petrel_offline', 'username = $1', ['alice']), 0);
    await assert.rejects(connect(server, 'alice', 'pw-alice'), /not-authorized/);
  });
});

test('check-config names the option when a store is "rdbms" and no rdbms pool is configured', async () => {
  const dir = await tempDir();
  try {
    const file = join(dir, 'petrel.toml');
    await writeFile(file, '[general]\n  hosts = ["localhost"]\n[modules.mod_roster]\n  backend = "rdbms"\n');
    const r = await runCli(['check-config', '-c', file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /modules\.mod_roster\.backend: "rdbms" needs an \[outgoing_pools\.rdbms\.default\] pool/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
