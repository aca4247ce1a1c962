// The offline store failing under a message: a disk that is really full (a
// small tmpfs, filled), a store that refuses a write (a trigger raising an
// error in SQLite), and PostgreSQL answering as it does when its disk is
// full (SQLSTATE 53100, raised by a trigger). Each time the sender is told
// with an error stanza, and nothing it was not told about is lost.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, writeSync, closeSync, rmSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { readFile, writeFile } from 'node:fs/promises';
import { preparePetrel, type Petrel } from '../helpers/server.ts';
import { PG_UNREACHABLE, createTestDatabase, pgReachable, type TestDatabase } from '../postgres/db.ts';
import { RawConnection, startHostile } from './setup.ts';

const ERROR_MESSAGE = /<message[^>]*type=['"]error['"][^>]*>[\s\S]*?<\/message>/g;

/** The error replies in `text`, by id, with their condition. */
function bounces(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.match(ERROR_MESSAGE) ?? []) {
    const id = /\bid=['"]([^'"]+)['"]/.exec(m)?.[1];
    const condition = /<([a-z-]+) xmlns=['"]urn:ietf:params:xml:ns:xmpp-stanzas['"]/.exec(m)?.[1];
    if (id !== undefined && condition !== undefined) out.set(id, condition);
  }
  return out;
}

/** The ids of the chat messages in `text`. */
function delivered(text: string): Set<string> {
  const out = new Set<string>();
  for (const m of text.match(/<message[^>]*type=['"]chat['"][^>]*>/g) ?? []) {
    const id = /\bid=['"]([^'"]+)['"]/.exec(m)?.[1];
    if (id !== undefined) out.add(id);
  }
  return out;
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  for (let waited = 0; !cond() && waited < timeoutMs; waited += 100) await new Promise((r) => setTimeout(r, 100));
}

/** A small tmpfs of our own, or null when this machine does not let us mount one (not root). */
function mountTmpfs(megabytes: number): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m,mode=0700`, 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    rmdirSync(dir);
    return null;
  }
}

describe('a full disk under the offline store', () => {
  const mount = mountTmpfs(16);
  let server: Petrel;
  before(async () => {
    if (mount === null) return;
    server = await startHostile({ dataDir: join(mount, 'data'), users: [['alice', 'pw-alice'], ['bob', 'pw-bob']] });
  });
  after(async () => {
    if (mount === null) return;
    try {
      await server?.dispose();
    } finally {
      execFileSync('umount', [mount]);
      rmdirSync(mount);
    }
  });

  test('while the disk is full, every message to an offline user is either bounced to its sender with resource-constraint or kept and delivered', { skip: mount === null ? 'cannot mount a tmpfs here (needs root): no real full disk to test with' : false }, async () => {
    const filler = join(mount!, 'filler');
    const alice = await RawConnection.open(server.port);
    try {
      await alice.login('alice', 'pw-alice', 'desk');
      // Fill the file system to the last block.
      const fd = openSync(filler, 'w');
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      } finally {
        closeSync(fd);
      }
      const ids: string[] = [];
      const body = 'x'.repeat(16 * 1024);
      for (let i = 0; i < 40; i++) {
        ids.push('full-' + i);
        alice.send(`<message to='bob@localhost' id='full-${i}' type='chat'><body>${body}</body></message>`);
      }
      await until(() => bounces(alice.data).size > 0, 15_000);
      const bounced = bounces(alice.data);
      assert.ok(bounced.size > 0, 'no message was bounced while the disk was full');
      for (const [id, condition] of bounced) assert.equal(condition, 'resource-constraint', id);
      // Space again: Bob logs in and gets every message that was not bounced.
      rmSync(filler);
      const bob = await RawConnection.open(server.port);
      try {
        await bob.login('bob', 'pw-bob', 'phone');
        bob.send('<presence/>');
        const accounted = () => {
          const b = bounces(alice.data);
          const d = delivered(bob.data);
          return ids.every((id) => b.has(id) || d.has(id));
        };
        await until(accounted, 15_000);
        const b = bounces(alice.data);
        const d = delivered(bob.data);
        for (const id of ids) assert.ok(b.has(id) !== d.has(id), `${id}: ${b.has(id) ? 'bounced and delivered' : 'neither bounced nor delivered'}`);
      } finally {
        bob.destroy();
      }
    } finally {
      alice.destroy();
      rmSync(filler, { force: true });
    }
  });
});

describe('a store that refuses the write', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({ users: [['alice', 'pw-alice'], ['bob', 'pw-bob']] });
  });
  after(async () => {
    await server.dispose();
  });

  test('a message the offline store fails to write is bounced to its sender with internal-server-error, and the next one, once the store works, is kept', async () => {
    // The server's own SQLite file, with a trigger that makes every insert into mod_offline's table fail.
    const db = new DatabaseSync(join(server.dir, 'data', 'petrel.sqlite'), { timeout: 5000 });
    const alice = await RawConnection.open(server.port);
    try {
      db.exec("CREATE TRIGGER offline_refused BEFORE INSERT ON offline BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END;");
      await alice.login('alice', 'pw-alice', 'desk');
      alice.send("<message to='bob@localhost' id='refused' type='chat'><body>one</body></message>");
      await alice.waitFor(/<message[^>]*type=['"]error['"][\s\S]*?<\/message>/, 10_000);
      assert.equal(bounces(alice.data).get('refused'), 'internal-server-error');
      await server.waitForLog((l) => l.what === 'offline_store_failed');
      db.exec('DROP TRIGGER offline_refused');
      alice.send("<message to='bob@localhost' id='kept' type='chat'><body>two</body></message>");
      const bob = await RawConnection.open(server.port);
      try {
        await bob.login('bob', 'pw-bob', 'phone');
        bob.send('<presence/>');
        await bob.waitFor(/<message[^>]*id=['"]kept['"]/, 10_000);
        assert.equal(delivered(bob.data).has('refused'), false);
        assert.equal(bounces(alice.data).has('kept'), false);
      } finally {
        bob.destroy();
      }
    } finally {
      alice.destroy();
      db.close();
    }
  });
});

describe('PostgreSQL out of space under the offline store', async () => {
  const reachable = await pgReachable();
  let db: TestDatabase;
  let server: Petrel;
  before(async () => {
    if (!reachable) return;
    db = await createTestDatabase();
    // Accounts stay in the embedded store; only the offline messages are in PostgreSQL.
    server = await preparePetrel({ extraToml: db.toml, users: [['alice', 'pw-alice'], ['bob', 'pw-bob']] });
    const toml = (await readFile(server.configPath, 'utf8')).replace('[modules.mod_offline]\n', '[modules.mod_offline]\n  backend = "rdbms"\n');
    await writeFile(server.configPath, toml);
    await server.start();
  });
  after(async () => {
    await server?.dispose();
    await db?.drop();
  });

  test('a message PostgreSQL refuses with disk_full is bounced to its sender with resource-constraint', { skip: reachable ? false : PG_UNREACHABLE }, async () => {
    // What PostgreSQL says when its disk is full (SQLSTATE 53100), raised by a trigger on mod_offline's table.
    await db.query(`CREATE FUNCTION petrel_test_full() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$`);
    await db.query('CREATE TRIGGER petrel_test_full BEFORE INSERT ON petrel_offline FOR EACH ROW EXECUTE FUNCTION petrel_test_full()');
    const alice = await RawConnection.open(server.port);
    try {
      await alice.login('alice', 'pw-alice', 'desk');
      alice.send("<message to='bob@localhost' id='pg-full' type='chat'><body>one</body></message>");
      await alice.waitFor(/<message[^>]*type=['"]error['"][\s\S]*?<\/message>/, 10_000);
      assert.equal(bounces(alice.data).get('pg-full'), 'resource-constraint');
      await db.query('DROP TRIGGER petrel_test_full ON petrel_offline');
      alice.send("<message to='bob@localhost' id='pg-kept' type='chat'><body>two</body></message>");
      const bob = await RawConnection.open(server.port);
      try {
        await bob.login('bob', 'pw-bob', 'phone');
        bob.send('<presence/>');
        await bob.waitFor(/<message[^>]*id=['"]pg-kept['"]/, 10_000);
        assert.equal(delivered(bob.data).has('pg-full'), false);
      } finally {
        bob.destroy();
      }
    } finally {
      alice.destroy();
    }
  });
});
