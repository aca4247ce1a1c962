// The `petrel` command: register / unregister (also while the server runs),
// check-config, start with the shipped configuration, and SIGTERM.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { freePort, preparePetrel, runCli, startPetrel, tempDir, testEnv, Petrel, REPO_ROOT } from './helpers/server.ts';
import { connect, trustCertificate, type TestClient } from './helpers/client.ts';
import { RawConnection } from './helpers/raw.ts';
import type { XmppError } from '@xmpp/client';

async function loginFails(target: { port: number }, user: string, password: string): Promise<XmppError> {
  try {
    const c = await connect(target, user, password);
    await c.close();
  } catch (err) {
    return err as XmppError;
  }
  throw new Error(`${user} could log in`);
}

describe('register and unregister', () => {
  let server: Petrel;
  before(async () => {
    server = await preparePetrel();
  });
  after(async () => {
    await server.dispose();
  });

  test('a user registered before the server starts can log in', async () => {
    const r = await server.cli(['register', 'alice', 'localhost', 's3cret']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /alice@localhost registered/);
    await server.start();
    const c = await connect(server, 'alice', 's3cret');
    assert.equal(c.bare, 'alice@localhost');
    await c.close();
  });

  test('registering an existing user fails with a non-zero exit and says the user exists', async () => {
    const r = await server.cli(['register', 'alice', 'localhost', 'other']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /alice@localhost already exists/);
    // The first password still works.
    const c = await connect(server, 'alice', 's3cret');
    await c.close();
  });

  test('a user registered while the server runs can log in at once', async () => {
    assert.ok(server.running);
    const r = await server.cli(['register', 'carol', 'localhost', 'pw-carol']);
    assert.equal(r.code, 0, r.stderr);
    const c = await connect(server, 'carol', 'pw-carol');
    assert.equal(c.bare, 'carol@localhost');
    await c.close();
  });

  test('a user unregistered while the server runs can no longer log in (not-authorized)', async () => {
    const r = await server.cli(['unregister', 'carol', 'localhost']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /carol@localhost unregistered/);
    const err = await loginFails(server, 'carol', 'pw-carol');
    assert.equal(err.condition, 'not-authorized');
  });

  test('registering while the server runs tells it, and it runs user_registered', async () => {
    const r = await server.cli(['register', 'erin', 'localhost', 'pw-erin']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /erin@localhost registered \(the running server was told\)/);
    const line = await server.waitForLog((l) => l.what === 'user_registered' && l.user === 'erin');
    assert.equal(line.server, 'localhost');
  });

  test('unregistering a connected user ends its sessions with not-authorized', async () => {
    await server.cli(['register', 'frank', 'localhost', 'pw-frank']);
    const raw = await RawConnection.open(server.port);
    try {
      await raw.login('frank', 'pw-frank', 'desk');
      const r = await server.cli(['unregister', 'frank', 'localhost']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /its sessions on the running server were closed/);
      const said = await raw.untilClosed();
      assert.match(said, /<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
      await server.waitForLog((l) => l.what === 'user_removed' && l.user === 'frank');
    } finally {
      raw.destroy();
    }
  });

  test('the control socket in the data directory is readable by its owner only', async () => {
    const mode = (await stat(join(server.dir, 'data', 'petrel.sock'))).mode & 0o777;
    assert.equal(mode, 0o600);
  });

  test('unregistering a user who does not exist fails with a non-zero exit', async () => {
    const r = await server.cli(['unregister', 'nobody', 'localhost']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /nobody@localhost does not exist/);
  });

  test('registering on a domain the server does not serve fails and names the hosts', async () => {
    const r = await server.cli(['register', 'dave', 'example.org', 'pw']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /example\.org is not a host of this server/);
  });
});

describe('check-config', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const check = async (name: string, toml: string) => {
    const file = join(dir, name);
    await writeFile(file, toml);
    return runCli(['check-config', '-c', file]);
  };
  const good = '[general]\n  hosts = ["localhost"]\n\n[[listen.c2s]]\n  port = 5222\n  ip_address = "127.0.0.1"\n\n[modules.mod_roster]\n';

  test('a good file passes with exit 0 and a one-line summary', async () => {
    const r = await check('good.toml', good);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /good\.toml: OK/);
    assert.match(lines[0]!, /localhost/);
    assert.match(lines[0]!, /mod_roster/);
    assert.equal(r.stderr, '');
  });

  test('the shipped configuration passes', async () => {
    const r = await runCli(['check-config']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /config[/\\]petrel\.toml: OK/);
  });

  test('an unknown key fails and the error names its TOML path', async () => {
    const r = await check('unknown.toml', good.replace('hosts = ["localhost"]', 'hosts = ["localhost"]\n  colour = "blue"'));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /general\.colour/);
  });

  test('a value of the wrong type fails and the error names its TOML path', async () => {
    const r = await check('type.toml', good.replace('port = 5222', 'port = "5222"'));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /listen\.c2s\[0\]\.port/);
  });

  test('a bad value fails and the error names its TOML path', async () => {
    const r = await check('value.toml', good.replace('hosts = ["localhost"]', 'hosts = ["localhost"]\n  loglevel = "loud"'));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /general\.loglevel/);
  });

  test('a bad value in a module section fails and names its path', async () => {
    const r = await check('module.toml', good + '[modules.mod_offline]\n  max_messages = 0\n');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /modules\.mod_offline\.max_messages/);
  });

  test('a plaintext listener on 0.0.0.0 passes with a warning naming it', async () => {
    const r = await check('public.toml', good.replace('ip_address = "127.0.0.1"', 'ip_address = "0.0.0.0"'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: listen\.c2s\[0\]: listener on 0\.0\.0\.0:\d+ has no tls table, so clients on other machines cannot log in/);
  });

  test('a file with three independent errors gets one line for each in one run, and exit 1', async () => {
    const r = await check('three.toml', good
      .replace('hosts = ["localhost"]', 'hosts = ["localhost"]\n  colour = "blue"')
      .replace('port = 5222', 'port = "5222"') + '[modules.mod_offline]\n  max_messages = 0\n');
    assert.equal(r.code, 1);
    assert.deepEqual(r.stderr.trim().split('\n'), [
      'petrel: configuration error: general.colour: unknown option',
      'petrel: configuration error: listen.c2s[0].port: expected an integer, got the string "5222"',
      'petrel: configuration error: modules.mod_offline.max_messages: must be at least 1, got 0',
    ]);
    assert.equal(r.stdout, '');
  });

  test('a file with errors of every kind gets all of them in one run, each naming its TOML path, and start refuses the same file with the same lines', async () => {
    // A callback module that lacks prepareBody, and one that does not load at all.
    await writeFile(join(dir, 'half.mjs'), 'export function shouldMakeReq() { return true; }\nexport function prepareHeaders() { return []; }\n');
    await writeFile(join(dir, 'broken.mjs'), 'export function shouldMakeReq( {\n');
    await writeFile(join(dir, 'notacert.pem'), 'this is not PEM\n');
    const pusher =
      '[outgoing_pools.http.http_pool]\n  [outgoing_pools.http.http_pool.connection]\n    host = "http://127.0.0.1:9"\n' +
      '[[modules.mod_event_pusher.backend.http]]\n  pool_name = "no_such_pool"\n  callback_module = "./half.mjs"\n' +
      '[[modules.mod_event_pusher.backend.http]]\n  path = "/b"\n  callback_module = "./broken.mjs"\n' +
      '[[modules.mod_event_pusher.backend.http]]\n  path = "/c"\n  callback_module = "nowhere_to_be_found"\n';
    const toml = good
      .replace('hosts = ["localhost"]', 'hosts = ["localhost"]\n  colour = "blue"')
      .replace('ip_address = "127.0.0.1"', 'ip_address = "127.0.0.1"\n  [listen.c2s.tls]\n    certfile = "notacert.pem"\n    keyfile = "missing-key.pem"') + pusher;
    const r = await check('everything.toml', toml);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    const expected = [
      /^petrel: configuration error: general\.colour: unknown option$/,
      /^petrel: configuration error: listen\.c2s\[0\]\.tls\.certfile: ".*notacert\.pem" holds no PEM certificate$/,
      /^petrel: configuration error: listen\.c2s\[0\]\.tls\.keyfile: file ".*missing-key\.pem" does not exist$/,
      /^petrel: configuration error: modules\.mod_event_pusher\.backend\.http\[0\]\.pool_name: no outgoing pool "no_such_pool"/,
      /^petrel: configuration error: modules\.mod_event_pusher\.backend\.http\[0\]\.callback_module: callback module "\.\/half\.mjs" .* does not export prepareBody;/,
      /^petrel: configuration error: modules\.mod_event_pusher\.backend\.http\[1\]\.callback_module: callback module "\.\/broken\.mjs" .* cannot be loaded/,
      /^petrel: configuration error: modules\.mod_event_pusher\.backend\.http\[2\]\.callback_module: callback module "nowhere_to_be_found" not found/,
    ];
    assert.equal(lines.length, expected.length, r.stderr);
    expected.forEach((re, i) => assert.match(lines[i]!, re));
    const started = await runCli(['start', '-c', join(dir, 'everything.toml')]);
    assert.equal(started.code, 1);
    assert.equal(started.stderr, r.stderr);
  });

  test('with the schema satisfied, a handler\'s missing pool and callback functions are still refused by check-config', async () => {
    await writeFile(join(dir, 'nobody.mjs'), 'export const nothing = 1;\n');
    const r = await check('pusher-only.toml', good + '[modules.mod_event_pusher.backend.http]\n  callback_module = "./nobody.mjs"\n');
    assert.equal(r.code, 1);
    assert.deepEqual(r.stderr.trim().split('\n').map((l) => l.replace(/ \(.*?nobody\.mjs\)/, '')), [
      'petrel: configuration error: modules.mod_event_pusher.backend.http.pool_name: no outgoing pool "http_pool" (define [outgoing_pools.http.http_pool])',
      'petrel: configuration error: modules.mod_event_pusher.backend.http.callback_module: callback module "./nobody.mjs" does not export shouldMakeReq, prepareHeaders, prepareBody; a callback module exports shouldMakeReq, prepareHeaders and prepareBody',
    ]);
  });

  test('PostgreSQL is asked only with --connect, and an unreachable one is an error naming the pool', async (t) => {
    const port = await freePort();
    const pg = `[outgoing_pools.rdbms.default]\n  call_timeout = 2000\n  [outgoing_pools.rdbms.default.connection]\n    driver = "pgsql"\n    host = "127.0.0.1"\n    port = ${port}\n    database = "petrel"\n    username = "petrel"\n    password = "x"\n[auth]\n  [auth.rdbms]\n`;
    const without = await check('pg.toml', good + pg);
    assert.equal(without.code, 0, without.stderr);
    const withConnect = await runCli(['check-config', '--connect', '-c', join(dir, 'pg.toml')]);
    assert.equal(withConnect.code, 1);
    assert.match(withConnect.stderr, new RegExp(`^petrel: configuration error: outgoing_pools\\.rdbms\\.default\\.connection: cannot use PostgreSQL database "petrel" at 127\\.0\\.0\\.1:${port} as "petrel": `));
    if (!(await portIsFree(5432))) {
      const real = pg.replace(`port = ${port}`, 'port = 5432').replace('username = "petrel"', 'username = "postgres"').replace('database = "petrel"', 'database = "postgres"');
      const ok = await runCli(['check-config', '--connect', '-c', await writeAndPath('pg-real.toml', good + real)]);
      assert.equal(ok.code, 0, ok.stderr);
    } else {
      t.diagnostic('PostgreSQL is not reachable at 127.0.0.1:5432: only the unreachable case was checked');
    }
  });

  const writeAndPath = async (name: string, toml: string) => {
    const file = join(dir, name);
    await writeFile(file, toml);
    return file;
  };

  test('a MongooseIM pool passes, with a warning for each option that has no effect in Petrel', async () => {
    const pool = '[outgoing_pools.http.http_pool]\n  scope = "global"\n  strategy = "available_worker"\n  workers = 5\n' +
      '  [outgoing_pools.http.http_pool.connection]\n    host = "http://127.0.0.1:8000"\n';
    const r = await check('mongooseim-pool.toml', good + pool);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stderr.trim().split('\n'), [
      'petrel: warning: outgoing_pools.http.http_pool.scope: accepted, no effect in Petrel (one pool per tag serves every host)',
      'petrel: warning: outgoing_pools.http.http_pool.strategy: accepted, no effect in Petrel (a request takes the first free connection)',
    ]);
    assert.match(r.stdout, /mongooseim-pool\.toml: OK/);
  });
});

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

test('start without -c uses the shipped configuration, with PETREL_DATA_DIR as its data directory', async (t) => {
  if (!(await portIsFree(5222))) {
    t.skip('127.0.0.1:5222, the port of the shipped configuration, is taken on this machine');
    return;
  }
  const dataDir = await tempDir('petrel-e2e-data-');
  const env = testEnv({ PETREL_DATA_DIR: dataDir });
  const server = new Petrel(dataDir, join(REPO_ROOT, 'config', 'petrel.toml'), [5222], 'localhost');
  try {
    const r = await runCli(['register', 'alice', 'localhost', 'default-pw'], { env });
    assert.equal(r.code, 0, r.stderr);
    await server.start({ env, withConfig: false });
    const started = await server.waitForLog((l) => l.what === 'server_started');
    assert.equal(started.config, join(REPO_ROOT, 'config', 'petrel.toml'));
    assert.equal(started.data_dir, dataDir);
    // The shipped listener offers STARTTLS with the certificate made on this first start.
    trustCertificate(await readFile(join(dataDir, 'cert.pem'), 'utf8'));
    const c = await connect({ port: 5222 }, 'alice', 'default-pw');
    await c.close();
    const auth = await server.waitForLog((l) => l.what === 'c2s_auth_ok');
    assert.equal(auth.tls, true);
  } finally {
    await server.dispose();
  }
});

test('start logs each compatibility option set in the file once, naming it', async () => {
  const pool = '[outgoing_pools.http.http_pool]\n  strategy = "next_worker"\n  [outgoing_pools.http.http_pool.connection]\n    host = "http://127.0.0.1:9"\n';
  const server = await startPetrel({ extraToml: pool });
  try {
    const line = await server.waitForLog((l) => l.what === 'config_option_ignored');
    assert.equal(line.option, 'outgoing_pools.http.http_pool.strategy');
    assert.equal(server.logs.filter((l) => l.what === 'config_option_ignored').length, 1);
  } finally {
    await server.dispose();
  }
});

describe('SIGTERM', () => {
  let server: Petrel;
  let client: TestClient;
  let raw: RawConnection;
  before(async () => {
    server = await startPetrel({ users: [['alice', 'pw']] });
    client = await connect(server, 'alice', 'pw', { resource: 'lib' });
    raw = await RawConnection.open(server.port);
    await raw.login('alice', 'pw', 'raw');
  });
  after(async () => {
    raw.destroy();
    await client.close();
    await server.dispose();
  });

  test('SIGTERM ends every session with </stream:stream> and the process exits 0', async () => {
    const { code, signal } = await server.stop();
    assert.equal(signal, null);
    assert.equal(code, 0, server.stderr);
    const text = await raw.untilClosed();
    assert.match(text, /<\/stream:stream>$/);
    await client.disconnected;
    assert.ok(server.logs.some((l) => l.what === 'server_stopped'));
  });
});
