// What the modules keep, seen from outside: `petrel unregister` removes an
// account's roster and offline messages with no server running; a server
// without mod_roster still exchanges presence; and a server and command-line
// tool started under a permissive umask keep the data directory 0700 and its
// files 0600.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { preparePetrel, runCli, testEnv, type Petrel } from './helpers/server.ts';
import { connect, xml, type TestClient } from './helpers/client.ts';

const NS_ROSTER = 'jabber:iq:roster';

describe('petrel unregister with no server running', () => {
  let server: Petrel;
  before(async () => {
    server = await preparePetrel({ users: [['alice', 'pw-alice'], ['bob', 'pw-bob']] });
  });
  after(async () => {
    await server.dispose();
  });

  test('removes the account with its roster and offline messages, and nobody else\'s', async () => {
    await server.start();
    const alice = await connect(server, 'alice', 'pw-alice');
    await alice.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: NS_ROSTER }, xml('item', { jid: 'bob@localhost' }))));
    await alice.close();
    const bob = await connect(server, 'bob', 'pw-bob');
    await bob.iq(xml('iq', { type: 'set' }, xml('query', { xmlns: NS_ROSTER }, xml('item', { jid: 'alice@localhost' }))));
    await bob.message('alice@localhost', 'for later');
    await bob.close();
    await server.stop();

    const file = join(server.dir, 'data', 'petrel.sqlite');
    const count = (table: string, user: string) => {
      const db = new DatabaseSync(file, { readOnly: true });
      try {
        return Number((db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE user = ?`).get(user) as { n: number }).n);
      } finally {
        db.close();
      }
    };
    assert.equal(count('roster', 'alice'), 1);
    assert.equal(count('offline', 'alice'), 1);

    const r = await server.cli(['unregister', 'alice', 'localhost']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /alice@localhost unregistered\n/);
    assert.equal(count('users', 'alice'), 0);
    assert.equal(count('roster', 'alice'), 0);
    assert.equal(count('offline', 'alice'), 0);
    assert.equal(count('users', 'bob'), 1);
    assert.equal(count('roster', 'bob'), 1);
  });
});

describe('a server without mod_roster', () => {
  let server: Petrel;
  const clients: TestClient[] = [];
  before(async () => {
    server = await preparePetrel({ users: [['alice', 'pw-alice'], ['bob', 'pw-bob']] });
    const toml = (await readFile(server.configPath, 'utf8')).replace('[modules.mod_roster]\n', '');
    await writeFile(server.configPath, toml);
    await server.start();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.dispose();
  });

  test('starts, says where each module\'s data lives, and keeps no roster table', async () => {
    const started = await server.waitForLog((l) => l.what === 'server_started');
    assert.deepEqual(started.stores, { accounts: 'internal', mod_offline: 'internal' });
    const db = new DatabaseSync(join(server.dir, 'data', 'petrel.sqlite'), { readOnly: true });
    try {
      assert.equal(db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'roster'").get(), undefined);
    } finally {
      db.close();
    }
  });

  test('a user\'s resources still see each other\'s presence, and a subscription request reaches the contact', async () => {
    const desk = await connect(server, 'alice', 'pw-alice', { resource: 'desk' });
    const phone = await connect(server, 'alice', 'pw-alice', { resource: 'phone' });
    const bob = await connect(server, 'bob', 'pw-bob', { resource: 'desk' });
    clients.push(desk, phone, bob);
    await phone.available();
    await bob.available();
    const seen = phone.waitFor((el) => el.name === 'presence' && el.attrs.from === desk.jid && el.attrs.type === undefined);
    await desk.available();
    await seen;
    const asked = bob.waitFor((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === 'alice@localhost');
    await desk.send(xml('presence', { to: 'bob@localhost', type: 'subscribe' }));
    await asked;
  });
});

describe('under a permissive umask', () => {
  let server: Petrel;
  // Every process started here (the command-line tool and the server) runs with umask 000.
  const env = testEnv({ NODE_OPTIONS: '--import=data:text/javascript,process.umask(0)' });
  before(async () => {
    server = await preparePetrel();
  });
  after(async () => {
    await server.dispose();
  });

  const mode = (path: string) => statSync(path).mode & 0o777;

  test('the data directory is 0700 and the database files and control socket 0600', async () => {
    const r = await runCli(['register', 'alice', 'localhost', 'pw-alice', '-c', server.configPath], { env });
    assert.equal(r.code, 0, r.stderr);
    const data = join(server.dir, 'data');
    assert.equal(mode(data), 0o700);
    assert.equal(mode(join(data, 'petrel.sqlite')), 0o600);
    await server.start({ env });
    const c = await connect(server, 'alice', 'pw-alice');
    await c.message('bob@localhost', 'makes the server write');
    await c.close();
    for (const f of ['petrel.sqlite', 'petrel.sqlite-wal', 'petrel.sqlite-shm', 'petrel.sock']) {
      assert.ok(existsSync(join(data, f)), `${f} exists while the server runs`);
      assert.equal(mode(join(data, f)), 0o600, f);
    }
    assert.equal(mode(data), 0o700);
    await server.stop();
  });

  test('a data directory left open to others by an earlier release is made 0700 before the socket is in it', async () => {
    const other = await preparePetrel();
    try {
      const data = join(other.dir, 'data');
      await mkdir(data);
      await chmod(data, 0o755);
      await other.start({ env });
      assert.equal(mode(data), 0o700);
      assert.equal(mode(join(data, 'petrel.sock')), 0o600);
    } finally {
      await other.dispose();
    }
  });
});
