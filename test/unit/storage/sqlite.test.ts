import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { openSqliteStorage, type SqliteStorage } from '../../../src/storage/sqlite.ts';
import { openStorage } from '../../../src/storage/index.ts';
import type { RosterItem, StoredCredentials } from '../../../src/storage/types.ts';

const creds: StoredCredentials = {
  sha256: { salt: 'c2FsdA==', iterations: 4096, storedKey: 'c3RvcmVk', serverKey: 'c2VydmVy' },
  sha1: { salt: 'c2FsdDE=', iterations: 4096, storedKey: 'czE=', serverKey: 'czI=' },
};

function item(jid: string, over: Partial<RosterItem> = {}): RosterItem {
  return { jid, name: null, subscription: 'none', ask: null, pendingIn: false, groups: [], ...over };
}

let dir: string;
let file: string;
let storage: SqliteStorage;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'petrel-sqlite-'));
  file = join(dir, 'nested', 'deeper', 'petrel.sqlite');
  storage = openSqliteStorage(file);
});

afterEach(async () => {
  await storage.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('opening', () => {
  test('the parent directories of the database file are created', () => {
    assert.ok(existsSync(file));
  });

  test('the database is in WAL mode with synchronous NORMAL and a busy timeout', () => {
    const mode = storage.db.prepare('PRAGMA journal_mode').get() as { journal_mode: string };
    assert.equal(mode.journal_mode, 'wal');
    const sync = storage.db.prepare('PRAGMA synchronous').get() as { synchronous: number };
    assert.equal(sync.synchronous, 1);
    const busy = storage.db.prepare('PRAGMA busy_timeout').get() as Record<string, number>;
    assert.ok(Object.values(busy)[0]! >= 1000);
  });

  test('the schema version is recorded and reopening does not migrate again', async () => {
    const v = storage.db.prepare('PRAGMA user_version').get() as { user_version: number };
    assert.equal(v.user_version, 1);
    await storage.users.createUser('alice', 'example.com', creds);
    await storage.close();
    storage = openSqliteStorage(file);
    assert.equal(await storage.users.userExists('alice', 'example.com'), true);
  });

  test('openStorage puts petrel.sqlite in the data directory', async () => {
    const dataDir = join(dir, 'data');
    const s = openStorage(dataDir);
    try {
      assert.equal(s.file, join(dataDir, 'petrel.sqlite'));
      assert.ok(existsSync(join(dataDir, 'petrel.sqlite')));
    } finally {
      await s.close();
    }
  });
});

describe('users', () => {
  test('a created user exists and can be counted per domain', async () => {
    assert.equal(await storage.users.createUser('alice', 'example.com', creds), true);
    assert.equal(await storage.users.createUser('bob', 'example.com', creds), true);
    assert.equal(await storage.users.createUser('alice', 'other.org', creds), true);
    assert.equal(await storage.users.userExists('alice', 'example.com'), true);
    assert.equal(await storage.users.userExists('carol', 'example.com'), false);
    assert.equal(await storage.users.countUsers('example.com'), 2);
    assert.equal(await storage.users.countUsers('other.org'), 1);
    assert.equal(await storage.users.countUsers('nowhere.net'), 0);
  });

  test('creating a user that already exists returns false and keeps the first credentials', async () => {
    assert.equal(await storage.users.createUser('alice', 'example.com', creds), true);
    assert.equal(await storage.users.createUser('alice', 'example.com', { plain: 'other' }), false);
    assert.deepEqual(await storage.users.getCredentials('alice', 'example.com'), creds);
  });

  test('credentials come back exactly as stored', async () => {
    await storage.users.createUser('alice', 'example.com', creds);
    await storage.users.createUser('bob', 'example.com', { plain: 'pä$$ "wörd"' });
    assert.deepEqual(await storage.users.getCredentials('alice', 'example.com'), creds);
    assert.deepEqual(await storage.users.getCredentials('bob', 'example.com'), { plain: 'pä$$ "wörd"' });
    assert.equal(await storage.users.getCredentials('carol', 'example.com'), null);
  });

  test('removing a user returns whether there was one', async () => {
    await storage.users.createUser('alice', 'example.com', creds);
    assert.equal(await storage.users.removeUser('alice', 'example.com'), true);
    assert.equal(await storage.users.removeUser('alice', 'example.com'), false);
    assert.equal(await storage.users.userExists('alice', 'example.com'), false);
  });

  test('removing a user deletes their roster and offline messages but nobody else\'s', async () => {
    await storage.users.createUser('alice', 'example.com', creds);
    await storage.users.createUser('bob', 'example.com', creds);
    await storage.roster.setItem('alice', 'example.com', item('bob@example.com'));
    await storage.roster.setItem('bob', 'example.com', item('alice@example.com'));
    await storage.offline.store('alice', 'example.com', { xml: '<message/>', from: 'bob@example.com/r', timestamp: 1 });
    await storage.offline.store('bob', 'example.com', { xml: '<message/>', from: 'alice@example.com/r', timestamp: 1 });

    assert.equal(await storage.users.removeUser('alice', 'example.com'), true);
    assert.deepEqual(await storage.roster.getRoster('alice', 'example.com'), []);
    assert.equal(await storage.offline.count('alice', 'example.com'), 0);
    assert.equal((await storage.roster.getRoster('bob', 'example.com')).length, 1);
    assert.equal(await storage.offline.count('bob', 'example.com'), 1);
  });
});

describe('roster', () => {
  test('an item is stored with every field and read back alone or in the roster', async () => {
    const it = item('bob@example.com', { name: 'Bob', subscription: 'from', ask: 'subscribe', groups: ['Friends', 'Work'] });
    await storage.roster.setItem('alice', 'example.com', it);
    assert.deepEqual(await storage.roster.getItem('alice', 'example.com', 'bob@example.com'), it);
    assert.deepEqual(await storage.roster.getRoster('alice', 'example.com'), [it]);
  });

  test('a missing item reads as null', async () => {
    assert.equal(await storage.roster.getItem('alice', 'example.com', 'bob@example.com'), null);
  });

  test('setting an existing item replaces it', async () => {
    await storage.roster.setItem('alice', 'example.com', item('bob@example.com', { name: 'Bob', pendingIn: true }));
    const updated = item('bob@example.com', { name: null, subscription: 'both', groups: ['A'] });
    await storage.roster.setItem('alice', 'example.com', updated);
    assert.deepEqual(await storage.roster.getRoster('alice', 'example.com'), [updated]);
  });

  test('rosters are kept per owner and per domain', async () => {
    await storage.roster.setItem('alice', 'example.com', item('bob@example.com'));
    await storage.roster.setItem('alice', 'example.com', item('carol@example.com', { pendingIn: true }));
    await storage.roster.setItem('alice', 'other.org', item('dave@example.com'));
    await storage.roster.setItem('bob', 'example.com', item('alice@example.com'));
    const jids = (await storage.roster.getRoster('alice', 'example.com')).map((i) => i.jid);
    assert.deepEqual(jids.sort(), ['bob@example.com', 'carol@example.com']);
    assert.equal((await storage.roster.getItem('alice', 'example.com', 'carol@example.com'))!.pendingIn, true);
  });

  test('removing an item leaves the others', async () => {
    await storage.roster.setItem('alice', 'example.com', item('bob@example.com'));
    await storage.roster.setItem('alice', 'example.com', item('carol@example.com'));
    await storage.roster.removeItem('alice', 'example.com', 'bob@example.com');
    await storage.roster.removeItem('alice', 'example.com', 'nobody@example.com');
    assert.deepEqual((await storage.roster.getRoster('alice', 'example.com')).map((i) => i.jid), ['carol@example.com']);
  });
});

describe('offline messages', () => {
  test('messages are popped oldest first and then gone', async () => {
    for (let i = 0; i < 5; i++) {
      await storage.offline.store('alice', 'example.com', { xml: `<message id="${i}"/>`, from: 'bob@example.com/r', timestamp: 1000 + i });
    }
    assert.equal(await storage.offline.count('alice', 'example.com'), 5);
    const popped = await storage.offline.popAll('alice', 'example.com');
    assert.deepEqual(
      popped.map((m) => [m.xml, m.timestamp]),
      [0, 1, 2, 3, 4].map((i) => [`<message id="${i}"/>`, 1000 + i]),
    );
    assert.equal(popped[0]!.from, 'bob@example.com/r');
    assert.equal(await storage.offline.count('alice', 'example.com'), 0);
    assert.deepEqual(await storage.offline.popAll('alice', 'example.com'), []);
  });

  test('popping one user\'s messages leaves another user\'s', async () => {
    await storage.offline.store('alice', 'example.com', { xml: '<a/>', from: 'x@y', timestamp: 1 });
    await storage.offline.store('alice', 'other.org', { xml: '<b/>', from: 'x@y', timestamp: 2 });
    await storage.offline.store('bob', 'example.com', { xml: '<c/>', from: 'x@y', timestamp: 3 });
    assert.deepEqual((await storage.offline.popAll('alice', 'example.com')).map((m) => m.xml), ['<a/>']);
    assert.equal(await storage.offline.count('alice', 'other.org'), 1);
    assert.equal(await storage.offline.count('bob', 'example.com'), 1);
  });

  test('a message stored after a pop is kept for the next one', async () => {
    await storage.offline.store('alice', 'example.com', { xml: '<a/>', from: 'x@y', timestamp: 1 });
    await storage.offline.popAll('alice', 'example.com');
    await storage.offline.store('alice', 'example.com', { xml: '<b/>', from: 'x@y', timestamp: 2 });
    assert.deepEqual((await storage.offline.popAll('alice', 'example.com')).map((m) => m.xml), ['<b/>']);
  });
});

describe('two connections to one file', () => {
  test('a user registered by a second connection is seen by the first, and the reverse', async () => {
    const cli = openSqliteStorage(file);
    try {
      assert.equal(await cli.users.createUser('alice', 'example.com', creds), true);
      assert.equal(await storage.users.userExists('alice', 'example.com'), true);
      await storage.offline.store('alice', 'example.com', { xml: '<m/>', from: 'x@y', timestamp: 1 });
      assert.equal(await cli.offline.count('alice', 'example.com'), 1);
      assert.equal(await cli.users.removeUser('alice', 'example.com'), true);
      assert.equal(await storage.users.userExists('alice', 'example.com'), false);
      assert.equal(await storage.offline.count('alice', 'example.com'), 0);
    } finally {
      await cli.close();
    }
    // The first connection still works after the second has closed and checkpointed.
    assert.equal(await storage.users.createUser('bob', 'example.com', creds), true);
  });

  test('a connection waits for the other one\'s write transaction instead of failing', async () => {
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
      assert.equal(await storage.users.createUser('waiting', 'example.com', creds), true);
      assert.ok(Date.now() - started >= 100, 'the write went through only once the lock was released');
      assert.equal(await storage.users.countUsers('example.com'), 2);
    } finally {
      await exited;
    }
  });
});

describe('closing', () => {
  test('closing checkpoints the WAL into the main file and is idempotent', async () => {
    await storage.users.createUser('alice', 'example.com', creds);
    await storage.close();
    await storage.close();
    const wal = file + '-wal';
    assert.ok(!existsSync(wal) || statSync(wal).size === 0);
    storage = openSqliteStorage(file);
    assert.equal(await storage.users.userExists('alice', 'example.com'), true);
  });

  test('using a closed store rejects', async () => {
    await storage.close();
    await assert.rejects(storage.users.userExists('alice', 'example.com'), /closed/);
    storage = openSqliteStorage(file);
  });
});
