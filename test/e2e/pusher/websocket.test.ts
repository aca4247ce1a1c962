// The event pusher sees a WebSocket user as it sees a TCP user: the same
// hooks run for the messages they send, so a real webhook gets the same
// notification, whichever transport the sender used.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, preparePetrel, type Petrel } from '../helpers/server.ts';
import { isMessage, type TestClient } from '../helpers/client.ts';
import { decodeForm, handlersToml, online, poolToml, unique, Webhook, type Received } from './helpers.ts';

describe('pushing the messages of a WebSocket user', () => {
  let server: Petrel;
  let hook: Webhook;
  let httpPort: number;
  let wsAlice: TestClient;
  let tcpAlice: TestClient;
  let bob: TestClient;

  before(async () => {
    hook = await Webhook.start();
    httpPort = await freePort();
    const toml =
      `[[listen.http]]\n  port = ${httpPort}\n  ip_address = "127.0.0.1"\n` +
      '  [[listen.http.handlers.mongoose_websocket_handler]]\n    host = "_"\n    path = "/ws-xmpp"\n\n' +
      poolToml({ tag: 'http_pool', host: hook.origin, workers: 1 }) +
      handlersToml([{ path: '/notifications' }]);
    server = await preparePetrel({ users: [['alice', 'alice-pw'], ['bob', 'bob-pw']], extraToml: toml });
    await server.start();
    [wsAlice, tcpAlice, bob] = await Promise.all([
      online(server.port, 'alice', 'alice-pw', { resource: 'browser', service: `ws://127.0.0.1:${httpPort}/ws-xmpp` }),
      online(server.port, 'alice', 'alice-pw', { resource: 'desktop' }),
      online(server.port, 'bob', 'bob-pw'),
    ]);
  });

  after(async () => {
    await Promise.all([wsAlice?.close(), tcpAlice?.close(), bob?.close()]);
    await server?.dispose();
    await hook?.close();
  });

  async function pushed(from: TestClient, text: string): Promise<Received> {
    const id = await from.message('bob@localhost', text);
    await bob.waitFor(isMessage(id));
    const [r] = await hook.waitFor((r) => decodeForm(r.text).message === text);
    return r!;
  }

  test('a message sent over WebSocket is pushed exactly as the same message sent over TCP', async () => {
    const [a, b] = [unique('ws'), unique('tcp')];
    const viaWs = await pushed(wsAlice, a);
    const viaTcp = await pushed(tcpAlice, b);
    assert.equal(viaWs.method, 'POST');
    assert.equal(viaWs.url, '/notifications');
    assert.equal(viaWs.text, `author=alice&server=localhost&receiver=bob&message=${a}`);
    assert.equal(viaTcp.text, `author=alice&server=localhost&receiver=bob&message=${b}`);
    assert.equal(viaWs.url, viaTcp.url);
    assert.equal(viaWs.headers['content-type'], viaTcp.headers['content-type']);
    assert.match(String(viaWs.headers['webhook-id']), /\S/);
    assert.notEqual(viaWs.headers['webhook-id'], viaTcp.headers['webhook-id']);
  });

  test('each WebSocket message is pushed once', async () => {
    const texts = [unique('one'), unique('two'), unique('three')];
    for (const t of texts) await pushed(wsAlice, t);
    for (const t of texts) assert.equal(hook.requests.filter((r) => decodeForm(r.text).message === t).length, 1);
  });
});
