// The README's quick start, as the README writes it, on a fresh clone: the
// start command of "Two commands", the `petrel register` commands after it,
// a login over STARTTLS trusting the certificate Petrel made, and the
// go-sendxmpp line of "Logging in over TLS". The commands are read from the
// clone's README, so a change to the page changes what is run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { delimiter, join, sep } from 'node:path';
import { REPO_ROOT, tempDir } from './helpers/server.ts';
import { connect, trustCertificate, type TestClient } from './helpers/client.ts';

const PORT = 5222;
const haveGit = spawnSync('git', ['--version'], { stdio: 'ignore' }).error === undefined;
const haveGoSendxmpp = spawnSync('go-sendxmpp', ['--version'], { stdio: 'ignore' }).error === undefined;

/** A shell's environment on this machine: none of the variables of the `npm test` running this file. */
function shellEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && !/^PETREL_/.test(k) && k !== 'NODE_OPTIONS') env[k] = v;
  env.PATH = (process.env.PATH ?? '').split(delimiter).filter((d) => !d.split(sep).includes('node_modules')).join(delimiter);
  // No personal configuration of any client is read; npm neither audits nor asks for funding.
  env.HOME = home;
  env.npm_config_audit = 'false';
  env.npm_config_fund = 'false';
  env.npm_config_update_notifier = 'false';
  return env;
}

/** The fenced blocks of one README section (from its heading to the next heading of the same or a higher level). */
function blocks(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `the README has a section "${heading}"`);
  const level = heading.split(' ')[0]!;
  const rest = readme.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`\\n#{1,${level.length}} `));
  const section = end < 0 ? rest : rest.slice(0, end);
  return [...section.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** A shell command's lines without their comments. */
function commands(block: string): string[] {
  return block.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l !== '');
}

function run(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

test('the README\'s quick start works on a fresh clone: its start command, its register commands, a login over STARTTLS and its go-sendxmpp line', async (t) => {
  if (!haveGit) {
    t.skip('git is not installed: the repository cannot be cloned');
    return;
  }
  if (!(await portIsFree(PORT))) {
    t.skip(`127.0.0.1:${PORT}, the port of the shipped configuration, is taken on this machine`);
    return;
  }
  const dir = await tempDir('petrel-quick-start-');
  const clone = join(dir, 'petrel');
  let server: ChildProcess | undefined;
  const clients: TestClient[] = [];
  try {
    // The committed HEAD, as someone who clones the repository gets it.
    const cloned = spawnSync('git', ['clone', '--quiet', '--no-hardlinks', REPO_ROOT, clone], { encoding: 'utf8' });
    assert.equal(cloned.status, 0, cloned.stderr);
    // node_modules is copied so that `npm install` has nothing to download.
    const copied = spawnSync('cp', ['-a', '--reflink=auto', join(REPO_ROOT, 'node_modules'), join(clone, 'node_modules')], { encoding: 'utf8' });
    assert.equal(copied.status, 0, copied.stderr);

    const readme = await readFile(join(clone, 'README.md'), 'utf8');
    const [setup, registration] = blocks(readme, '## Two commands');
    const start = commands(setup!).find((c) => c.includes('npm start'));
    assert.ok(start !== undefined, 'the first block of "Two commands" has the start command');
    const registers = commands(registration!).filter((c) => c.includes('petrel register'));
    assert.ok(registers.length >= 2, 'the second block registers users');
    const users = registers.map((c) => {
      const [user, domain, password] = c.split(/\s+/).slice(-3) as [string, string, string];
      return { user, domain, password };
    });
    const env = shellEnv(dir);

    // The start command, exactly as written; in its own process group so that it and its children can be stopped.
    server = spawn('sh', ['-c', start], { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    const started = new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no server_started line within 120 s:\n${output}`)), 120_000);
      server!.stdout!.setEncoding('utf8').on('data', (s: string) => {
        output += s;
        for (const line of output.split('\n')) {
          if (!line.startsWith('{')) continue;
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (entry.what === 'server_started') {
            clearTimeout(timer);
            resolve(entry);
          }
        }
      });
      server!.stderr!.setEncoding('utf8').on('data', (s: string) => (output += s));
      server!.once('exit', (code) => reject(new Error(`the start command exited (${code}):\n${output}`)));
    });
    const line = await started;
    assert.equal(line.data_dir, join(clone, 'data'));
    assert.match(output, /"what":"tls_certificate_created"/);

    for (const c of registers) {
      const r = await run(c, clone, env);
      assert.equal(r.code, 0, `${c}:\n${r.out}`);
    }

    trustCertificate(await readFile(join(clone, 'data', 'cert.pem'), 'utf8'));
    for (const u of users) clients.push(await connect({ port: PORT, domain: u.domain }, u.user, u.password));
    const [alice, bob] = clients as [TestClient, TestClient];
    await bob.available();

    const [goSendxmpp] = commands(blocks(readme, '### Logging in over TLS')[0]!);
    assert.match(goSendxmpp!, /go-sendxmpp/);
    if (haveGoSendxmpp) {
      const r = await run(goSendxmpp!, clone, env);
      assert.equal(r.code, 0, `${goSendxmpp}:\n${r.out}`);
      const text = /echo "([^"]*)"/.exec(goSendxmpp!)?.[1] ?? '';
      const got = await bob.waitFor((el) => el.name === 'message' && el.getChildText('body')?.trim() === text, 10_000, 'the go-sendxmpp message');
      assert.match(got.attrs.from ?? '', /^alice@localhost\//);
    } else {
      t.diagnostic('go-sendxmpp is not installed (Debian package go-sendxmpp): its line of the README was not run');
      const id = await alice.message(bob.bare, 'hello bob');
      await bob.waitFor((el) => el.name === 'message' && el.attrs.id === id);
    }
    assert.doesNotMatch(output, /"what":"c2s_auth_ok"[^\n]*"tls":false/);
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    if (server?.pid !== undefined && server.exitCode === null) {
      const exited = new Promise((resolve) => server!.once('exit', resolve));
      process.kill(-server.pid, 'SIGTERM');
      const timer = setTimeout(() => process.kill(-server!.pid!, 'SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  }
});
