// mod_roster's store, one contract over SQLite and PostgreSQL.
import { beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { ROSTER_STORE, type RosterStore } from '../../../../src/modules/mod_roster/store.ts';
import type { RosterItem } from '../../../../src/routing/types.ts';
import { onEachBackend } from '../../storage/backends.ts';
import { boundedRoster } from '../../../../src/modules/mod_roster/limits.ts';

const item = (jid: string, over: Partial<RosterItem> = {}): RosterItem => ({
  jid, name: null, subscription: 'none', ask: null, pendingIn: false, groups: [], ...over,
});

onEachBackend('the roster store', (b) => {
  let roster: RosterStore;
  beforeEach(async () => {
    roster = await b.access.open(ROSTER_STORE, b.kind, 'modules.mod_roster.backend');
  });

  test('opening creates the table and records its version under "mod_roster"', async () => {
    assert.deepEqual(
      (await b.query('SELECT component, version FROM petrel_schema_version')).map((r) => [r.component, Number(r.version)]),
      [['mod_roster', 1]],
    );
  });

  test('an item is stored with every field and read back alone or in the roster', async () => {
    const it = item('bob@example.com', { name: 'Bob', subscription: 'from', ask: 'subscribe', groups: ['Friends', 'Work, "quoted"'] });
    await roster.setItem('alice', 'example.com', it);
    assert.deepEqual(await roster.getItem('alice', 'example.com', 'bob@example.com'), it);
    assert.deepEqual(await roster.getRoster('alice', 'example.com'), [it]);
  });

  test('a missing item reads as null', async () => {
    assert.equal(await roster.getItem('alice', 'example.com', 'bob@example.com'), null);
  });

  test('setting an existing item replaces it', async () => {
    await roster.setItem('alice', 'example.com', item('bob@example.com', { name: 'Bob', pendingIn: true }));
    const updated = item('bob@example.com', { name: null, subscription: 'both', groups: ['A'] });
    await roster.setItem('alice', 'example.com', updated);
    assert.deepEqual(await roster.getRoster('alice', 'example.com'), [updated]);
  });

  test('a roster is listed in contact order', async () => {
    await roster.setItem('bob', 'localhost', item('zed@localhost', { subscription: 'both', pendingIn: true }));
    await roster.setItem('bob', 'localhost', item('amy@localhost', { subscription: 'to' }));
    assert.deepEqual((await roster.getRoster('bob', 'localhost')).map((r) => r.jid), ['amy@localhost', 'zed@localhost']);
  });

  test('rosters are kept per owner and per domain', async () => {
    await roster.setItem('alice', 'example.com', item('bob@example.com'));
    await roster.setItem('alice', 'example.com', item('carol@example.com', { pendingIn: true }));
    await roster.setItem('alice', 'other.org', item('dave@example.com'));
    await roster.setItem('bob', 'example.com', item('alice@example.com'));
    const jids = (await roster.getRoster('alice', 'example.com')).map((i) => i.jid);
    assert.deepEqual(jids, ['bob@example.com', 'carol@example.com']);
    assert.equal((await roster.getItem('alice', 'example.com', 'carol@example.com'))!.pendingIn, true);
  });

  test('removing an item leaves the others', async () => {
    await roster.setItem('alice', 'example.com', item('bob@example.com'));
    await roster.setItem('alice', 'example.com', item('carol@example.com'));
    await roster.removeItem('alice', 'example.com', 'bob@example.com');
    await roster.removeItem('alice', 'example.com', 'nobody@example.com');
    assert.deepEqual((await roster.getRoster('alice', 'example.com')).map((i) => i.jid), ['carol@example.com']);
  });

  test('removing a user deletes their roster and nobody else\'s', async () => {
    await roster.setItem('alice', 'example.com', item('bob@example.com'));
    await roster.setItem('alice', 'example.com', item('carol@example.com'));
    await roster.setItem('bob', 'example.com', item('alice@example.com'));
    await roster.setItem('alice', 'other.org', item('bob@example.com'));
    await roster.removeUser('alice', 'example.com');
    assert.deepEqual(await roster.getRoster('alice', 'example.com'), []);
    assert.equal((await roster.getRoster('bob', 'example.com')).length, 1);
    assert.equal((await roster.getRoster('alice', 'other.org')).length, 1);
  });

  test('items outlive a reopen', async () => {
    await roster.setItem('alice', 'example.com', item('bob@example.com', { subscription: 'both' }));
    const again = await (await b.reopen()).open(ROSTER_STORE, b.kind, 'modules.mod_roster.backend');
    assert.deepEqual(await again.getRoster('alice', 'example.com'), [item('bob@example.com', { subscription: 'both' })]);
  });

  test('a roster stored over the limits is read cut to them: max_items items, names cut, over-long groups left out', async () => {
    const l = { max_items: 5, max_name_length: 8, max_groups: 2, max_group_length: 4 };
    for (let i = 0; i < 12; i++) {
      await roster.setItem('big', 'example.com', item(`c${String(i).padStart(2, '0')}@example.com`, { name: '"'.repeat(100), groups: ['ok', 'far too long', 'g2', 'g3'], subscription: 'from' }));
    }
    assert.equal(await roster.count('big', 'example.com'), 12);
    const bounded = boundedRoster(roster, l);
    const got = await bounded.getRoster('big', 'example.com');
    assert.deepEqual(got.map((i) => i.jid), ['c00', 'c01', 'c02', 'c03', 'c04'].map((c) => `${c}@example.com`));
    for (const i of got) {
      assert.equal(i.name, '"'.repeat(8));
      assert.deepEqual(i.groups, ['ok', 'g2']);
    }
    assert.deepEqual((await bounded.getItem('big', 'example.com', 'c07@example.com'))?.groups, ['ok', 'g2']);
    // Full: a new contact is refused, an existing one can still change.
    await assert.rejects(bounded.setItem('big', 'example.com', item('new@example.com')), /not-allowed/);
    await bounded.setItem('big', 'example.com', item('c03@example.com', { name: 'Three' }));
    assert.equal((await roster.getItem('big', 'example.com', 'c03@example.com'))?.name, 'Three');
  });
});
