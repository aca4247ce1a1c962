// The outbox is bounded by bytes as well as events, and one user cannot fill
// it for everyone: past a sender's share its messages bounce with
// resource-constraint (the sender is told, the message is not routed), while
// other users' messages and events go on. These are the last resort: flow
// control (test/e2e/pusher/flow-control.test.ts), which would slow the
// sender down before, is off here (outbox_high_water_bytes =
// outbox_max_bytes). The in-memory queue of a
// best_effort handler is bounded by bytes too. Both outbox stores, a real
// server process, real clients, a real webhook, metrics scraped over HTTP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { freePort, startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, errorCondition, isMessage, settle, xml, type TestClient, type XmlElement } from '../helpers/client.ts';
import { Webhook, poolToml } from '../delivery/helpers.ts';
import { prometheusToml, sampleValue, scrape } from '../pusher/helpers.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';

const reachable = await pgReachable();

/** Sends a chat message with this id and body. */
async function send(c: TestClient, to: string, id: string, body: string): Promise<void> {
  await c.send(xml('message', { to, type: 'chat', id }, xml('body', {}, body)));
}

const isError = (id: string) => (el: XmlElement) => el.name === 'message' && el.attrs.type === 'error' && el.attrs.id === id;

for (const store of ['internal', 'rdbms'] as const) {
  describe(`outbox bounds with the ${store === 'internal' ? 'SQLite' : 'PostgreSQL'} outbox`, { skip: store === 'rdbms' && !reachable ? PG_UNREACHABLE : false }, () => {
    const hook = new Webhook();
    let db: TestDatabase | undefined;
    const servers: Petrel[] = [];
    const clients: TestClient[] = [];
    let metricsPort = 0;

    before(async () => {
      await hook.up();
      // Nothing is delivered while a test fills the outbox: each first attempt fails and waits ten minutes.
      hook.script('/events', () => ({ status: 503 }));
      if (store === 'rdbms') db = await createTestDatabase();
    });
    after(async () => {
      await Promise.all(clients.splice(0).map((c) => c.close()));
      for (const s of servers) await s.dispose();
      await hook.down().catch(() => {});
      await db?.drop();
    });

    const start = async (moduleOptions: string): Promise<Petrel> => {
      if (db !== undefined) await db.query('DROP TABLE IF EXISTS petrel_event_outbox, petrel_event_dead_letter, petrel_schema_version CASCADE');
      metricsPort = await freePort();
      const s = await startPetrel({
        users: [['alice', 'pw'], ['mallory', 'pw'], ['bob', 'pw']],
        extraToml: `${db?.toml ?? ''}
${prometheusToml(metricsPort)}
${poolToml('http_pool', hook.port)}
[modules.mod_event_pusher]
  outbox_backend = "${store}"
${moduleOptions}
  [modules.mod_event_pusher.backend.http]
    pool_name = "http_pool"
    path = "/events"
    [modules.mod_event_pusher.backend.http.retry]
      max_attempts = 5
      initial_delay = 600000
      max_delay = 600000
`,
      });
      servers.push(s);
      return s;
    };
    const login = async (s: Petrel, user: string) => {
      const c = await connect({ port: s.port }, user, 'pw');
      clients.push(c);
      return c;
    };
    const stop = async (s: Petrel) => {
      await Promise.all(clients.splice(0).map((c) => c.close()));
      await s.dispose();
      servers.splice(servers.indexOf(s), 1);
    };
    const sample = async (name: string) => sampleValue(await scrape(metricsPort), name, { host_type: 'localhost', handler: '0' }) ?? 0;

    test("past a sender's share of events its messages bounce with resource-constraint, and other senders' messages and events go on", async () => {
      const s = await start('  outbox_max_events_per_user = 3\n  outbox_high_water_bytes = 1073741824');
      const [alice, mallory, bob] = [await login(s, 'alice'), await login(s, 'mallory'), await login(s, 'bob')];
      for (let i = 0; i < 3; i++) {
        await send(mallory, bob.jid, `m${i}`, `flood ${i}`);
        await bob.waitFor(isMessage(`m${i}`));
      }
      await send(mallory, bob.jid, 'm3', 'flood 3');
      const err = await mallory.waitFor(isError('m3'));
      assert.equal(errorCondition(err), 'resource-constraint');
      assert.equal(err.getChild('error')?.attrs.type, 'wait');
      assert.match(err.getChild('error')?.getChildText('text', 'urn:ietf:params:xml:ns:xmpp-stanzas') ?? '', /event queue is full/);
      // Alice is another sender: her messages are routed and their events stored (two, and the marker of settle()).
      for (let i = 0; i < 2; i++) {
        await send(alice, bob.jid, `a${i}`, `bystander ${i}`);
        await bob.waitFor(isMessage(`a${i}`));
      }
      await settle(alice, bob);
      assert.equal(bob.take(isMessage('m3')).length, 0, 'the bounced message was not routed');
      await hook.until(() => hook.on('/events').filter((r) => r.body.startsWith('author=alice&')).length === 3, 15_000, "alice's three events");
      assert.equal(await sample('petrel_event_pusher_outbox_user_rejected_total'), 1);
      const line = await s.waitForLog((l) => l.what === 'event_pusher_outbox_user_full');
      assert.equal(line.user, 'mallory@localhost');
      await stop(s);
    });

    test("past a sender's share of bytes its messages bounce, and a small message of another sender is still taken", async () => {
      const s = await start('  outbox_max_bytes_per_user = 4096\n  outbox_high_water_bytes = 1073741824');
      const [alice, mallory, bob] = [await login(s, 'alice'), await login(s, 'mallory'), await login(s, 'bob')];
      const big = 'b'.repeat(3000);
      await send(mallory, bob.jid, 'big0', big);
      await bob.waitFor(isMessage('big0'));
      await send(mallory, bob.jid, 'big1', big);
      assert.equal(errorCondition(await mallory.waitFor(isError('big1'))), 'resource-constraint');
      await send(alice, bob.jid, 'small', 'small one');
      await bob.waitFor(isMessage('small'));
      await hook.until(() => hook.on('/events').some((r) => r.body.endsWith('message=small+one')), 15_000, "alice's event");
      await stop(s);
    });

    test('past outbox_max_bytes new events are refused with a metric and a log line, and messages are still routed', async () => {
      const s = await start('  outbox_max_bytes = 8192\n  outbox_high_water_bytes = 8192');
      const [alice, bob] = [await login(s, 'alice'), await login(s, 'bob')];
      const body = 'c'.repeat(3000);
      for (let i = 0; i < 4; i++) {
        await send(alice, bob.jid, `c${i}`, body);
        await bob.waitFor(isMessage(`c${i}`));
      }
      // Two of 3 KB fit in 8 KiB with their headers, the third does not.
      assert.equal(await sample('petrel_event_pusher_outbox_rejected_total'), 2);
      const line = await s.waitForLog((l) => l.what === 'event_pusher_outbox_full');
      assert.equal(line.outbox_max_bytes, 8192);
      await stop(s);
    });
  });
}

describe('the best_effort queue', () => {
  // An endpoint that holds every request until told to answer.
  const held: http.ServerResponse[] = [];
  let seen = 0;
  const slow = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen++;
      held.push(res);
    });
  });
  let server: Petrel;

  before(async () => {
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    server = await startPetrel({
      users: [['alice', 'pw'], ['bob', 'pw']],
      extraToml: `
${poolToml('slow', (slow.address() as AddressInfo).port, { workers: 1, timeout: 0 })}
[modules.mod_event_pusher]
  best_effort_max_bytes = 4096
  [modules.mod_event_pusher.backend.http]
    pool_name = "slow"
    path = "/slow"
    delivery = "best_effort"
`,
    });
  });
  after(async () => {
    for (const res of held.splice(0)) res.writeHead(200).end();
    await server?.dispose();
    slow.closeAllConnections();
    await new Promise<void>((r) => slow.close(() => r()));
  });

  test('is bounded by bytes: past best_effort_max_bytes waiting, new notifications are dropped and logged', async () => {
    const alice = await connect({ port: server.port }, 'alice', 'pw');
    const bob = await connect({ port: server.port }, 'bob', 'pw');
    try {
      // One request in flight (one connection, held), the others wait in memory: 4096 bytes hold two bodies of 1500.
      const body = 'd'.repeat(1500);
      for (let i = 0; i < 8; i++) {
        await send(alice, bob.jid, `d${i}`, body + i);
        await bob.waitFor(isMessage(`d${i}`));
      }
      const line = await server.waitForLog((l) => l.what === 'event_pusher_http_dropped', 15_000);
      assert.equal(line.reason, 'queue_full');
      // Released, the endpoint gets the one in flight and the two that waited; the five others were dropped.
      const t0 = Date.now();
      while (seen < 3 && Date.now() - t0 < 15_000) {
        for (const res of held.splice(0)) res.writeHead(200).end();
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const res of held.splice(0)) res.writeHead(200).end();
      await settle(alice, bob);
      assert.equal(seen, 3);
      const dropped = server.logs.filter((l) => l.what === 'event_pusher_http_dropped').reduce((n, l) => n + Number(l.dropped), 0);
      assert.ok(dropped >= 1 && dropped <= 5, `${dropped} dropped in the log lines so far`);
    } finally {
      await alice.close();
      await bob.close();
    }
  });
});
