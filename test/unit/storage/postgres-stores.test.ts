// openStores: each kind of data from the store the configuration names, the
// embedded file and PostgreSQL side by side.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../../src/config/load.ts';
import { moduleSpecs } from '../../../src/modules/registry.ts';
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
    const stores = await openStores(config('[auth.internal]\n[modules.mod_roster]\nbackend = "rdbms"\n[modules.mod_offline]\n'));
    try {
      assert.deepEqual(stores.selection, { users: 'internal', roster: 'rdbms', offline: 'internal', outbox: 'internal' });
      const s = stores.storage;
      assert.equal(await s.users.createUser('erin', 'localhost', { plain: 'pw' }), true);
      await s.roster.setItem('erin', 'localhost', { jid: 'frank@localhost', name: null, subscription: 'none', ask: null, pendingIn: false, groups: [] });
      await s.offline.store('erin', 'localhost', { xml: '<message/>', from: 'frank@localhost', timestamp: 1 });
      assert.ok(existsSync(join(dir, 'data', 'petrel.sqlite')));
      assert.deepEqual(await db.query('SELECT username FROM petrel_users'), []);
      assert.deepEqual(await db.query('SELECT username, contact FROM petrel_roster'), [{ username: 'erin', contact: 'frank@localhost' }]);
      assert.equal(await s.users.removeUser('erin', 'localhost'), true);
      assert.deepEqual(await db.query('SELECT username FROM petrel_roster'), []);
      assert.equal(await s.offline.count('erin', 'localhost'), 0);
      assert.equal(await s.users.userExists('erin', 'localhost'), false);
    } finally {
      await stores.storage.close();
    }
  });

  test('the outbox opens in PostgreSQL when outbox_backend is "rdbms"', async () => {
    const stores = await openStores(config('[modules.mod_event_pusher]\noutbox_backend = "rdbms"\n'));
    try {
      const outbox = await stores.openOutbox();
      const id = await outbox.append({
        handler: 'h', hostType: 'localhost', eventId: 'msg_x', payload: new Uint8Array([1]), createdAt: 1, claimed: false,
      });
      await outbox.close();
      assert.deepEqual(await db.query('SELECT id::int, event_id FROM petrel_event_outbox'), [{ id, event_id: 'msg_x' }]);
    } finally {
      await stores.storage.close();
    }
  });
});
