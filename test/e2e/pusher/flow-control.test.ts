// Flow control of the event pusher: when the web service falls behind and
// the outbox nears outbox_high_water_bytes, the users whose events are
// waiting are no longer read (their clients are slowed by TCP's or the
// WebSocket's flow control) until it drains below outbox_low_water_bytes,
// and the outbox never holds more than the mark. Nothing is refused or
// lost, and a user whose events are not waiting chats on. Over TCP and over
// WebSocket.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rm, writeFile } from 'node:fs/promises';
import { configToml, freePort, preparePetrel, runCli, tempDir, type Petrel } from '../helpers/server.ts';
import { isMessage, xml, type TestClient } from '../helpers/client.ts';
import { copyFixtures, poolToml, prometheusToml, scrape, sampleValue, unique, waitForSample, Webhook, online, type Received } from './helpers.ts';

const HIGH = 16 * 1024;
const LOW = 4 * 1024;
const FLOOD = 3000;
/** About 200 bytes of body: the flood is some 700 KB of events, many times the high-water mark. */
const PAD = 'x'.repeat(200);
/** The WebSocket listener's idle timeout; alice stays throttled longer than this. */
const WS_IDLE_MS = 1500;

function flowToml(hookOrigin: string, httpPort: number, metricsPort: number): string {
  return (
    prometheusToml(metricsPort) +
    `[[listen.http]]\n  port = ${httpPort}\n  ip_address = "127.0.0.1"\n` +
    // A short idle timeout, kept off by the server's pings for the clients it reads: a
    // connection that is not read must not count as idle.
    `  [[listen.http.handlers.mongoose_websocket_handler]]\n    host = "_"\n    path = "/ws-xmpp"\n    timeout = ${WS_IDLE_MS}\n    ping_rate = 300\n\n` +
    // Timeouts far above the test: held requests stay in flight, never retried (so never sent twice).
    poolToml({ tag: 'http_pool', host: hookOrigin, workers: 4, request_timeout: 600_000, call_timeout: 600_000 }) +
    '[modules.mod_event_pusher]\n' +
    `  outbox_high_water_bytes = ${HIGH}\n  outbox_low_water_bytes = ${LOW}\n  outbox_max_bytes = ${64 * 1024 * 1024}\n\n` +
    '[[modules.mod_event_pusher.backend.http]]\n  path = "/events"\n  callback_module = "mod_event_pusher_http_only_alice"\n\n' +
    '[instrumentation.prometheus]\n'
  );
}

for (const transport of ['tcp', 'ws'] as const) {
  describe(`flow control of a flooding user over ${transport === 'tcp' ? 'TCP' : 'WebSocket'}`, () => {
    let server: Petrel;
    let hook: Webhook;
    let metricsPort: number;
    let alice: TestClient;
    let bob: TestClient;
    let carol: TestClient;
    let dave: TestClient;
    /** Set once the web service answers again. */
    let answering = false;

    before(async () => {
      // The web service takes the requests and answers none until told to.
      hook = await Webhook.start({ respond: () => ({ status: 204, delayMs: 600_000 }) });
      metricsPort = await freePort();
      const httpPort = await freePort();
      const dir = await tempDir();
      await copyFixtures(dir, ['mod_event_pusher_http_only_alice.ts']);
      server = await preparePetrel({
        users: [['alice', 'alice-pw'], ['bob', 'bob-pw'], ['carol', 'carol-pw'], ['dave', 'dave-pw']],
        extraToml: flowToml(hook.origin, httpPort, metricsPort),
      }, dir);
      await server.start();
      const aliceOpts = transport === 'ws' ? { service: `ws://127.0.0.1:${httpPort}/ws-xmpp` } : {};
      [alice, bob, carol, dave] = await Promise.all([
        online(server.port, 'alice', 'alice-pw', aliceOpts),
        online(server.port, 'bob', 'bob-pw'),
        online(server.port, 'carol', 'carol-pw', aliceOpts),
        online(server.port, 'dave', 'dave-pw'),
      ]);
    });

    after(async () => {
      hook?.release();
      await Promise.all([alice?.close(), bob?.close(), carol?.close(), dave?.close()]);
      await server?.dispose();
      await hook?.close();
    });

    test('a flooding user whose events wait is no longer read, everyone else chats on, and after the web service recovers every message and event arrives once', { timeout: 120_000 }, async () => {
      const tag = unique('flood');
      const ids: string[] = [];
      const received = new Set<string>();
      bob.xmpp.on('stanza', (el) => {
        if (el.name === 'message' && el.attrs.id !== undefined) received.add(el.attrs.id as string);
      });
      // Everything at once, not waiting for the server: what it does not read waits in the connection.
      const sends: Array<Promise<void>> = [];
      for (let i = 0; i < FLOOD; i++) {
        const id = `${tag}-${i}`;
        ids.push(id);
        sends.push(alice.send(xml('message', { to: 'bob@localhost', type: 'chat', id }, xml('body', {}, `${tag} ${i} ${PAD}`))));
      }
      void Promise.all(sends).catch(() => {});

      // The outbox neared its high-water mark: alice is throttled, and said so once.
      const line = await server.waitForLog((l) => l.what === 'event_pusher_throttled' && l.user === 'alice@localhost', 30_000);
      assert.equal(line.level, 30, 'logged at info');
      await waitForSample(metricsPort, 'petrel_event_pusher_throttled_users', {}, (v) => v === 1, 10_000);

      // While the web service answers nothing, the outbox fills up to the mark and no
      // further, and the messages alice sent are not all read: her socket is not read.
      let maxBytes = 0;
      for (let i = 0; i < 10; i++) {
        const text = await scrape(metricsPort);
        maxBytes = Math.max(maxBytes, sampleValue(text, 'petrel_event_pusher_outbox_bytes') ?? 0);
        await new Promise((r) => setTimeout(r, 100));
      }
      // Throttling starts halfway between the marks; what was read by then still lands, below the mark.
      assert.ok(maxBytes >= (LOW + HIGH) / 2, `the outbox filled past the throttle mark (${maxBytes} bytes)`);
      assert.ok(maxBytes <= HIGH, `the outbox never holds more than the high-water mark (${maxBytes} bytes)`);
      assert.ok(received.size < FLOOD, `bob has ${received.size} of alice's ${FLOOD} messages while she is throttled`);
      assert.equal(answering, false);

      // Carol's messages make no events: she is not slowed, and dave gets every one.
      for (let i = 0; i < 20; i++) {
        const id = await carol.message('dave@localhost', `${tag} carol ${i}`);
        await dave.waitFor(isMessage(id), 10_000);
      }
      const during = await scrape(metricsPort);
      assert.equal(sampleValue(during, 'petrel_event_pusher_throttled_users'), 1, 'carol was not throttled');
      // Held past the idle timeout, alice's connection stays: the server is not reading her, she is not idle.
      await new Promise((r) => setTimeout(r, WS_IDLE_MS + 1000));
      assert.equal(alice.xmpp.status, 'online', 'alice is still connected');
      assert.equal(sampleValue(await scrape(metricsPort), 'petrel_event_pusher_throttled_users'), 1, 'alice is still throttled');

      // The web service recovers: everything is delivered, exactly once, and alice is read again.
      answering = true;
      hook.release();
      const pushed = await hook.waitFor((r: Received) => r.text.includes(tag) && !r.text.includes('carol'), FLOOD, 90_000);
      await new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + 60_000;
        const check = () => {
          if (received.size >= FLOOD) return resolve();
          if (Date.now() > deadline) return reject(new Error(`bob has ${received.size} of ${FLOOD} messages`));
          setTimeout(check, 100);
        };
        check();
      });
      assert.deepEqual(ids.filter((id) => !received.has(id)), [], 'every message reached bob');
      // Give a duplicate the time to show up, then count.
      await new Promise((r) => setTimeout(r, 500));
      const all = hook.matching((r) => r.text.includes(tag) && !r.text.includes('carol'));
      assert.equal(pushed.length >= FLOOD, true);
      assert.equal(all.length, FLOOD, 'each event was pushed once');
      assert.equal(new Set(all.map((r) => r.headers['webhook-id'])).size, FLOOD, 'one webhook-id per event');
      assert.equal(hook.matching((r) => r.text.includes(`${tag} carol`)).length, 0, "carol's messages made no events");

      await server.waitForLog((l) => l.what === 'event_pusher_unthrottled' && l.user === 'alice@localhost', 10_000);
      await waitForSample(metricsPort, 'petrel_event_pusher_throttled_users', {}, (v) => v === 0, 10_000);
      const text = await scrape(metricsPort);
      assert.ok((sampleValue(text, 'petrel_event_pusher_throttle_total') ?? 0) >= 1);
      assert.equal(sampleValue(text, 'petrel_event_pusher_outbox_user_rejected_total', { host_type: 'localhost', handler: '0' }) ?? 0, 0, 'nothing refused');
      assert.equal(sampleValue(text, 'petrel_event_pusher_outbox_rejected_total', { host_type: 'localhost', handler: '0' }) ?? 0, 0, 'nothing refused');
      assert.equal(alice.take((el) => el.name === 'message' && el.attrs.type === 'error').length, 0, 'no message bounced');
      // Alice is read again: a new message goes through.
      const last = await alice.message('bob@localhost', `${tag} after`);
      await bob.waitFor(isMessage(last), 10_000);
    });
  });
}

describe('flow control marks in the configuration', () => {
  async function checkConfig(lines: string): Promise<{ code: number | null; stderr: string; stdout: string }> {
    const dir = await tempDir();
    const file = join(dir, 'petrel.toml');
    await writeFile(file, configToml({ extraToml: poolToml({ tag: 'http_pool', host: 'http://127.0.0.1:9' }) + '[modules.mod_event_pusher]\n' + lines + '\n[modules.mod_event_pusher.backend.http]\n  path = "/a"\n' }, [await freePort()]));
    try {
      return await runCli(['check-config', '-c', file]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  test('a low-water mark not below the high-water mark is an error naming outbox_low_water_bytes', async () => {
    const r = await checkConfig('  outbox_high_water_bytes = 10000\n  outbox_low_water_bytes = 10000\n');
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /modules\.mod_event_pusher\.outbox_low_water_bytes/);
  });

  test('a high-water mark above outbox_max_bytes is an error naming outbox_high_water_bytes', async () => {
    const r = await checkConfig('  outbox_max_bytes = 100000\n  outbox_high_water_bytes = 200000\n');
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /modules\.mod_event_pusher\.outbox_high_water_bytes/);
  });

  test('a low-water mark above the default high-water mark of a small outbox is an error naming outbox_low_water_bytes', async () => {
    const r = await checkConfig('  outbox_max_bytes = 80000\n  outbox_low_water_bytes = 50000\n');
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /modules\.mod_event_pusher\.outbox_low_water_bytes/);
  });

  test('marks in order are accepted', async () => {
    const r = await checkConfig('  outbox_max_bytes = 100000\n  outbox_high_water_bytes = 50000\n  outbox_low_water_bytes = 10000\n');
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});
