// The accounts store, one contract over SQLite and PostgreSQL.
import { beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { ACCOUNTS } from '../../../src/storage/accounts.ts';
import type { StoredCredentials, UserStore } from '../../../src/storage/types.ts';
import { onEachBackend } from './backends.ts';

const creds: StoredCredentials = {
  sha256: { salt: 'c2FsdA==', iterations: 4096, storedKey: 'c3RvcmVk', serverKey: 'c2VydmVy' },
  sha1: { salt: 'c2FsdDE=', iterations: 4096, storedKey: 'czE=', serverKey: 'czI=' },
};

onEachBackend('the accounts store', (b) => {
  let users: UserStore;
  beforeEach(async () => {
    users = await b.access.open(ACCOUNTS, b.kind, 'auth.methods[0]');
  });

  test('opening creates the table and records its version under "accounts"', async () => {
    assert.deepEqual(
      (await b.query('SELECT component, version FROM petrel_schema_version')).map((r) => ({ ...r, version: Number(r.version) })),
      [{ component: 'accounts', version: 1 }],
    );
  });

  test('createUsers creates every account in one transaction, or none when one exists already, and says which', async () => {
    assert.equal(await users.createUsers([{ user: 'a1', domain: 'example.com', creds }, { user: 'a2', domain: 'example.com', creds }]), -1);
    assert.equal(await users.countUsers('example.com'), 2);
    const clash = await users.createUsers([
      { user: 'b1', domain: 'example.com', creds },
      { user: 'b2', domain: 'example.com', creds },
      { user: 'a2', domain: 'example.com', creds: { plain: 'other' } },
    ]);
    assert.equal(clash, 2);
    assert.equal(await users.userExists('b1', 'example.com'), false);
    assert.equal(await users.countUsers('example.com'), 2);
    assert.deepEqual(await users.getCredentials('a2', 'example.com'), creds);
    // The same account twice in one list: the second is the one that exists.
    assert.equal(await users.createUsers([{ user: 'c1', domain: 'example.com', creds }, { user: 'c1', domain: 'example.com', creds }]), 1);
    assert.equal(await users.userExists('c1', 'example.com'), false);
  });

  test('a created user exists and is counted per domain', async () => {
    assert.equal(await users.createUser('alice', 'example.com', creds), true);
    assert.equal(await users.createUser('bob', 'example.com', creds), true);
    assert.equal(await users.createUser('alice', 'other.org', creds), true);
    assert.equal(await users.userExists('alice', 'example.com'), true);
    assert.equal(await users.userExists('carol', 'example.com'), false);
    assert.equal(await users.countUsers('example.com'), 2);
    assert.equal(await users.countUsers('other.org'), 1);
    assert.equal(await users.countUsers('nowhere.net'), 0);
  });

  test('creating a user that already exists returns false and keeps the first credentials', async () => {
    assert.equal(await users.createUser('alice', 'example.com', creds), true);
    assert.equal(await users.createUser('alice', 'example.com', { plain: 'other' }), false);
    assert.deepEqual(await users.getCredentials('alice', 'example.com'), creds);
  });

  test('credentials come back exactly as stored', async () => {
    await users.createUser('alice', 'example.com', creds);
    await users.createUser('bob', 'example.com', { plain: 'pä$$ "wörd"' });
    assert.deepEqual(await users.getCredentials('alice', 'example.com'), creds);
    assert.deepEqual(await users.getCredentials('bob', 'example.com'), { plain: 'pä$$ "wörd"' });
    assert.equal(await users.getCredentials('carol', 'example.com'), null);
  });

  test('removing a user returns whether there was one and leaves the others', async () => {
    await users.createUser('alice', 'example.com', creds);
    await users.createUser('bob', 'example.com', creds);
    assert.equal(await users.removeUser('alice', 'example.com'), true);
    assert.equal(await users.removeUser('alice', 'example.com'), false);
    assert.equal(await users.userExists('alice', 'example.com'), false);
    assert.equal(await users.userExists('bob', 'example.com'), true);
  });

  test('accounts outlive a reopen, which does not migrate again', async () => {
    await users.createUser('alice', 'example.com', creds);
    const again = await (await b.reopen()).open(ACCOUNTS, b.kind, 'auth.methods[0]');
    assert.equal(await again.userExists('alice', 'example.com'), true);
    assert.deepEqual((await b.query('SELECT version FROM petrel_schema_version')).map((r) => Number(r.version)), [1]);
  });

  test('using a store whose access is closed rejects', async () => {
    await b.access.close();
    await assert.rejects(users.userExists('alice', 'example.com'));
    await b.reopen();
  });
});
