// Interoperability with another XMPP implementation: Debian's slixmpp
// (python3-slixmpp) enables stream management and message carbons, and gets
// the <sent/> copy of a message its user's other resource (@xmpp/client)
// sends. Clients such as profanity report "Server error enabling message
// carbons" when the carbons IQ fails; this is that IQ, from a real client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startPetrel, type Petrel } from './helpers/server.ts';
import { connect, type TestClient } from './helpers/client.ts';

const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('./interop/slixmpp_carbons.py', import.meta.url));
const haveSlixmpp = spawnSync(PYTHON, ['-c', 'import slixmpp'], { stdio: 'ignore' }).status === 0;

let server: Petrel | undefined;
let laptop: TestClient | undefined;

before(async () => {
  if (!haveSlixmpp) return;
  server = await startPetrel({
    users: [['alice', 'pw-alice'], ['bob', 'pw-bob']],
    sasl_mechanisms: ['scram_sha256', 'scram_sha1', 'plain'],
    extraToml: '[modules.mod_stream_management]\n[modules.mod_carboncopy]\n',
  });
});

after(async () => {
  await laptop?.close();
  await server?.dispose();
});

test('slixmpp enables stream management and message carbons, and gets the sent copy of a message from its other resource', async (t) => {
  if (!haveSlixmpp || server === undefined) {
    t.skip('slixmpp is not installed (Debian package python3-slixmpp)');
    return;
  }
  const child = spawn(PYTHON, [SCRIPT, 'alice@localhost/slix', 'pw-alice', String(server.port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const seen = (prefix: string) =>
    new Promise<string>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`slixmpp printed no ${prefix} line; it printed:\n${lines.join('\n')}\n${stderr}`)), 20_000);
      const onData = (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          lines.push(line);
        }
        const hit = lines.find((l) => l.startsWith(prefix));
        if (hit !== undefined) {
          clearTimeout(timer);
          child.stdout.off('data', onData);
          resolve(hit);
        }
      };
      child.stdout.on('data', onData);
      onData('');
    });
  child.stdout.setEncoding('utf8');
  try {
    await seen('READY');
    assert.ok(lines.includes('SM_ENABLED'), `slixmpp enabled stream management; it printed:\n${lines.join('\n')}`);
    assert.ok(lines.includes('CARBONS_ENABLED'), `the carbons IQ succeeded; it printed:\n${lines.join('\n')}`);
    laptop = await connect(server, 'alice', 'pw-alice', { resource: 'laptop' });
    const carbon = seen('CARBON_SENT');
    await laptop.message('bob@localhost', 'copied to slixmpp');
    assert.equal(await carbon, 'CARBON_SENT copied to slixmpp');
    assert.equal(await exited, 0, stderr);
  } finally {
    child.kill();
  }
});
