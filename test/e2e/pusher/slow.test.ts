// A web service that takes five seconds to answer must not slow chat down:
// the message path never waits for HTTP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { preparePetrel, type Petrel } from '../helpers/server.ts';
import { isMessage, type TestClient } from '../helpers/client.ts';
import { handlersToml, poolToml, unique, Webhook, online } from './helpers.ts';

const WEBHOOK_DELAY_MS = 5000;
const MESSAGES = 20;
/** Far below the webhook's delay: a message that waited for HTTP could not make it. */
const DELIVERY_BOUND_MS = 2000;

describe('a slow web service', () => {
  let server: Petrel;
  let hook: Webhook;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    hook = await Webhook.start({ respond: () => ({ status: 200, delayMs: WEBHOOK_DELAY_MS }) });
    // Timeouts above the delay, so the service holds the requests rather than the pool giving up on them.
    const toml = poolToml({ tag: 'http_pool', host: hook.origin, request_timeout: 10_000, call_timeout: 20_000 }) + handlersToml([{ path: '/slow' }]);
    server = await preparePetrel({ users: [['alice', 'alice-pw'], ['bob', 'bob-pw']], extraToml: toml });
    await server.start();
    [alice, bob] = await Promise.all([online(server.port, 'alice', 'alice-pw'), online(server.port, 'bob', 'bob-pw')]);
  });

  after(async () => {
    // Answer what is held, so the server drains its queue and stops at once.
    hook?.release();
    await Promise.all([alice?.close(), bob?.close()]);
    await server?.dispose();
    await hook?.close();
  });

  test('twenty messages in a row reach the recipient quickly while the web service holds their notifications', async () => {
    const tag = unique('slow');
    const arrivals: Array<Promise<number>> = [];
    for (let i = 0; i < MESSAGES; i++) {
      const start = Date.now();
      const id = await alice.message('bob@localhost', `${tag} ${i}`);
      arrivals.push(bob.waitFor(isMessage(id), 15_000).then(() => Date.now() - start));
    }
    const latencies = await Promise.all(arrivals);
    // Every message is with bob while the web service still holds notifications it has not answered.
    await hook.waitFor((r) => r.text.includes(tag), 1, 5000);
    assert.ok(hook.pending >= 1, 'the web service is holding requests');
    const slowest = Math.max(...latencies);
    assert.ok(slowest < DELIVERY_BOUND_MS, `slowest delivery ${slowest} ms (all: ${latencies.join(', ')})`);
  });
});
