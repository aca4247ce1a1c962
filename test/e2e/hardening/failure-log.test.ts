// Failed attempts are logged at most once a second per handler; the others
// of that second are not lost: a summary line gives their number when the
// second ends. A real server process and a real webhook that answers 503.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, isMessage } from '../helpers/client.ts';
import { Webhook, poolToml } from '../delivery/helpers.ts';

const hook = new Webhook();
let server: Petrel;
const BURST = 20;

before(async () => {
  await hook.up();
  hook.script('/events', () => ({ status: 503 }));
  server = await startPetrel({
    users: [['alice', 'pw'], ['bob', 'pw']],
    extraToml: `
${poolToml('http_pool', hook.port)}
[modules.mod_event_pusher.backend.http]
  pool_name = "http_pool"
  path = "/events"
  [modules.mod_event_pusher.backend.http.retry]
    max_attempts = 5
    initial_delay = 600000
    max_delay = 600000
`,
  });
});

after(async () => {
  await server?.dispose();
  await hook.down().catch(() => {});
});

test('after a burst of failed attempts the log has a summary line counting those not logged one by one', async () => {
  const alice = await connect({ port: server.port }, 'alice', 'pw');
  const bob = await connect({ port: server.port }, 'bob', 'pw');
  try {
    const ids: string[] = [];
    for (let i = 0; i < BURST; i++) ids.push(await alice.message(bob.jid, `burst ${i}`));
    for (const id of ids) await bob.waitFor(isMessage(id));
    await hook.until(() => hook.on('/events').length >= BURST, 15_000, `${BURST} failed attempts`);
    // Each event failed once and waits ten minutes for its next attempt.
    const summary = await server.waitForLog((l) => l.what === 'event_pusher_http_failed_suppressed', 5000);
    assert.equal(summary.handler, 0);
    // Every failure is in the log: one by one or counted in a summary.
    const one = () => server.logs.filter((l) => l.what === 'event_pusher_http_failed').length;
    const counted = () => one() + server.logs.filter((l) => l.what === 'event_pusher_http_failed_suppressed').reduce((n, l) => n + Number(l.suppressed), 0);
    // Backoff has full jitter: now and then an event's second attempt comes at once, so
    // the attempts are those the webhook received, at least one per event.
    const attempts = () => hook.on('/events').length;
    const t0 = Date.now();
    while (counted() < attempts() && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 100));
    assert.ok(one() >= 1, 'the first failure is logged at once');
    assert.ok(Number(summary.suppressed) >= 1);
    assert.ok(attempts() >= BURST);
    assert.equal(counted(), attempts());
  } finally {
    await alice.close();
    await bob.close();
  }
});
