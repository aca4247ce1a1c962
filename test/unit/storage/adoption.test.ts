// Stores made by the release that kept every table under one schema version
// are adopted as they are: a SQLite file with `PRAGMA user_version = 1` and
// no petrel_schema_version, and a PostgreSQL database whose
// petrel_schema_version says component "store" at version 1. Each is made
// here with that release's SQL, then opened as the server and the
// command-line tool open it (the accounts, then each module's data).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseConfig } from '../../../src/config/load.ts';
import { Hooks } from '../../../src/hooks/hooks.ts';
import { moduleSpecs, resolveModules } from '../../../src/modules/registry.ts';
import { dataHooks, openModuleData, removeUserData } from '../../../src/modules/storage.ts';
import type { RosterData } from '../../../src/modules/mod_roster.ts';
import type { OfflineData } from '../../../src/modules/mod_offline.ts';
import { outgoingPoolsSpec } from '../../../src/outgoing/spec.ts';
import { openStores } from '../../../src/storage/open.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../../e2e/postgres/db.ts';

delete process.env.PETREL_DATA_DIR;

const fixture = (name: string) => readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8');
const CREDS = JSON.stringify({ plain: 'pw' });

function load(dir: string, extra: string) {
  return parseConfig(`[general]\nhosts = ["localhost"]\ndata_dir = "data"\n${extra}\n[modules.mod_roster]\n${extra.includes('rdbms.default') ? 'backend = "rdbms"\n' : ''}[modules.mod_offline]\n${extra.includes('rdbms.default') ? 'backend = "rdbms"\n' : ''}`,
    join(dir, 'petrel.toml'), { sections: { outgoing_pools: outgoingPoolsSpec }, modules: moduleSpecs() });
}

/** Opens everything as the server does and checks the old rows are all there, then removes the account as `petrel unregister` does. */
async function openAndCheck(config: ReturnType<typeof load>, versions: () => Promise<Array<[string, number]>>) {
  const stores = await openStores(config);
  try {
    const data = await openModuleData(stores, resolveModules(config.modules));
    assert.deepEqual((await versions()).filter(([c]) => c !== 'store'), [['accounts', 1], ['mod_offline', 2], ['mod_roster', 1]]);
    assert.deepEqual(await stores.users.getCredentials('alice', 'localhost'), { plain: 'pw' });
    const roster = (data.get('mod_roster') as RosterData).store;
    assert.deepEqual(await roster.getRoster('alice', 'localhost'), [
      { jid: 'bob@localhost', name: 'Bob', subscription: 'both', ask: null, pendingIn: false, groups: ['Friends'] },
    ]);
    const offline = (data.get('mod_offline') as OfflineData).store;
    assert.equal(await offline.count('alice', 'localhost'), 1);
    // New rows go in beside the old ones.
    await offline.store('alice', 'localhost', { xml: '<message id="2"/>', from: 'bob@localhost/r', timestamp: 2 });
    assert.deepEqual((await offline.popAll('alice', 'localhost')).map((m) => m.xml), ['<message id="1"/>', '<message id="2"/>']);

    assert.equal(await stores.users.removeUser('alice', 'localhost'), true);
    const hooks = new Hooks((err) => {
      throw err;
    });
    for (const reg of dataHooks(data)) hooks.add(reg);
    await removeUserData(hooks, 'alice', 'localhost');
    assert.deepEqual(await roster.getRoster('alice', 'localhost'), []);
  } finally {
    await stores.close();
  }
  // Opening again finds every component up to date.
  const again = await openStores(config);
  await openModuleData(again, resolveModules(config.modules));
  await again.close();
}

describe('a SQLite file of the release with one user_version', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'petrel-adopt-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  test('is adopted with its accounts, rosters and offline messages', async () => {
    mkdirSync(join(dir, 'data'));
    const file = join(dir, 'data', 'petrel.sqlite');
    const old = new DatabaseSync(file);
    old.exec('PRAGMA journal_mode = WAL');
    old.exec(fixture('sqlite-v1.sql'));
    old.exec('PRAGMA user_version = 1');
    old.prepare("INSERT INTO users VALUES ('alice', 'localhost', ?, 1)").run(CREDS);
    old.exec(`INSERT INTO roster VALUES ('alice', 'localhost', 'bob@localhost', 'Bob', 'both', NULL, 0, '["Friends"]')`);
    old.exec(`INSERT INTO offline (user, domain, "from", xml, timestamp) VALUES ('alice', 'localhost', 'bob@localhost/r', '<message id="1"/>', 1)`);
    old.close();

    const peek = () => {
      const db = new DatabaseSync(file, { readOnly: true });
      try {
        return (db.prepare('SELECT component, version FROM petrel_schema_version ORDER BY component').all() as Array<{ component: string; version: number }>)
          .map((r): [string, number] => [r.component, Number(r.version)]);
      } finally {
        db.close();
      }
    };
    await openAndCheck(load(dir, '[auth.internal]'), async () => peek());
  });
});

const reachable = await pgReachable();

describe('a PostgreSQL database of the release with one "store" version', { skip: reachable ? false : PG_UNREACHABLE }, () => {
  let db: TestDatabase;
  let dir: string;
  before(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'petrel-adopt-pg-'));
  });
  after(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('is adopted with its accounts, rosters and offline messages', async () => {
    await db.query('CREATE TABLE petrel_schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)');
    await db.query(fixture('postgres-store-v1.sql'));
    await db.query("INSERT INTO petrel_schema_version VALUES ('store', 1)");
    await db.query("INSERT INTO petrel_users VALUES ('localhost', 'alice', $1::jsonb, 1)", [CREDS]);
    await db.query("INSERT INTO petrel_roster VALUES ('localhost', 'alice', 'bob@localhost', 'Bob', 'both', NULL, false, '{Friends}')");
    await db.query(`INSERT INTO petrel_offline (domain, username, sender, xml, stored_at) VALUES ('localhost', 'alice', 'bob@localhost/r', '<message id="1"/>', 1)`);

    const versions = async () =>
      (await db.query<{ component: string; version: number }>('SELECT component, version FROM petrel_schema_version ORDER BY component'))
        .map((r): [string, number] => [r.component, r.version]);
    await openAndCheck(load(dir, `[auth.rdbms]\n${db.toml}`), versions);
    // The old row stays, so that the release before can still open the database.
    assert.deepEqual((await versions()).find(([c]) => c === 'store'), ['store', 1]);
  });
});
