// Interoperability with another XMPP implementation: Debian's go-sendxmpp
// (built on go-xmpp) sends a message that an @xmpp/client user receives.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeCert, preparePetrel, tempDir, type Petrel } from './helpers/server.ts';
import { connect, type TestClient } from './helpers/client.ts';

const haveGoSendxmpp = spawnSync('go-sendxmpp', ['--version'], { stdio: 'ignore' }).error === undefined;

let server: Petrel | undefined;
let bob: TestClient | undefined;

before(async () => {
  if (!haveGoSendxmpp) return;
  const dir = await tempDir();
  await makeCert(dir);
  server = await preparePetrel(
    {
      listeners: [
        // go-sendxmpp will not authenticate over an unencrypted connection: it gets STARTTLS.
        { tls: { mode: 'starttls_required', certfile: 'cert.pem', keyfile: 'key.pem' } },
        // The receiving @xmpp/client stays on plain text so this file need not trust the self-signed certificate.
        {},
      ],
      users: [
        ['alice', 'pw-alice'],
        ['bob', 'pw-bob'],
      ],
    },
    dir,
  );
  await server.start();
  bob = await connect({ port: server.ports[1]! }, 'bob', 'pw-bob', { resource: 'receiver' });
  await bob.available();
});

after(async () => {
  await bob?.close();
  await server?.dispose();
});

test('go-sendxmpp sends a message over STARTTLS that an @xmpp/client user receives', async (t) => {
  if (!haveGoSendxmpp || server === undefined || bob === undefined) {
    t.skip('go-sendxmpp is not installed (Debian package go-sendxmpp)');
    return;
  }
  const body = `hello from go-sendxmpp ${Date.now()}`;
  const messageFile = join(server.dir, 'message.txt');
  await writeFile(messageFile, body);
  const result = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(
      'go-sendxmpp',
      // -n: the certificate is self-signed. HOME points into the temp dir so no personal configuration is read.
      ['-n', '-u', 'alice@localhost', '-p', 'pw-alice', '-j', `127.0.0.1:${server!.port}`, '-m', messageFile, 'bob@localhost'],
      { env: { ...process.env, HOME: server!.dir }, timeout: 30_000 },
      (err, _stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr }),
    );
  });
  assert.equal(result.code, 0, `go-sendxmpp failed: ${result.stderr}`);
  const got = await bob.waitFor((el) => el.name === 'message' && el.getChildText('body')?.trim() === body, 10_000, 'the message from go-sendxmpp');
  assert.match(got.attrs.from ?? '', /^alice@localhost\/.+/);
  const auth = await server.waitForLog((l) => l.what === 'c2s_auth_ok' && l.user === 'alice');
  assert.ok(typeof auth.mechanism === 'string');
});

test('go-sendxmpp logs in over STARTTLS trusting the certificate Petrel made on its first start, and not without trusting it', async (t) => {
  if (!haveGoSendxmpp) {
    t.skip('go-sendxmpp is not installed (Debian package go-sendxmpp)');
    return;
  }
  // A tls table with neither certfile nor keyfile, as in the shipped configuration; STARTTLS offered, not required.
  const petrel = await preparePetrel({ listeners: [{ tls: { mode: 'starttls' } }], users: [['carol', 'pw-carol']] });
  try {
    await petrel.start();
    const made = await petrel.waitForLog((l) => l.what === 'tls_certificate_created');
    const dataDir = join(petrel.dir, 'data');
    assert.equal(made.certfile, join(dataDir, 'cert.pem'));
    assert.equal((await stat(dataDir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dataDir, 'key.pem'))).mode & 0o777, 0o600);
    const messageFile = join(petrel.dir, 'message.txt');
    await writeFile(messageFile, 'over TLS');
    const send = (env: NodeJS.ProcessEnv) =>
      new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(
          'go-sendxmpp',
          // No -n: the certificate is verified. Go reads the CAs it trusts from SSL_CERT_FILE.
          ['-u', 'carol@localhost', '-p', 'pw-carol', '-j', `localhost:${petrel.port}`, '-m', messageFile, 'carol@localhost'],
          { env: { ...process.env, HOME: petrel.dir, ...env }, timeout: 30_000 },
          (err, _stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr }),
        );
      });
    // Trusting only the system's CAs, the handshake fails and nothing is sent in plain text instead.
    const untrusted = await send({ SSL_CERT_FILE: '/nonexistent' });
    assert.notEqual(untrusted.code, 0);
    assert.match(untrusted.stderr, /certificate/);
    assert.equal(petrel.logs.find((l) => l.what === 'c2s_auth_ok'), undefined);
    const trusted = await send({ SSL_CERT_FILE: join(dataDir, 'cert.pem') });
    assert.equal(trusted.code, 0, `go-sendxmpp failed: ${trusted.stderr}`);
    const auth = await petrel.waitForLog((l) => l.what === 'c2s_auth_ok' && l.user === 'carol');
    assert.equal(auth.tls, true);
  } finally {
    await petrel.dispose();
  }
});
