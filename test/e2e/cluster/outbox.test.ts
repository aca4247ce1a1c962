// Three Petrel processes on one PostgreSQL database share the event pusher's
// outbox (petrel_event_outbox): each appends the events of its own users,
// and all of them claim due rows (FOR UPDATE SKIP LOCKED), so an event is
// taken by one process at a time. What is checked here, with a real webhook
// on loopback that records every webhook-id it accepts:
// - every event is accepted exactly once by the webhook across the three
//   processes, though some first attempts are answered 503;
// - events a process had claimed and was sending when it was killed with
//   SIGKILL are delivered by the others (its connections leave
//   pg_stat_activity as the kernel closes its sockets, and the others' sweep
//   puts its claims back in the queue);
// - `petrel deliveries -c FILE` with any node's config counts the events of
//   the whole cluster, the dead node's config included.
//
// None of this needs the cluster core: the nodes do not route to each other;
// each user's messages go to a user on the same node.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, isMessage, type TestClient } from '../helpers/client.ts';
import type { Petrel } from '../helpers/server.ts';
import { disposeNodes, prepareNodes, registerAll, startNodes } from '../helpers/nodes.ts';
import { killHard, poolToml } from '../delivery/helpers.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';
import { CountingWebhook, refuseFirstOfEveryThird } from './webhook.ts';

const reachable = await pgReachable();

const HANDLER_ROW = /^0 http_pool:\/events:mod_event_pusher_http_defaults\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$/m;

describe('three servers sharing one PostgreSQL outbox', { skip: reachable ? false : PG_UNREACHABLE }, () => {
  const hook = new CountingWebhook();
  let db: TestDatabase;
  let nodes: Petrel[] = [];
  const clients: TestClient[] = [];
  /** Two users per node: a<i> sends, b<i> receives. */
  const users: Array<[string, string]> = [0, 1, 2].flatMap((i) => [[`a${i}`, `pw-a${i}`], [`b${i}`, `pw-b${i}`]] as Array<[string, string]>);

  const login = async (node: Petrel, user: string) => {
    const c = await connect(node, user, `pw-${user}`);
    clients.push(c);
    return c;
  };
  const count = async (where = 'true') => Number((await db.query<{ n: string }>(`SELECT COUNT(*) AS n FROM petrel_event_outbox WHERE ${where}`))[0]!.n);
  /** Waits until the outbox holds no row: nothing is left that could still be delivered (again). */
  const drained = async (timeoutMs = 20_000) => {
    const t0 = Date.now();
    let n: number;
    while ((n = await count()) !== 0) {
      assert.ok(Date.now() - t0 < timeoutMs, `the outbox still holds ${n} event(s)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  /** Each sender on the given nodes sends `perSender` messages to its node's receiver; resolves once all arrived (so each event is committed). */
  const burst = async (on: number[], perSender: number, tag: string) => {
    await Promise.all(
      on.map(async (i) => {
        const a = await login(nodes[i]!, `a${i}`);
        const b = await login(nodes[i]!, `b${i}`);
        const ids: string[] = [];
        for (let k = 0; k < perSender; k++) ids.push(await a.message(b.jid, `${tag} ${i}-${k}`));
        for (const id of ids) await b.waitFor(isMessage(id), 15_000, `message ${id}`);
      }),
    );
  };
  const closeAll = async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  };
  const deliveries = async (p: Petrel) => {
    const r = await p.cli(['deliveries']);
    assert.equal(r.code, 0, r.stderr);
    const m = HANDLER_ROW.exec(r.stdout);
    assert.ok(m, `no row for the handler in:\n${r.stdout}`);
    return { queued: Number(m[1]), inFlight: Number(m[2]), retrying: Number(m[3]), dead: Number(m[4]) };
  };

  before(async () => {
    db = await createTestDatabase();
    await hook.up();
    nodes = await prepareNodes({
      n: 3,
      db,
      // No client-side timeout while the webhook holds requests: an abandoned request is not what is tested here.
      extraToml: () => `${poolToml('http_pool', hook.port, { timeout: 60_000 })}
[modules.mod_event_pusher]
  outbox_backend = "rdbms"
  [[modules.mod_event_pusher.backend.http]]
    pool_name = "http_pool"
    path = "/events"
    [modules.mod_event_pusher.backend.http.retry]
      max_attempts = 1000
      initial_delay = 20
      max_delay = 200
`,
    });
    await registerAll(nodes, users);
    await startNodes(nodes);
  });

  after(async () => {
    await closeAll();
    await disposeNodes(nodes).catch(() => {});
    await hook.down().catch(() => {});
    await db?.drop();
  });

  test('every event of users on three servers is delivered exactly once, though the webhook refuses some first attempts with 503', async () => {
    hook.refuse = refuseFirstOfEveryThird;
    const perSender = 40;
    await burst([0, 1, 2], perSender, 'once');
    const once = () => hook.acceptedMatching(/message=once\+/);
    await hook.until(() => once().length === 3 * perSender, 30_000, `${3 * perSender} accepted events`);
    await drained();
    await closeAll();

    assert.ok(hook.refused > 0, 'the webhook refused some attempts');
    assert.deepEqual(hook.duplicates(), [], 'no webhook-id accepted twice');
    // One webhook-id per event, and every event there.
    const bodies = once().map((id) => hook.bodyOf.get(id)!);
    assert.equal(new Set(bodies).size, 3 * perSender);
    for (const i of [0, 1, 2]) {
      for (let k = 0; k < perSender; k++) assert.ok(bodies.includes(`author=a${i}&server=localhost&receiver=b${i}&message=once+${i}-${k}`), `event ${i}-${k}`);
    }
    hook.refuse = () => false;
  });

  test('petrel deliveries with any node\'s config counts the events of all three servers', async () => {
    // Every attempt refused: the events stay queued (retrying) until the webhook answers again.
    hook.refuse = () => true;
    const perSender = 10;
    await burst([0, 1, 2], perSender, 'counted');
    await closeAll();
    for (const p of nodes) {
      const c = await deliveries(p);
      assert.equal(c.queued, 3 * perSender, `queued, seen with ${p.configPath}`);
      assert.equal(c.dead, 0);
    }
    hook.refuse = () => false;
    await hook.until(() => hook.acceptedMatching(/message=counted\+/).length === 3 * perSender, 20_000, 'the counted events');
    await drained();
    for (const p of nodes) assert.deepEqual(await deliveries(p), { queued: 0, inFlight: 0, retrying: 0, dead: 0 });
    assert.deepEqual(hook.duplicates(), []);
  });

  test('events a server was sending when it was killed with SIGKILL are delivered by the other servers, once each', async () => {
    const victim = nodes[2]!;
    const outboxConns = async () =>
      Number((await db.query<{ n: string }>(`SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'petrel-outbox %'`, [db.name]))[0]!.n);
    const before = await outboxConns();

    // The webhook takes the requests and does not answer: whoever claimed them keeps them claimed.
    hook.mode = 'hold';
    const perSender = 20;
    await burst([2], perSender, 'killed');
    // The victim was told of its own rows at once; it has some of them on the wire.
    await hook.until(() => hook.held > 0, 10_000, 'held requests');
    const claimed = await count('claimed_by IS NOT NULL');
    assert.ok(claimed > 0, 'some events are claimed');

    await killHard(victim);
    await Promise.all(clients.map((c) => c.disconnected));
    await closeAll();
    // The kernel closed the dead process's sockets: the webhook saw its requests abandoned...
    await hook.until(() => hook.aborted.some((id) => /message=killed\+/.test(hook.bodyOf.get(id) ?? '')), 10_000, 'an abandoned request of the killed server');
    // ...and PostgreSQL ended its backends, so its outbox connections left pg_stat_activity.
    const t0 = Date.now();
    while ((await outboxConns()) >= before) {
      assert.ok(Date.now() - t0 < 10_000, 'the killed server\'s outbox connections are still in pg_stat_activity');
      await new Promise((r) => setTimeout(r, 50));
    }

    // Requests the survivors hold are answered 503 (not accepted); from now on everything is accepted.
    hook.release();
    const killed = () => hook.acceptedMatching(/message=killed\+/);
    // The survivors' sweep (every 10 s) puts the dead server's claims back; their poll (every second) takes them.
    await hook.until(() => killed().length === perSender, 30_000, `the ${perSender} events of the killed server`);
    await drained();
    assert.deepEqual(hook.duplicates(), [], 'no webhook-id accepted twice');
    const bodies = new Set(killed().map((id) => hook.bodyOf.get(id)));
    for (let k = 0; k < perSender; k++) assert.ok(bodies.has(`author=a2&server=localhost&receiver=b2&message=killed+2-${k}`), `event 2-${k}`);
    const released = nodes.slice(0, 2).flatMap((p) => p.logs.filter((l) => l.what === 'event_pusher_outbox_claims_released'));
    assert.ok(released.length > 0, 'a survivor logged that it put claims of a server that is gone back in the queue');

    // The dead server's config still reads the cluster's outbox.
    assert.deepEqual(await deliveries(victim), { queued: 0, inFlight: 0, retrying: 0, dead: 0 });
  });
});
