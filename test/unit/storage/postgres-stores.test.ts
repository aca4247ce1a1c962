// openStores and the modules' data: each kind of data from the store its own
// option names, the embedded file and PostgreSQL side by side.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../../src/config/load.ts';
import { Hooks } from '../../../src/hooks/hooks.ts';
import { moduleSpecs, resolveModules } from '../../../src/modules/registry.ts';
import { dataHooks, openModuleData, removeUserData, storeLocations } from '../../../src/modules/storage.ts';
import type { RosterData } from '../../../src/modules/mod_roster.ts';
import type { OfflineData } from '../../../src/modules/mod_offline.ts';
import { outgoingPoolsSpec } from '../../../src/outgoing/spec.ts';
import { openStores } from '../../../src/storage/open.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../../e2e/postgres/db.ts';

delete process.env.PETREL_DATA_DIR;

const reachable = await pgReachable();

describe('stores split between the embedded file and PostgreSQL', { skip: reachable ? false : PG_UNREACHABLE }, () => {
  let db: TestDatabase;
  let dir: string;

  before(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'petrel-stores-'));
  });
  after(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const config = (extra: string) =>
    parseConfig(`[general]\nhosts = ["localhost"]\ndata_dir = "data"\n${db.toml}\n${extra}`, join(dir, 'petrel.toml'), {
      sections: { outgoing_pools: outgoingPoolsSpec },
      modules: moduleSpecs(),
    });

  test('accounts stay embedded while the roster is in PostgreSQL, and removing an account clears both', async () => {
    const c = config('[auth.internal]\n[modules.mod_roster]\nbackend = "rdbms"\n[modules.mod_offline]\n');
    const stores = await openStores(c);
    try {
      assert.deepEqual(storeLocations(c), { accounts: 'internal', mod_roster: 'rdbms', mod_offline: 'internal' });
      const data = await openModuleData(stores, resolveModules(c.modules));
      assert.deepEqual([...data].map(([name, d]) => [name, d.backend]), [['mod_roster', 'rdbms'], ['mod_offline', 'internal']]);
      const roster = (data.get('mod_roster') as RosterData).store;
      const offline = (data.get('mod_offline') as OfflineData).store;
      assert.equal(await stores.users.createUser('erin', 'localhost', { plain: 'pw' }), true);
      await roster.setItem('erin', 'localhost', { jid: 'frank@localhost', name: null, subscription: 'none', ask: null, pendingIn: false, groups: [] });
      await offline.store('erin', 'localhost', { xml: '<message/>', from: 'frank@localhost', timestamp: 1 });
      assert.ok(existsSync(join(dir, 'data', 'petrel.sqlite')));
      // The accounts are not in PostgreSQL: their table is not even made there.
      assert.deepEqual(await db.query("SELECT to_regclass('petrel_users') AS t"), [{ t: null }]);
      assert.deepEqual(await db.query('SELECT username, contact FROM petrel_roster'), [{ username: 'erin', contact: 'frank@localhost' }]);
      // As `petrel unregister` does: the account, then every module's rows through user_removed.
      assert.equal(await stores.users.removeUser('erin', 'localhost'), true);
      const hooks = new Hooks((err) => {
        throw err;
      });
      for (const reg of dataHooks(data)) hooks.add(reg);
      await removeUserData(hooks, 'erin', 'localhost');
      assert.deepEqual(await db.query('SELECT username FROM petrel_roster'), []);
      assert.equal(await offline.count('erin', 'localhost'), 0);
      assert.equal(await stores.users.userExists('erin', 'localhost'), false);
    } finally {
      await stores.close();
    }
  });
});
