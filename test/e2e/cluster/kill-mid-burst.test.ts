// A node of a three-node cluster killed with SIGKILL in the middle of a burst
// of cross-node messages, with the event pusher on (PostgreSQL outbox, a real
// webhook on loopback). Users are spread so that every node has senders and
// recipients: sender s<i> is on node i % 3, its recipient r<i> on node
// (i + 1) % 3, so every message crosses nodes, and the killed node both
// sends and receives. Every sender and every recipient uses stream
// management (XEP-0198).
//
// What is counted, precisely:
// - A message "counts" when its sender may take it as accepted: a sender on
//   a surviving node got no error for it (and its node acknowledged it, which
//   the test also checks); a sender on the killed node got the server's <a/>
//   for it (the <a/> waits until the message was routed, after its outbox
//   commit, and, in a cluster, until the recipient's node acknowledged the
//   delivery or the message was stored offline). What the killed node had
//   not acknowledged is not counted: its sender knows it may be lost (the
//   library reports it as failed). This test found that an <a/> used to count
//   messages still waiting for their outbox commit: those were lost when the
//   node died, though acknowledged.
// - Every surviving sender asks once more at the end, and its node must have
//   acknowledged everything it sent.
// - Every counted message to a recipient on a surviving node reached it.
// - Every counted message to a recipient on the killed node reached it live
//   before the kill, or reached it after it logged in again on a survivor,
//   from offline storage. Just before the kill those recipients stop
//   reading, so that the node surely dies holding messages its senders'
//   node was told it took. No exception: a message the killed node had
//   taken and not yet got to its client (in the node's memory, its write
//   buffer, its stream-management buffer, the kernel's socket buffer) was
//   kept by the sender's node, since the recipient's client had not
//   acknowledged it (<a/>); the sender's node routes it again (offline
//   storage) once the killed node is declared dead. A message the client
//   got but whose <a/> died with the node may come twice (reported, not
//   failed on: at least once).
// - Pushes: every counted message has its event accepted by the webhook
//   exactly once (the event is committed before the message is routed), no
//   webhook-id is accepted twice, and the outbox drains. A push accepted by
//   the webhook just before the node died, whose row the node had not yet
//   deleted, would be sent again by a survivor (at-least-once: receivers drop
//   repeats by webhook-id). The test keeps that race out so that "exactly
//   once" is a sharp claim: just before the kill the webhook holds every
//   request unanswered, and the kill waits until no accepted event is left
//   in the outbox; the killed node's held requests die with it and the
//   survivors deliver those events.
// - The survivors keep serving: a new message between them arrives, and its
//   push too.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, xml, type TestClient, type XmlElement } from '../helpers/client.ts';
import type { Petrel } from '../helpers/server.ts';
import { disposeNodes, natsReachable, NATS_UNREACHABLE, prepareNodes, registerAll, startNodes } from '../helpers/nodes.ts';
import { killHard, poolToml } from '../delivery/helpers.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';
import { CountingWebhook } from './webhook.ts';

const pgUp = await pgReachable();
const natsUp = await natsReachable();
const skip = !pgUp ? PG_UNREACHABLE : !natsUp ? NATS_UNREACHABLE : false;

const NODES = 3;
const VICTIM = 2;
const PAIRS = 6;
/** Messages each sender sends at least, before and after the kill together. */
const PER_SENDER = 60;
/** Messages each surviving sender sends after the kill is done. */
const AFTER_KILL = 10;
const NS_SM = 'urn:xmpp:sm:3';

const nodeOfSender = (i: number) => i % NODES;
const nodeOfRecipient = (i: number) => (i + 1) % NODES;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sm {
  enabled: boolean;
  on(e: 'ack' | 'fail', f: (stanza: XmlElement) => void): void;
}
const smOf = (c: TestClient) => (c.xmpp as unknown as { streamManagement: Sm }).streamManagement;

interface Sent {
  pair: number;
  body: string;
  /** performance.now() just before the send. */
  at: number;
}

describe('a cluster node killed with SIGKILL in the middle of a burst', { skip }, () => {
  const hook = new CountingWebhook();
  let db: TestDatabase;
  let nodes: Petrel[] = [];
  const clients: TestClient[] = [];
  const users: Array<[string, string]> = [];
  for (let i = 0; i < PAIRS; i++) users.push([`s${i}`, `pw-s${i}`], [`r${i}`, `pw-r${i}`]);

  const login = async (node: Petrel, user: string, resource?: string) => {
    const c = await connect(node, user, `pw-${user}`, { resource });
    clients.push(c);
    return c;
  };
  const outboxCount = async (where = 'true', values: unknown[] = []) =>
    Number((await db.query<{ n: string }>(`SELECT COUNT(*) AS n FROM petrel_event_outbox WHERE ${where}`, values))[0]!.n);
  const bodyOf = (el: XmlElement) => (el.name === 'message' && el.attrs.type !== 'error' ? el.getChildText('body') : null);

  before(async () => {
    db = await createTestDatabase();
    await hook.up();
    nodes = await prepareNodes({
      n: NODES,
      db,
      cluster: { name: `kmb_${randomBytes(5).toString('hex')}`, heartbeat_interval: 300, heartbeat_timeout: 2000, request_timeout: 2000 },
      extraToml: () => `[modules.mod_stream_management]
${poolToml('http_pool', hook.port, { timeout: 60_000 })}
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
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await disposeNodes(nodes).catch(() => {});
    await hook.down().catch(() => {});
    await db?.drop();
  });

  test('no accepted message and no push is lost, no push is delivered twice, and the survivors keep serving', async (t) => {
    // --- users on every node -------------------------------------------------
    const recipients: TestClient[] = [];
    const senders: TestClient[] = [];
    for (let i = 0; i < PAIRS; i++) {
      const r = await login(nodes[nodeOfRecipient(i)]!, `r${i}`, 'first');
      await r.available();
      const t0 = Date.now();
      while (!smOf(r).enabled) {
        assert.ok(Date.now() - t0 < 5000, `r${i} uses stream management`);
        await sleep(10);
      }
      recipients.push(r);
    }
    for (let i = 0; i < PAIRS; i++) {
      const s = await login(nodes[nodeOfSender(i)]!, `s${i}`);
      // The library enables stream management just after it reports the session online.
      const t0 = Date.now();
      while (!smOf(s).enabled) {
        assert.ok(Date.now() - t0 < 5000, `s${i} uses stream management`);
        await sleep(10);
      }
      senders.push(s);
    }
    // Each sender's node knows its recipient's session (the session events
    // crossed the bus) once a message to the bare JID arrives live; earlier
    // ones may have gone to offline storage and are ignored.
    await Promise.all(
      senders.map(async (s, i) => {
        for (let k = 0; ; k++) {
          assert.ok(k < 20, `r${i} never reachable from s${i}'s node`);
          await s.message(`r${i}@localhost`, `hello ${i}-${k}`);
          try {
            await recipients[i]!.waitFor((el) => bodyOf(el) === `hello ${i}-${k}`, 1000, 'hello');
            break;
          } catch {
            // Not yet: try again.
          }
        }
      }),
    );
    await hook.until(() => hook.acceptedMatching(/message=hello\+/).length >= PAIRS, 20_000, 'the hello events');

    // --- what each client saw ------------------------------------------------
    const sent: Sent[] = [];
    const acked = new Set<string>();
    const failed = new Set<string>();
    const errored = new Set<string>();
    const received = new Map<string, number>();
    senders.forEach((s) => {
      smOf(s).on('ack', (st) => {
        const b = st.getChildText('body');
        if (b !== null) acked.add(b);
      });
      smOf(s).on('fail', (st) => {
        const b = st.getChildText('body');
        if (b !== null) failed.add(b);
      });
      s.xmpp.on('stanza', (el) => {
        if (el.name === 'message' && el.attrs.type === 'error') errored.add(el.getChildText('body') ?? '');
      });
    });
    const onReceived = (el: XmlElement) => {
      const b = bodyOf(el);
      if (b === null || !b.startsWith('burst ')) return;
      received.set(b, (received.get(b) ?? 0) + 1);
    };
    recipients.forEach((r) => r.xmpp.on('stanza', onReceived));

    // --- the burst, and the kill in its middle -------------------------------
    let killDone = false;
    let diedAt = Infinity;
    const victimSenders = new Set<number>();
    for (let i = 0; i < PAIRS; i++) if (nodeOfSender(i) === VICTIM) victimSenders.add(i);
    const burst = senders.map(async (s, i) => {
      let n = 0;
      let after = 0;
      // The killed node's senders send until their node is gone; the others go on until they sent AFTER_KILL after it.
      const more = () => (victimSenders.has(i) ? n < PER_SENDER : n < PER_SENDER || !killDone || after < AFTER_KILL);
      while (more()) {
        if (s.xmpp.status !== 'online') break;
        const body = `burst ${i}-${n}`;
        const at = performance.now();
        try {
          await s.send(xmlMessage(`r${i}@localhost`, body));
          // Asked at once, so that what the node accepted before it died is known (the library waits for a pause otherwise).
          await s.send(xmlR());
        } catch {
          break;
        }
        sent.push({ pair: i, body, at });
        n++;
        if (killDone) after++;
        await sleep(5);
      }
    });
    const kill = (async () => {
      // In the middle: a third of the messages are out.
      while (sent.length < (PAIRS * PER_SENDER) / 3) await sleep(5);
      // The killed node's recipients stop reading (a phone whose network
      // went away): what the node takes for them from now on is on its way
      // to them, in its memory or a socket buffer, and never acknowledged by
      // them; their senders' node has it taken all the same.
      const pausedAt = performance.now();
      for (let i = 0; i < PAIRS; i++) {
        if (nodeOfRecipient(i) === VICTIM) (recipients[i]!.xmpp as unknown as { socket: { pause(): void } }).socket.pause();
      }
      const takenSincePause = () => sent.filter((m) => nodeOfRecipient(m.pair) === VICTIM && m.at > pausedAt && acked.has(m.body)).length;
      const t00 = Date.now();
      while (takenSincePause() < 10) {
        assert.ok(Date.now() - t00 < 10_000, 'the messages to the recipients who stopped reading were taken');
        await sleep(5);
      }
      hook.mode = 'hold';
      // No event the webhook accepted is still in the outbox: none can be sent again.
      const t0 = Date.now();
      while ((await outboxCount('event_id = ANY($1::text[])', [[...hook.accepted.keys()]])) > 0) {
        assert.ok(Date.now() - t0 < 10_000, 'accepted events were not removed from the outbox');
        await sleep(10);
      }
      await killHard(nodes[VICTIM]!);
      diedAt = performance.now();
      killDone = true;
    })();
    await Promise.all([kill, ...burst]);
    const sentAtKill = sent.filter((m) => m.at < diedAt).length;
    t.diagnostic(`${sent.length} messages sent, ${sentAtKill} before the node died`);
    assert.ok(sentAtKill < sent.length, 'messages were sent after the kill');
    hook.release();

    // Survivors' senders: every message acknowledged by their node (ask once more and wait).
    const survivors = senders.filter((_, i) => !victimSenders.has(i));
    await Promise.all(survivors.map((s) => s.send(xmlR())));
    const survivorBodies = sent.filter((m) => !victimSenders.has(m.pair)).map((m) => m.body);
    const t1 = Date.now();
    while (survivorBodies.some((b) => !acked.has(b))) {
      assert.ok(Date.now() - t1 < 15_000, `the survivors acknowledged ${survivorBodies.filter((b) => acked.has(b)).length} of ${survivorBodies.length}`);
      await sleep(50);
      if ((Date.now() - t1) % 1000 < 50) await Promise.all(survivors.map((s) => s.send(xmlR()).catch(() => {})));
    }

    // A survivor cleans up after the dead node, and every survivor takes it
    // out of its table (routing again what it had kept for it); then its
    // recipients log in again on a survivor.
    const down = (l: { what?: unknown; node?: unknown }) => (l.what === 'cluster_node_down' || l.what === 'cluster_node_gone') && l.node === `node${VICTIM}`;
    await Promise.all(nodes.slice(0, VICTIM).map((p) => p.waitForLog(down, 15_000)));
    const counted = sent.filter((m) => (victimSenders.has(m.pair) ? acked.has(m.body) : !errored.has(m.body)));
    const lost = () => counted.filter((m) => !received.has(m.body));
    const loginAgain = async (resource: string) => {
      for (let i = 0; i < PAIRS; i++) {
        if (nodeOfRecipient(i) !== VICTIM) continue;
        const again = await login(nodes[0]!, `r${i}`, resource);
        again.xmpp.on('stanza', onReceived);
        // Offline messages come after the initial presence (before its echo, or just after).
        await again.available();
        await sleep(0);
        recipients[i] = again;
      }
    };
    await loginAgain('again');

    // --- messages ---------------------------------------------------------------
    // Wait until every counted message arrived.
    const waitAll = async (ms: number) => {
      const t2 = Date.now();
      while (lost().length > 0 && Date.now() - t2 < ms) await sleep(50);
    };
    await waitAll(15_000);
    // A message routed again to offline storage just as its recipient logged
    // in (the write racing the login's read) is there at the next login.
    const beforeNextLogin = lost().length;
    if (beforeNextLogin > 0) {
      await loginAgain('third');
      await waitAll(10_000);
    }
    const unacceptable = lost();
    if (unacceptable.length > 0) {
      // What the nodes did with them, for the failure message.
      const whats = (p: Petrel) => {
        const c = new Map<string, number>();
        for (const l of p.logs) if (/^(cluster_|offline|mod_offline)/.test(String(l.what))) c.set(String(l.what), (c.get(String(l.what)) ?? 0) + 1);
        return Object.fromEntries(c);
      };
      t.diagnostic(`logs: ${JSON.stringify(nodes.map(whats))}`);
      t.diagnostic(`failed deliveries: ${JSON.stringify(nodes.flatMap((p) => p.logs.filter((l) => l.what === 'cluster_delivery_failed')).slice(0, 5))}`);
      t.diagnostic(`still offline: ${JSON.stringify(await db.query('SELECT username, COUNT(*) AS n FROM petrel_offline GROUP BY username'))}`);
      t.diagnostic(`lost sent at (ms after death): ${unacceptable.map((m) => Math.round(m.at - diedAt)).join(' ')}`);
    }
    assert.deepEqual(unacceptable.map((m) => m.body), [], 'counted messages that were lost');
    const dup = [...received].filter(([, n]) => n > 1).map(([b]) => b);
    t.diagnostic(
      `counted ${counted.length} (of them from the killed node's senders, acknowledged: ${counted.filter((m) => victimSenders.has(m.pair)).length}; ` +
        `not acknowledged there: ${sent.filter((m) => victimSenders.has(m.pair) && !acked.has(m.body)).length}); ` +
        `arrived only at the next login: ${beforeNextLogin}; received twice: ${dup.length}; errors: ${errored.size}; ` +
        `routed again when the node died: ${nodes.slice(0, VICTIM).map((p) => p.logs.filter(down).map((l) => Number(l.rerouted ?? 0)).reduce((a, b) => a + b, 0)).join('+')}`,
    );
    assert.equal(errored.size, 0, 'no sender got an error');

    // --- the survivors keep serving -------------------------------------------
    const s0 = senders[0]!; // node 0; its recipient r0 is on node 1
    await s0.message('r0@localhost', 'after the kill');
    await recipients[0]!.waitFor((el) => bodyOf(el) === 'after the kill', 10_000, 'the message after the kill');

    // --- pushes ------------------------------------------------------------------
    const pushed = (body: string) => `message=${encodeURIComponent(body).replace(/%20/g, '+')}`;
    const acceptedBodies = () => new Set([...hook.accepted.keys()].map((id) => hook.bodyOf.get(id)!.replace(/^.*&message=/, 'message=')));
    const wanted = [...counted.map((m) => pushed(m.body)), pushed('after the kill')];
    await hook.until(() => {
      const a = acceptedBodies();
      return wanted.every((w) => a.has(w));
    }, 30_000, `the ${wanted.length} pushes of counted messages`);
    const t3 = Date.now();
    while ((await outboxCount()) > 0) {
      assert.ok(Date.now() - t3 < 20_000, 'the outbox did not drain');
      await sleep(50);
    }
    assert.deepEqual(hook.duplicates(), [], 'no webhook-id accepted twice');
    // One accepted event per message (a message is one event: no two webhook-ids for one body).
    const perBody = new Map<string, number>();
    for (const id of hook.accepted.keys()) {
      const b = hook.bodyOf.get(id)!;
      perBody.set(b, (perBody.get(b) ?? 0) + 1);
    }
    assert.deepEqual([...perBody].filter(([, n]) => n > 1), [], 'no message pushed under two webhook-ids');
    t.diagnostic(`pushes accepted ${hook.accepted.size}; requests abandoned by the killed node ${hook.aborted.length}; refused while held ${hook.refused}`);
  });
});

function xmlMessage(to: string, body: string): XmlElement {
  return xml('message', { to, type: 'chat', id: `b-${body.replace(/\s/g, '-')}` }, xml('body', {}, body));
}

/** A stream-management request: the server answers with its count of handled stanzas. */
function xmlR(): XmlElement {
  return xml('r', { xmlns: NS_SM });
}
