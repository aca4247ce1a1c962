import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { makeScramCredentials, makeStoredCredentials, verifyPassword } from '../../../../src/xmpp/sasl/index.ts';

type H = 'sha1' | 'sha256';
const hmac = (h: H, key: Buffer, data: string) => createHmac(h, key).update(data).digest();
const xor = (a: Buffer, b: Buffer) => Buffer.from(a.map((x, i) => x ^ b[i]!));

/**
 * Checks stored keys against a published exchange: the client proof must
 * recover a ClientKey hashing to StoredKey, and ServerKey must sign the
 * AuthMessage to the published server signature.
 */
function checkVector(h: H, creds: { storedKey: string; serverKey: string }, authMessage: string, proof: string, verifier: string): void {
  const storedKey = Buffer.from(creds.storedKey, 'base64');
  const clientKey = xor(Buffer.from(proof, 'base64'), hmac(h, storedKey, authMessage));
  assert.deepEqual(createHash(h).update(clientKey).digest(), storedKey);
  assert.equal(hmac(h, Buffer.from(creds.serverKey, 'base64'), authMessage).toString('base64'), verifier);
}

test('makeScramCredentials reproduces the keys of the RFC 7677 SCRAM-SHA-256 example', async () => {
  const creds = await makeScramCredentials('pencil', 'sha256', 4096, Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'));
  assert.equal(creds.salt, 'W22ZaJ0SNY7soEsUEjb6gQ==');
  assert.equal(creds.iterations, 4096);
  const nonce = 'rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
  const authMessage = `n=user,r=rOprNGfwEbeRWgbNEkqO,r=${nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=${nonce}`;
  checkVector('sha256', creds, authMessage, 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
});

test('makeScramCredentials reproduces the keys of the RFC 5802 SCRAM-SHA-1 example', async () => {
  const creds = await makeScramCredentials('pencil', 'sha1', 4096, Buffer.from('QSXCR+Q6sek8bf92', 'base64'));
  const nonce = 'fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j';
  const authMessage = `n=user,r=fyko+d2lbbFgONRv9qkxdawL,r=${nonce},s=QSXCR+Q6sek8bf92,i=4096,c=biws,r=${nonce}`;
  checkVector('sha1', creds, authMessage, 'v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=', 'rmF9pqV8S7suAoZWja4dJRkFsKQ=');
});

test('a fresh salt is random and 16 bytes long', async () => {
  const a = await makeScramCredentials('pw', 'sha256', 1);
  const b = await makeScramCredentials('pw', 'sha256', 1);
  assert.equal(Buffer.from(a.salt, 'base64').length, 16);
  assert.notEqual(a.salt, b.salt);
  assert.notEqual(a.storedKey, b.storedKey);
});

test('scram stored credentials carry both SHA-1 and SHA-256 entries and no password', async () => {
  const c = await makeStoredCredentials('secret', { format: 'scram', iterations: 100 });
  assert.equal(c.plain, undefined);
  assert.equal(c.sha1?.iterations, 100);
  assert.equal(c.sha256?.iterations, 100);
  assert.equal(Buffer.from(c.sha1!.storedKey, 'base64').length, 20);
  assert.equal(Buffer.from(c.sha256!.storedKey, 'base64').length, 32);
});

test('plain stored credentials keep the password', async () => {
  assert.deepEqual(await makeStoredCredentials('secret', { format: 'plain', iterations: 100 }), { plain: 'secret' });
});

test('verifyPassword accepts the right password and rejects a wrong one for either format', async () => {
  for (const format of ['scram', 'plain'] as const) {
    const c = await makeStoredCredentials('secret', { format, iterations: 10 });
    assert.equal(await verifyPassword('secret', c), true);
    assert.equal(await verifyPassword('Secret', c), false);
  }
  assert.equal(await verifyPassword('x', {}), false);
});

test('passwords are compared after SASLprep, so a no-break space matches a space', async () => {
  const c = await makeStoredCredentials('a b', { format: 'scram', iterations: 10 });
  assert.equal(await verifyPassword('a\u00A0b', c), true);
});
