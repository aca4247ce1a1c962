import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSaslServer, makeStoredCredentials } from '../../../../src/xmpp/sasl/index.ts';
import type { SaslOptions } from '../../../../src/xmpp/sasl/index.ts';
import type { StoredCredentials } from '../../../../src/storage/types.ts';

async function opts(format: 'scram' | 'plain'): Promise<SaslOptions> {
  const users = new Map<string, StoredCredentials>([['alice', await makeStoredCredentials('pencil', { format, iterations: 64 })]]);
  return { domain: 'example.com', iterations: 64, lookup: async (u) => users.get(u) ?? null };
}

const msg = (s: string) => Buffer.from(s, 'utf8');

for (const format of ['scram', 'plain'] as const) {
  test(`PLAIN with the right password succeeds against ${format} credentials`, async () => {
    const s = createSaslServer('PLAIN', await opts(format));
    assert.equal(s.mechanism, 'PLAIN');
    assert.deepEqual(await s.step(msg('\0alice\0pencil')), { kind: 'success', username: 'alice' });
  });

  test(`PLAIN with a wrong password fails as not-authorized against ${format} credentials`, async () => {
    const s = createSaslServer('PLAIN', await opts(format));
    assert.deepEqual(await s.step(msg('\0alice\0pencil!')), { kind: 'failure', condition: 'not-authorized' });
  });
}

test('PLAIN for an unknown user fails exactly like a wrong password', async () => {
  const s = createSaslServer('PLAIN', await opts('scram'));
  assert.deepEqual(await s.step(msg('\0mallory\0pencil')), { kind: 'failure', condition: 'not-authorized' });
});

test('PLAIN prepares the user name, so a capitalised or full-width name logs in', async () => {
  const o = await opts('scram');
  assert.deepEqual(await createSaslServer('PLAIN', o).step(msg('\0Alice\0pencil')), { kind: 'success', username: 'alice' });
  assert.deepEqual(await createSaslServer('PLAIN', o).step(msg('\0\uFF41lice\0pencil')), { kind: 'success', username: 'alice' });
});

test('PLAIN without an initial response sends an empty challenge and then takes the credentials', async () => {
  const s = createSaslServer('PLAIN', await opts('plain'));
  assert.deepEqual(await s.step(null), { kind: 'challenge', data: Buffer.alloc(0) });
  assert.deepEqual(await s.step(msg('\0alice\0pencil')), { kind: 'success', username: 'alice' });
});

test('PLAIN accepts an authzid equal to the bare JID of the user, in any case', async () => {
  const o = await opts('plain');
  assert.equal((await createSaslServer('PLAIN', o).step(msg('alice@example.com\0alice\0pencil'))).kind, 'success');
  assert.equal((await createSaslServer('PLAIN', o).step(msg('Alice@EXAMPLE.com\0alice\0pencil'))).kind, 'success');
});

test('PLAIN rejects an authzid naming another user, a full JID or another domain', async () => {
  const o = await opts('plain');
  for (const authzid of ['bob@example.com', 'alice@example.com/res', 'alice@example.org', 'not a jid@']) {
    const r = await createSaslServer('PLAIN', o).step(msg(`${authzid}\0alice\0pencil`));
    assert.deepEqual(r, { kind: 'failure', condition: 'invalid-authzid' }, authzid);
  }
});

test('PLAIN with the wrong number of fields or empty fields is a malformed request', async () => {
  const o = await opts('plain');
  for (const m of ['alice\0pencil', '\0alice\0pencil\0x', '\0\0pencil', '\0alice\0', '']) {
    const r = await createSaslServer('PLAIN', o).step(msg(m));
    assert.equal(r.kind === 'failure' && r.condition, 'malformed-request', JSON.stringify(m));
  }
});

test('PLAIN with invalid UTF-8 fails with incorrect-encoding', async () => {
  const r = await createSaslServer('PLAIN', await opts('plain')).step(Buffer.from([0, 0x61, 0, 0xff, 0xfe]));
  assert.deepEqual(r, { kind: 'failure', condition: 'incorrect-encoding' });
});

test('PLAIN with a user name that cannot be prepared fails as not-authorized', async () => {
  const r = await createSaslServer('PLAIN', await opts('plain')).step(msg('\0a@b\0pencil'));
  assert.deepEqual(r, { kind: 'failure', condition: 'not-authorized' });
});

test('PLAIN reports a storage failure as temporary-auth-failure instead of throwing', async () => {
  const s = createSaslServer('PLAIN', { domain: 'example.com', lookup: async () => { throw new Error('db down'); } });
  assert.deepEqual(await s.step(msg('\0alice\0pencil')), { kind: 'failure', condition: 'temporary-auth-failure' });
});

test('PLAIN refuses a second attempt on the same exchange', async () => {
  const s = createSaslServer('PLAIN', await opts('plain'));
  await s.step(msg('\0alice\0wrong'));
  const r = await s.step(msg('\0alice\0pencil'));
  assert.equal(r.kind, 'failure');
});
