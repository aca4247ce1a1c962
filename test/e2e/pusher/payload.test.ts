// The default callback module end to end: what a chat message becomes on the
// wire (URL, content type, the byte-exact form body), stringprep of the
// names, form encoding, what is not pushed, and the metrics of successful
// pushes (Prometheus endpoint and `petrel metrics`).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, preparePetrel, type Petrel } from '../helpers/server.ts';
import { connect, isMessage, xml, type TestClient } from '../helpers/client.ts';
import { decodeForm, handlersToml, poolToml, prometheusToml, sampleValue, scrape, spiralRow, unique, Webhook, type Received, online } from './helpers.ts';

describe('the default payload', () => {
  let server: Petrel;
  let prefixed: Webhook;
  let plain: Webhook;
  let metricsPort: number;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    [prefixed, plain] = await Promise.all([Webhook.start(), Webhook.start()]);
    metricsPort = await freePort();
    // One connection per pool keeps the notifications of each handler in order.
    const toml =
      prometheusToml(metricsPort) +
      poolToml({ tag: 'prefixed', host: prefixed.origin, path_prefix: '/webservice', workers: 1 }) +
      poolToml({ tag: 'plain', host: plain.origin, workers: 1 }) +
      handlersToml([
        { pool_name: 'prefixed', path: '/notifications' },
        { pool_name: 'plain', path: '/notifications' },
      ]);
    server = await preparePetrel({ users: [['alice', 'alice-pw'], ['bob', 'bob-pw']], extraToml: toml });
    await server.start();
    [alice, bob] = await Promise.all([online(server.port, 'alice', 'alice-pw'), online(server.port, 'bob', 'bob-pw')]);
  });

  after(async () => {
    await Promise.all([alice?.close(), bob?.close()]);
    await server?.dispose();
    await Promise.all([prefixed?.close(), plain?.close()]);
  });

  /** Sends a chat message and waits until bob has it and both web services have its notification. */
  async function push(text: string, from = alice, to = 'bob@localhost'): Promise<{ prefixed: Received; plain: Received }> {
    const id = await from.message(to, text);
    await bob.waitFor(isMessage(id));
    const match = (r: Received) => decodeForm(r.text).message === text;
    const [[a], [b]] = await Promise.all([prefixed.waitFor(match), plain.waitFor(match)]);
    return { prefixed: a!, plain: b! };
  }

  test('a chat message is POSTed as a form to the pool prefix joined with the handler path', async () => {
    const got = await push('Hi, Bob!');
    for (const [r, target] of [[got.prefixed, '/webservice/notifications'], [got.plain, '/notifications']] as const) {
      assert.equal(r.method, 'POST');
      assert.equal(r.url, target);
      assert.equal(r.headers['content-type'], 'application/x-www-form-urlencoded');
      assert.equal(r.text, 'author=alice&server=localhost&receiver=bob&message=Hi%2C+Bob%21');
      assert.deepEqual(decodeForm(r.text), { author: 'alice', server: 'localhost', receiver: 'bob', message: 'Hi, Bob!' });
      assert.equal(Number(r.headers['content-length']), r.body.length);
      assert.match(String(r.headers['webhook-id']), /\S/);
    }
  });

  test('the names in the payload are stringprepped to lower case', async () => {
    const shouty = await connect({ port: server.port, domain: 'LocalHost' }, 'Alice', 'alice-pw', { resource: 'caps' });
    try {
      assert.equal(shouty.bare, 'alice@localhost');
      const text = unique('case');
      const got = await push(text, shouty, 'BOB@LOCALHOST');
      assert.deepEqual(decodeForm(got.plain.text), { author: 'alice', server: 'localhost', receiver: 'bob', message: text });
      assert.equal(got.plain.text, `author=alice&server=localhost&receiver=bob&message=${text}`);
    } finally {
      await shouty.close();
    }
  });

  test('a body with form delimiters survives the round trip', async () => {
    const text = 'Hi Test!&escape=Hello';
    const got = await push(text);
    assert.equal(got.plain.text, 'author=alice&server=localhost&receiver=bob&message=Hi+Test%21%26escape%3DHello');
    const fields = decodeForm(got.plain.text);
    assert.equal(fields.message, text);
    assert.equal(fields.escape, undefined);
  });

  test('non-ASCII text survives the round trip as UTF-8', async () => {
    const text = 'Zażółć gęślą jaźń 🐦 ' + unique('utf8');
    const got = await push(text);
    assert.equal(decodeForm(got.plain.text).message, text);
    assert.equal(decodeForm(got.prefixed.text).message, text);
    assert.match(got.plain.text, /^author=alice&server=localhost&receiver=bob&message=Za%C5%BC%C3%B3%C5%82%C4%87\+/);
  });

  test('messages without a body, errors, groupchat, headline, normal messages and presence are not pushed', async () => {
    const before = { prefixed: prefixed.requests.length, plain: plain.requests.length };
    const quiet = unique('quiet');
    await alice.send(xml('message', { to: 'bob@localhost', type: 'chat', id: unique('nobody') }, xml('active', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    await alice.send(xml('message', { to: 'bob@localhost', type: 'chat', id: unique('empty') }, xml('body', {}, '')));
    await alice.send(xml('message', { to: bob.jid, type: 'error', id: unique('error') }, xml('body', {}, quiet), xml('error', { type: 'cancel' }, xml('undefined-condition', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }))));
    for (const type of ['groupchat', 'headline', 'normal', undefined]) {
      await alice.send(xml('message', { to: bob.jid, type, id: unique(type ?? 'untyped') }, xml('body', {}, quiet)));
    }
    await alice.send(xml('presence', { to: 'bob@localhost' }, xml('status', {}, quiet)));
    await alice.send(xml('presence', {}, xml('status', {}, quiet)));
    // Both pools send one request at a time, in order: once the marker arrives, anything queued before it has too.
    const marker = unique('marker');
    await push(marker);
    for (const hook of [prefixed, plain]) {
      const since = hook.requests.slice(hook === prefixed ? before.prefixed : before.plain);
      assert.deepEqual(since.map((r) => decodeForm(r.text).message), [marker]);
      assert.ok(!hook.requests.some((r) => r.text.includes(quiet)));
    }
  });

  test('the Prometheus endpoint exposes the three MongooseIM metric names with a host_type label', async () => {
    await push(unique('metrics'));
    const text = await scrape(metricsPort);
    const labels = { host_type: 'localhost' };
    assert.ok((sampleValue(text, 'mod_event_pusher_http_sent_count', labels) ?? 0) >= 1, 'sent count');
    assert.equal(sampleValue(text, 'mod_event_pusher_http_sent_failure_count', labels), 0);
    assert.ok((sampleValue(text, 'mod_event_pusher_http_sent_response_time_count', labels) ?? 0) >= 1, 'response time count');
    assert.ok(sampleValue(text, 'mod_event_pusher_http_sent_response_time_bucket', { ...labels, le: '+Inf' }) !== undefined, 'response time buckets');
    assert.match(text, /# TYPE mod_event_pusher_http_sent_response_time histogram/);
    assert.ok((sampleValue(text, 'petrel_event_pusher_http_responses_total', { ...labels, handler: '0', outcome: 'ok' }) ?? 0) >= 1);
  });

  test('petrel metrics prints the sent, failed and response_time rows', async () => {
    // The sender thread reports its deliveries in batches: wait until the count has settled.
    const sentNow = async () => sampleValue(await scrape(metricsPort), 'mod_event_pusher_http_sent_count', { host_type: 'localhost' })!;
    let sentSoFar = await sentNow();
    for (let last = -1; last !== sentSoFar; ) {
      last = sentSoFar;
      await new Promise((r) => setTimeout(r, 200));
      sentSoFar = await sentNow();
    }
    const r = await server.cli(['metrics']);
    assert.equal(r.code, 0, r.stderr);
    const sent = spiralRow(r.stdout, 'localhost', 'sent');
    assert.ok(sent !== undefined, r.stdout);
    assert.equal(sent.count, sentSoFar);
    assert.ok(sent.one >= 1);
    assert.deepEqual(spiralRow(r.stdout, 'localhost', 'failed'), { one: 0, count: 0 });
    assert.match(r.stdout, /^\[localhost, mod_event_pusher_http, response_time\]\s+histogram\s+n=\d+ mean=[\d.]+ ms median=/m);
  });
});
