// The other spellings of the HTTP backend's configuration, and the start-up
// errors of a handler whose pool or callback module does not hold up.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rm, writeFile } from 'node:fs/promises';
import { configToml, freePort, preparePetrel, runCli, tempDir, type Petrel } from '../helpers/server.ts';
import { isMessage, type TestClient } from '../helpers/client.ts';
import { copyFixtures, decodeForm, poolToml, unique, Webhook, online } from './helpers.ts';

describe('MongooseIM handler spellings', () => {
  let server: Petrel;
  let hook: Webhook;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    hook = await Webhook.start();
    const toml =
      poolToml({ tag: 'http_pool', host: hook.origin }) +
      `[modules.mod_event_pusher.http]

[[modules.mod_event_pusher.http.handlers]]
  pool_name = "http_pool"
  path = "/handlers"

[modules.mod_event_pusher_http]
  pool_name = "http_pool"
  path = "/per-module"
`;
    server = await preparePetrel({ users: [['alice', 'alice-pw'], ['bob', 'bob-pw']], extraToml: toml });
    await server.start();
    [alice, bob] = await Promise.all([online(server.port, 'alice', 'alice-pw'), online(server.port, 'bob', 'bob-pw')]);
  });

  after(async () => {
    await Promise.all([alice?.close(), bob?.close()]);
    await server?.dispose();
    await hook?.close();
  });

  async function pushed(path: string): Promise<void> {
    const text = unique('spelling');
    const id = await alice.message('bob@localhost', text);
    await bob.waitFor(isMessage(id));
    const [r] = await hook.waitFor((x) => x.url === path && decodeForm(x.text).message === text);
    assert.equal(r!.text, `author=alice&server=localhost&receiver=bob&message=${text}`);
  }

  test('a handler under [[modules.mod_event_pusher.http.handlers]] pushes', async () => {
    await pushed('/handlers');
  });

  test('a handler configured as [modules.mod_event_pusher_http] pushes', async () => {
    await pushed('/per-module');
  });
});

describe('handlers that cannot start', () => {
  /** Writes a config with `toml` appended and runs `petrel start` on it; it must exit. */
  async function startWith(toml: string, fixtures: string[] = []) {
    const dir = await tempDir();
    await copyFixtures(dir, fixtures);
    const file = join(dir, 'petrel.toml');
    await writeFile(file, configToml({ extraToml: toml }, [await freePort()]));
    try {
      return await runCli(['start', '-c', file]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  test('a pool_name naming no pool stops the server with an error naming the TOML path', async () => {
    const r = await startWith(
      poolToml({ tag: 'http_pool', host: 'http://127.0.0.1:9' }) +
        '[[modules.mod_event_pusher.backend.http]]\n  path = "/a"\n\n[[modules.mod_event_pusher.backend.http]]\n  pool_name = "nosuchpool"\n  path = "/b"\n',
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /modules\.mod_event_pusher\.backend\.http\[1\]\.pool_name/);
    assert.match(r.stderr, /nosuchpool/);
  });

  test('a callback module without prepareBody stops the server with an error naming the path and the function', async () => {
    const r = await startWith(
      poolToml({ tag: 'http_pool', host: 'http://127.0.0.1:9' }) +
        '[modules.mod_event_pusher.backend.http]\n  path = "/half"\n  callback_module = "mod_event_pusher_http_half"\n',
      ['mod_event_pusher_http_half.ts'],
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /modules\.mod_event_pusher\.backend\.http(\[0\])?\.callback_module/);
    // Only the missing function is reported as missing.
    assert.match(r.stderr, /does not export prepareBody\b(?!,)/);
  });
});
