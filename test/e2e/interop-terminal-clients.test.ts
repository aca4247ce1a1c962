// The README's lines for two terminal clients ("Logging in over TLS"), run
// in a tmux terminal against the self-signed certificate Petrel makes:
// - Profanity: asks for the password, shows the certificate with the SHA-1
//   fingerprint that `petrel cert show` prints, and logs in once
//   `/tls always` accepts it;
// - Poezio (which refuses to run as root: as nobody when the tests are
//   root), with the README's poezio.cfg: logs in and pins the key that the
//   `public key` line of `petrel cert show` names.
// A message each sends reaches another user. `petrel cert show`'s
// fingerprints are also checked against openssl's.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, startPetrel, tempDir, type Petrel } from './helpers/server.ts';
import { connect, trustCertificate, type TestClient } from './helpers/client.ts';

const have = (cmd: string, arg = '--version') => spawnSync(cmd, [arg], { stdio: 'ignore' }).error === undefined;
const haveProfanity = have('profanity');
const haveTmux = have('tmux', '-V');
const haveOpenssl = have('openssl', 'version');
const havePoezio = have('poezio');
const root = process.getuid?.() === 0;
const haveSetpriv = have('setpriv');
const NOBODY = 65534;

let server: Petrel;
let bob: TestClient | undefined;
before(async () => {
  server = await startPetrel({ users: [['alice', 'secret'], ['bob', 'secret']], listeners: [{ tls: { mode: 'starttls' } }] });
});
after(async () => {
  await bob?.close();
  await server?.dispose();
});

/** The lines `petrel cert show` prints, by label. */
async function certShow(): Promise<Record<string, string>> {
  const r = await server.cli(['cert', 'show', '-c', server.configPath]);
  assert.equal(r.code, 0, r.stderr);
  const out: Record<string, string> = {};
  for (const m of r.stdout.matchAll(/^ {2}([A-Za-z0-9 -]+):\s+(\S+)/gm)) out[m[1]!] = m[2]!;
  return out;
}

/** A tmux server whose socket is in `home`, and a wait for what its window `p` shows. */
function terminal(home: string, client: string) {
  const socket = join(home, 'tmux.sock');
  const tmux = (...args: string[]) => execFileSync('tmux', ['-S', socket, ...args], { encoding: 'utf8', env: { ...process.env, HOME: home } });
  const screen = () => tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', 'p');
  const until = async (what: string, re: RegExp, ms = 20_000): Promise<string> => {
    const end = Date.now() + ms;
    for (;;) {
      const s = screen();
      if (re.test(s)) return s;
      if (Date.now() > end) assert.fail(`${client} did not show ${what} within ${ms} ms:\n${s}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  return { tmux, until };
}

const colons = (hex: string) => hex.toUpperCase().replace(/(..)(?!$)/g, '$1:');

test('petrel cert show prints the certificate\'s SHA-256 and SHA-1 and its public key\'s SHA-256, as openssl computes them', { skip: haveOpenssl ? false : 'openssl is not installed' }, async () => {
  const shown = await certShow();
  const certfile = join(server.dir, 'data', 'cert.pem');
  const fp = (alg: string) => execFileSync('openssl', ['x509', '-in', certfile, '-noout', '-fingerprint', `-${alg}`], { encoding: 'utf8' }).trim().split('=')[1]!;
  assert.equal(shown['SHA-256'], fp('sha256'));
  assert.equal(colons(shown['SHA-1']!), fp('sha1'));
  const pub = execFileSync('openssl', ['x509', '-in', certfile, '-noout', '-pubkey'], { encoding: 'utf8' });
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: pub });
  const spki = execFileSync('openssl', ['dgst', '-sha256', '-hex'], { input: der, encoding: 'utf8' }).trim().split('= ')[1]!;
  assert.equal(shown['public key'], colons(spki));
});

test('the README\'s Profanity lines log in over STARTTLS, trusting the certificate by the fingerprint petrel cert show prints', {
  skip: !haveProfanity ? 'profanity is not installed (Debian package profanity)' : !haveTmux ? 'tmux is not installed (Debian package tmux)' : false,
  timeout: 90_000,
}, async () => {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n[Profanity]'));
  const lines = /```\n([\s\S]*?)```/.exec(section)![1]!.split('\n').filter((l) => l.startsWith('/'));
  const connectLine = lines.find((l) => l.startsWith('/connect '));
  assert.ok(connectLine !== undefined && lines.includes('/tls always'), `the README's Profanity block: ${lines.join(' | ')}`);
  const shown = await certShow();

  trustCertificate(await readFile(join(server.dir, 'data', 'cert.pem'), 'utf8'));
  bob = await connect({ port: server.port }, 'bob', 'secret');
  await bob.available();

  const home = await tempDir('petrel-profanity-');
  await mkdir(join(home, '.config'), { recursive: true });
  const { tmux, until } = terminal(home, 'profanity');
  try {
    tmux('new-session', '-d', '-s', 'p', '-x', '200', '-y', '60', `HOME=${home} TERM=xterm profanity`);
    await until('its prompt', /profanity|Welcome/i);
    // The README's line, on this test server's port.
    tmux('send-keys', '-t', 'p', connectLine!.replace(/port \d+/, `port ${server.port}`), 'Enter');
    await until('the password prompt', /password/i);
    tmux('send-keys', '-t', 'p', 'secret', 'Enter');
    const asked = await until('the certificate it cannot verify', /Fingerprint\s*:\s*[0-9a-f]+/i);
    assert.equal(/Fingerprint\s*:\s*([0-9a-f]+)/i.exec(asked)![1]!.toLowerCase(), shown['SHA-1']);
    tmux('send-keys', '-t', 'p', '/tls always', 'Enter');
    await until('a login', /alice@localhost\/\S+ logged in successfully/);
    tmux('send-keys', '-t', 'p', '/msg bob@localhost hello from profanity', 'Enter');
    const got = await bob.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'hello from profanity', 20_000, 'the message profanity sent');
    assert.match(got.attrs.from ?? '', /^alice@localhost\//);
    assert.ok(server.logs.some((l) => l.what === 'c2s_auth_ok' && l.tls === true), 'profanity authenticated over TLS');
  } finally {
    try {
      tmux('kill-server');
    } catch {
      // Already gone.
    }
    await rm(home, { recursive: true, force: true });
  }
});

test('the README\'s poezio.cfg logs Poezio in over STARTTLS, and Poezio pins the key petrel cert show names', {
  skip: !havePoezio ? 'poezio is not installed (Debian package poezio)' : !haveTmux ? 'tmux is not installed (Debian package tmux)' : root && !haveSetpriv ? 'the tests run as root, which Poezio refuses, and setpriv is missing' : false,
  timeout: 90_000,
}, async () => {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n[Poezio]'));
  const ini = /```ini\n([\s\S]*?)```/.exec(section)![1]!;
  assert.match(ini, /ca_cert_path = \/path\/to\/petrel\/data\/cert\.pem/);
  const shown = await certShow();

  trustCertificate(await readFile(join(server.dir, 'data', 'cert.pem'), 'utf8'));
  bob ??= await connect({ port: server.port }, 'bob', 'secret');
  await bob.available();

  const home = await tempDir('petrel-poezio-');
  const cfg = join(home, '.config', 'poezio', 'poezio.cfg');
  await mkdir(join(home, '.config', 'poezio'), { recursive: true });
  // The data directory is its owner's only: the client reads a copy.
  await copyFile(join(server.dir, 'data', 'cert.pem'), join(home, 'cert.pem'));
  // The README's file, on this test server's port, with the password it would ask for.
  await writeFile(cfg, ini.replace('/path/to/petrel/data/cert.pem', join(home, 'cert.pem')) + `custom_port = ${server.port}\npassword = secret\n`);
  if (root) execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, home]);
  const { tmux, until } = terminal(home, 'poezio');
  const as = root ? `setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups ` : '';
  try {
    tmux('new-session', '-d', '-s', 'p', '-x', '200', '-y', '60', `${as}env HOME=${home} TERM=xterm poezio`);
    await until('a login', /Your JID is alice@localhost\/\S+/, 30_000);
    // Poezio opens its command line on "/" and reads the rest as typed text.
    tmux('send-keys', '-t', 'p', '/');
    await until('its command line', /^\s*x?\/\s*$/m, 5_000);
    tmux('send-keys', '-t', 'p', '-l', 'message bob@localhost hello from poezio');
    await until('the command typed', /\/message bob@localhost hello from poezio/, 5_000);
    tmux('send-keys', '-t', 'p', 'Enter');
    const got = await bob.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'hello from poezio', 20_000, 'the message poezio sent');
    assert.match(got.attrs.from ?? '', /^alice@localhost\//);
    const pinned = /^certificate = (\S+)$/m.exec(await readFile(cfg, 'utf8'))?.[1];
    assert.equal(pinned, shown['public key']);
  } finally {
    try {
      tmux('kill-server');
    } catch {
      // Already gone.
    }
    await rm(home, { recursive: true, force: true });
  }
});
