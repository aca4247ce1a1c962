// The self-signed certificate of a tls table without certfile and keyfile:
// made when missing, kept while it fits, made again when it no longer does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSelfSigned, selfSignedProblem } from '../../../src/c2s/self-signed.ts';

test('a missing certificate is made for every host, its key 0600 in a 0700 directory, and kept on the next start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cert-'));
  try {
    const data = join(dir, 'data');
    const cert = join(data, 'cert.pem');
    const key = join(data, 'key.pem');
    const made = await ensureSelfSigned(cert, key, ['localhost', 'chat.example']);
    assert.equal(made.made, 'missing');
    assert.equal(statSync(data).mode & 0o777, 0o700);
    assert.equal(statSync(key).mode & 0o777, 0o600);
    const x = new X509Certificate(readFileSync(cert));
    assert.equal(x.subjectAltName, 'DNS:localhost, DNS:chat.example');
    assert.equal(x.fingerprint256, made.fingerprint);
    const again = await ensureSelfSigned(cert, key, ['localhost', 'chat.example']);
    assert.equal(again.made, null);
    assert.equal(again.fingerprint, made.fingerprint);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the certificate is made again when a host is added, when it expires within 30 days, or when a file does not parse', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cert-'));
  try {
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    const first = await ensureSelfSigned(cert, key, ['localhost']);
    assert.equal(selfSignedProblem(cert, key, ['localhost', 'new.example']), 'it does not name new.example');
    assert.equal(selfSignedProblem(cert, key, ['localhost'], Date.now() + 340 * 86_400_000), 'it expires within 30 days');
    const renewed = await ensureSelfSigned(cert, key, ['localhost', 'new.example']);
    assert.equal(renewed.made, 'it does not name new.example');
    assert.notEqual(renewed.fingerprint, first.fingerprint);
    writeFileSync(key, 'garbage');
    assert.equal(selfSignedProblem(cert, key, ['localhost']), 'unreadable');
    assert.equal((await ensureSelfSigned(cert, key, ['localhost'])).made, 'unreadable');
    assert.equal(selfSignedProblem(cert, key, ['localhost']), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
