// How answers of the endpoint are treated (retry, final failure, 410, 429 with
// Retry-After), the dead-letter table and its commands, and Standard Webhooks
// signatures checked by an independent implementation. One server, one
// handler per behaviour; each message goes to every handler.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { freePort, startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, isMessage, type TestClient } from '../helpers/client.ts';
import { Webhook, idOf, openStore, poolToml, type Answer, type Script } from './helpers.ts';
import { payloadDecoder } from '../../../src/modules/mod_event_pusher/http/payload.ts';

const hook = new Webhook();
let server: Petrel;
let alice: TestClient;
let bob: TestClient;
let metricsPort = 0;

const SECRET_A = 'whsec_' + Buffer.from('first secret key of thirty-two b').toString('base64');
const SECRET_B = 'whsec_' + Buffer.from('second secret key, 32 bytes long').toString('base64');

function handler(path: string, extra = ''): string {
  return `
[[modules.mod_event_pusher.backend.http]]
  path = "${path}"
  callback_module = "mod_event_pusher_http_json"
  [modules.mod_event_pusher.backend.http.retry]
    initial_delay = 10
    max_delay = 50
${extra}`;
}

before(async () => {
  await hook.up();
  metricsPort = await freePort();
  const toml = `
[[listen.http]]
  port = ${metricsPort}
  ip_address = "127.0.0.1"
  [[listen.http.handlers.mongoose_prometheus_handler]]
    host = "_"
    path = "/metrics"

${poolToml('http_pool', hook.port)}
${handler('/flaky')}
${handler('/moved')}
${handler('/gone')}
${handler('/busy')}
${handler('/dead', '    max_attempts = 2')}
${handler('/signed', `  [modules.mod_event_pusher.backend.http.signing]
    secrets = ["${SECRET_A}", "${SECRET_B}"]`)}
`;
  server = await startPetrel({ users: [['alice', 'pw'], ['bob', 'pw']], extraToml: toml });
  alice = await connect({ port: server.port }, 'alice', 'pw');
  bob = await connect({ port: server.port }, 'bob', 'pw');
});

after(async () => {
  await alice?.close();
  await bob?.close();
  await server?.dispose();
  await hook.down().catch(() => {});
});

/** Sends one message; resolves with the body text once bob has it. */
async function send(text: string): Promise<string> {
  const id = await alice.message(bob.jid, text);
  await bob.waitFor(isMessage(id));
  return text;
}

/** Requests to `path` for the message with this text, sent direction "in" (the JSON module also sends "out"). */
const withText = (path: string, text: string) => () =>
  hook.on(path).filter((r) => {
    const d = JSON.parse(r.body).data;
    return d.message === text && d.direction === 'in';
  });

/** Answers the "in" event of the message with this text by `answer`, everything else with 200. */
function only(text: string, answer: (n: number) => Answer): Script {
  return ({ body, n }) => {
    const d = JSON.parse(body).data;
    return d.message === text && d.direction === 'in' ? answer(n) : { status: 200 };
  };
}

async function metrics(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  return res.text();
}

test('a 500 is retried until the endpoint answers 2xx, with the same webhook-id', async () => {
  hook.script('/flaky', only('flaky', (n) => ({ status: n < 2 ? 500 : 200 })));
  const text = await send('flaky');
  const got = withText('/flaky', text);
  await hook.until(() => got().some((r) => r.status === 200));
  assert.deepEqual(got().map((r) => r.status), [500, 500, 200]);
  assert.equal(new Set(got().map(idOf)).size, 1);
});

test('a redirect is not followed: it is a final failure, counted failed and dead-lettered', async () => {
  hook.script('/moved', only('moved', () => ({ status: 302, headers: { location: '/elsewhere' } })));
  const text = await send('moved');
  const got = withText('/moved', text);
  await hook.until(() => got().length === 1);
  const line = await server.waitForLog((l) => l.what === 'event_pusher_dead_lettered' && l.webhook_id === idOf(got()[0]!));
  assert.equal(line.reason, 'final');
  assert.equal(line.attempts, 1);
  await server.waitForLog((l) => l.what === 'event_pusher_http_failed' && l.status === 302);
  assert.equal(hook.on('/elsewhere').length, 0);
  const m = await metrics();
  assert.match(m, /petrel_event_pusher_delivery_responses_total\{host_type="localhost",handler="1",status="302"\} 1/);
  assert.match(m, /petrel_event_pusher_dead_lettered_total\{host_type="localhost",handler="1",reason="final"\} 1/);
  assert.match(m, /mod_event_pusher_http_sent_failure_count\{host_type="localhost"\} [1-9]/);
  // Nothing is retried after a final failure.
  await send('after moved');
  await hook.until(() => withText('/moved', 'after moved')().length === 1);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(got().length, 1);
});

test('a 410 disables the endpoint: later events are not sent to it, and an error line says so', async () => {
  hook.script('/gone', only('gone 1', () => ({ status: 410 })));
  await send('gone 1');
  await hook.until(() => withText('/gone', 'gone 1')().length === 1);
  const line = await server.waitForLog((l) => l.what === 'event_pusher_endpoint_gone');
  assert.equal(line.level, 50);
  assert.equal(line.handler, 2);
  await send('gone 2');
  // The other handlers get the second event; the disabled one does not.
  await hook.until(() => withText('/flaky', 'gone 2')().length === 1);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(withText('/gone', 'gone 2')().length, 0);
  // Its events stay in the outbox: the one answered 410 and the later ones (both directions).
  const db = openStore(server);
  const decode = payloadDecoder();
  const bodies = (db.prepare("SELECT payload FROM event_outbox WHERE handler = 'http_pool:/gone:mod_event_pusher_http_json'").all() as Array<{ payload: Uint8Array }>)
    .map((r) => JSON.parse(Buffer.from(decode(r.payload).body).toString('utf8')).data)
    .map((d) => `${d.message} ${d.direction}`)
    .sort();
  db.close();
  assert.ok(bodies.includes('gone 1 in'), bodies.join(', '));
  assert.ok(bodies.includes('gone 2 in') && bodies.includes('gone 2 out'), bodies.join(', '));
});

test('after a 429 with Retry-After: 2 the next attempt waits at least that long', async () => {
  hook.script('/busy', only('busy', (n) => (n === 0 ? { status: 429, headers: { 'retry-after': '2' } } : { status: 200 })));
  const text = await send('busy');
  const got = withText('/busy', text);
  await hook.until(() => got().length === 2, 10_000);
  const [first, second] = got();
  assert.equal(first!.status, 429);
  assert.equal(second!.status, 200);
  assert.ok(second!.at - first!.at >= 1900, `retried after ${Math.round(second!.at - first!.at)} ms`);
});

test('an event is dead-lettered after its last attempt, listed, and delivered when replayed', async () => {
  let healthy = false;
  hook.script('/dead', only('dead', () => ({ status: healthy ? 200 : 503 })));
  const text = await send('dead');
  const got = withText('/dead', text);
  await hook.until(() => got().length === 2);
  const id = idOf(got()[0]!);
  await server.waitForLog((l) => l.what === 'event_pusher_dead_lettered' && l.webhook_id === id && l.reason === 'attempts');

  const list = await server.cli(['deliveries', 'dead-letter', 'list']);
  assert.equal(list.code, 0, list.stderr);
  const line = list.stdout.split('\n').find((l) => l.startsWith(id + ' '));
  assert.ok(line, list.stdout);
  assert.match(line!, /^msg_\S+  http_pool:\/dead:mod_event_pusher_http_json  attempts=2  error="HTTP 503"  at=\d{4}-\d\d-\d\dT/);

  const summary = await server.cli(['deliveries']);
  assert.equal(summary.code, 0, summary.stderr);
  assert.match(summary.stdout, /^HANDLER\s+QUEUED\s+IN_FLIGHT\s+RETRYING\s+DEAD_LETTERED$/m);
  assert.match(summary.stdout, /^4 http_pool:\/dead:mod_event_pusher_http_json\s+0\s+0\s+0\s+1$/m);

  healthy = true;
  const replay = await server.cli(['deliveries', 'dead-letter', 'replay', id]);
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /Replayed 1 dead-lettered event/);
  await hook.until(() => got().some((r) => r.status === 200), 10_000, 'the replayed event');
  assert.equal(idOf(got().at(-1)!), id);
  const after = await server.cli(['deliveries', 'dead-letter', 'list']);
  assert.ok(!after.stdout.includes(id));

  const unknown = await server.cli(['deliveries', 'dead-letter', 'purge', 'msg_nope']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no dead-lettered event with id msg_nope/);
});

test('signatures made with two secrets verify with either one, and not over a tampered body', async () => {
  const text = await send('signed');
  const got = withText('/signed', text);
  await hook.until(() => got().length === 1);
  const r = got()[0]!;
  const headers = {
    'webhook-id': String(r.headers['webhook-id']),
    'webhook-timestamp': String(r.headers['webhook-timestamp']),
    'webhook-signature': String(r.headers['webhook-signature']),
  };
  assert.equal(headers['webhook-signature'].split(' ').length, 2);
  assert.ok(Math.abs(Number(headers['webhook-timestamp']) - Date.now() / 1000) < 60);
  for (const secret of [SECRET_A, SECRET_B]) {
    const payload = new StandardWebhook(secret).verify(r.body, headers) as { data: { message: string } };
    assert.equal(payload.data.message, 'signed');
  }
  assert.throws(() => new StandardWebhook(SECRET_A).verify(r.body.replace('signed', 'forged'), headers), /No matching signature/);
  const other = 'whsec_' + Buffer.from('a third key nobody configured!!').toString('base64');
  assert.throws(() => new StandardWebhook(other).verify(r.body, headers), /No matching signature/);
  // Unsigned handlers still send the webhook-id, and no signature.
  const plain = hook.on('/flaky').find((x) => JSON.parse(x.body).data.message === 'signed')!;
  assert.ok(plain.headers['webhook-id']);
  assert.equal(plain.headers['webhook-signature'], undefined);
});
