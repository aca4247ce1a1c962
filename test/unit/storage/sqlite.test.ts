// The embedded database itself: one file, WAL, busy timeout, shared by every
// "internal" store, and by the server and the command-line tool at once.
// (What each store keeps is checked by its contract suite, run on both stores.)
import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { parseConfig } from '../../../src/config/load.ts';
import { moduleSpecs } from '../../../src/modules/registry.ts';
import { OFFLINE_STORE } from '../../../src/modules/mod_offline/store.ts';
import { outgoingPoolsSpec } from '../../../src/outgoing/spec.ts';
import { ACCOUNTS } from '../../../src/storage/accounts.ts';
import { openStoreAccess, openStores, type OpenStoreAccess } from '../../../src/storage/open.ts';
import type { StoredCredentials } from '../../../src/storage/types.ts';

delete process.env.PETREL_DATA_DIR;

const creds: StoredCredentials = { plain: 'pw' };

let dir: string;
let file: string;
let access: OpenStoreAccess;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'petrel-sqlite-'));
  file = join(dir, 'nested', 'deeper', 'petrel.sqlite');
  access = openStoreAccess({ sqliteFile: file });
});

afterEach(async () => {
  await access.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('opening', () => {
  test('nothing is created until a store asks for the database', () => {
    assert.ok(!existsSync(join(dir, 'nested')));
    access.sqlite();
    assert.ok(existsSync(file));
  });

  test('the database is in WAL mode with synchronous NORMAL and a busy timeout', () => {
    const db = access.sqlite();
    assert.equal((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal');
    assert.equal((db.prepare('PRAGMA synchronous').get() as { synchronous: number }).synchronous, 1);
    const busy = db.prepare('PRAGMA busy_timeout').get() as Record<string, number>;
    assert.ok(Object.values(busy)[0]! >= 1000);
  });

  test('every store in it shares the one connection', async () => {
    await access.open(ACCOUNTS, 'internal', 'auth.methods[0]');
    await access.open(OFFLINE_STORE, 'internal', 'modules.mod_offline.backend');
    const rows = access.sqlite().prepare('SELECT component, version FROM petrel_schema_version ORDER BY component').all();
    assert.deepEqual(rows.map((r) => ({ ...r })), [{ component: 'accounts', version: 1 }, { component: 'mod_offline', version: 2 }]);
  });

  test('openStores puts petrel.sqlite in the data directory', async () => {
    const config = parseConfig('[general]\nhosts = ["localhost"]\ndata_dir = "data"\n', join(dir, 'petrel.toml'), {
      sections: { outgoing_pools: outgoingPoolsSpec },
      modules: moduleSpecs(),
    });
    const stores = await openStores(config);
    try {
      assert.equal(await stores.users.createUser('alice', 'localhost', creds), true);
      assert.ok(existsSync(join(dir, 'data', 'petrel.sqlite')));
    } finally {
      await stores.close();
    }
  });
});

describe('two connections to one file', () => {
  test('a user registered by a second connection is seen by the first, and the reverse', async () => {
    const users = await access.open(ACCOUNTS, 'internal', 'auth.methods[0]');
    const offline = await access.open(OFFLINE_STORE, 'internal', 'modules.mod_offline.backend');
    const cli = openStoreAccess({ sqliteFile: file });
    try {
      const cliUsers = await cli.open(ACCOUNTS, 'internal', 'auth.methods[0]');
      const cliOffline = await cli.open(OFFLINE_STORE, 'internal', 'modules.mod_offline.backend');
      assert.equal(await cliUsers.createUser('alice', 'example.com', creds), true);
      assert.equal(await users.userExists('alice', 'example.com'), true);
      await offline.store('alice', 'example.com', { xml: '<m/>', from: 'x@y', timestamp: 1 });
      assert.equal(await cliOffline.count('alice', 'example.com'), 1);
      await cliOffline.removeUser('alice', 'example.com');
      assert.equal(await cliUsers.removeUser('alice', 'example.com'), true);
      assert.equal(await users.userExists('alice', 'example.com'), false);
      assert.equal(await offline.count('alice', 'example.com'), 0);
    } finally {
      await cli.close();
    }
    // The first connection still works after the second has closed and checkpointed.
    assert.equal(await users.createUser('bob', 'example.com', creds), true);
  });

  test('a connection waits for the other one\'s write transaction instead of failing', async () => {
    const users = await access.open(ACCOUNTS, 'internal', 'auth.methods[0]');
    // Another thread holds the write lock for a while, as the command-line tool would.
    const holder = new Worker(
      `
      const { DatabaseSync } = require('node:sqlite');
      const { parentPort, workerData } = require('node:worker_threads');
      const db = new DatabaseSync(workerData.file);
      db.exec('BEGIN IMMEDIATE');
      db.prepare("INSERT INTO users (user, domain, credentials, created_at) VALUES ('held', 'example.com', '{}', 0)").run();
      parentPort.postMessage('locked');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
      db.exec('COMMIT');
      db.close();
      `,
      { eval: true, workerData: { file } },
    );
    const exited = once(holder, 'exit');
    try {
      await once(holder, 'message');
      const started = Date.now();
      assert.equal(await users.createUser('waiting', 'example.com', creds), true);
      assert.ok(Date.now() - started >= 100, 'the write went through only once the lock was released');
      assert.equal(await users.countUsers('example.com'), 2);
    } finally {
      await exited;
    }
  });
});

describe('closing', () => {
  test('closing checkpoints the WAL into the main file and is idempotent', async () => {
    const users = await access.open(ACCOUNTS, 'internal', 'auth.methods[0]');
    await users.createUser('alice', 'example.com', creds);
    await access.close();
    await access.close();
    const wal = file + '-wal';
    assert.ok(!existsSync(wal) || statSync(wal).size === 0);
    access = openStoreAccess({ sqliteFile: file });
    assert.equal(await (await access.open(ACCOUNTS, 'internal', 'auth.methods[0]')).userExists('alice', 'example.com'), true);
  });

  test('a closed access refuses to open stores', async () => {
    await access.close();
    assert.throws(() => access.sqlite(), /closed/);
    await assert.rejects(access.open(ACCOUNTS, 'internal', 'auth.methods[0]'), /closed/);
    access = openStoreAccess({ sqliteFile: file });
  });
});

test('"rdbms" without a pool is refused, naming the option that asked for it', async () => {
  await assert.rejects(access.open(OFFLINE_STORE, 'rdbms', 'modules.mod_offline.backend'), (err: Error & { path?: string }) => {
    assert.equal(err.path, 'modules.mod_offline.backend');
    assert.match(err.message, /"rdbms" needs an \[outgoing_pools\.rdbms\.default\] pool \(driver = "pgsql"\)/);
    return true;
  });
});
