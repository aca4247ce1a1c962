// Interoperability with another XMPP implementation: Debian's go-sendxmpp
// (built on go-xmpp) sends a message that an @xmpp/client user receives.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
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
