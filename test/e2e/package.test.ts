// Petrel as an npm package: what `npm pack` puts in the tarball, a global
// install into a temporary prefix run end to end by the machine's own Node
// (the launcher hands over to the Node.js 24 the package depends on), the
// types a callback module is checked against in another project, and the
// launcher never leaving a server behind when it is killed, SIGKILL
// included.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { delimiter, join, sep } from 'node:path';
import { freePort, REPO_ROOT, tempDir } from './helpers/server.ts';
import { connect, isMessage } from './helpers/client.ts';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const TSC = join(REPO_ROOT, 'node_modules', '.bin', 'tsc');

/**
 * The environment of a shell on this machine: no npm_* variables from the
 * `npm test` running this file, and no node_modules/.bin on PATH, so that
 * `#!/usr/bin/env node` finds the machine's own Node, as it would for an
 * operator.
 */
function machineEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== 'PETREL_DATA_DIR' && k !== 'NODE_OPTIONS') env[k] = v;
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((d) => !d.split(sep).includes('node_modules'))
    .join(delimiter);
  return env;
}

const ENV = machineEnv();
const npmProbe = spawnSync('npm', ['--version'], { env: ENV, encoding: 'utf8' });
const NO_NPM = npmProbe.status === 0 ? false : `npm is not available on this machine (${npmProbe.error?.message ?? npmProbe.stderr.trim()}): the package is not tested`;
const machineNode = spawnSync('node', ['--version'], { env: ENV, encoding: 'utf8' });

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; never throws on a non-zero exit. */
function run(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: o.cwd ?? REPO_ROOT, env: o.env ?? ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  const r = await run(cmd, args, o);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r;
}

type LogLine = Record<string, unknown> & { what?: string };

/** A `petrel start` whose JSON log lines are kept; the server may be the launcher's child. */
class Started {
  readonly child: ChildProcess;
  readonly logs: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: Array<() => void> = [];

  constructor(cmd: string, args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(cmd, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const child = this.child;
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      process.off('exit', killOnExit);
      resolve({ code, signal });
    }));
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.logs.push({ what: 'unparsed', line });
        }
        for (const w of this.#waiters.splice(0)) w();
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (this.stderr += s));
  }

  /** The first log line that matches, within `timeoutMs`. */
  async log(pred: (l: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const seen = this.logs.find(pred);
      if (seen !== undefined) return seen;
      if (Date.now() > deadline) throw new Error(`no such log line within ${timeoutMs} ms; stderr:\n${this.stderr}\nlast lines:\n${this.logs.slice(-5).map((l) => JSON.stringify(l)).join('\n')}`);
      await Promise.race([new Promise<void>((r) => this.#waiters.push(r)), new Promise((r) => setTimeout(r, 200))]);
    }
  }

  /** The pid of the server process, from its server_started line. */
  async serverPid(): Promise<number> {
    const started = await Promise.race([
      this.log((l) => l.what === 'server_started'),
      this.exited.then(({ code }) => {
        throw new Error(`petrel exited (code ${code}) before it started:\n${this.stderr}`);
      }),
    ]);
    assert.equal(typeof started.pid, 'number');
    return started.pid as number;
  }
}

/** Gone: no such process, or a zombie waiting for whoever adopted it to reap it (it holds nothing). */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return true;
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Polls until `cond` holds; fails after `timeoutMs` saying what did not happen. */
async function eventually(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`${what}: still not so after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function serverConfig(port: number, extra = ''): string {
  return `[general]
  hosts = ["localhost"]
  loglevel = "info"
  data_dir = "data"

[[listen.c2s]]
  port = ${port}
  ip_address = "127.0.0.1"

[auth]
  [auth.password]
    format = "scram"
    scram_iterations = 4096
  [auth.internal]

[modules.mod_roster]
[modules.mod_offline]
${extra}`;
}

interface Prepared {
  work: string;
  tarball: string;
  packed: Array<{ path: string }>;
  prefix: string;
  consumer: string;
  globalInstall: Promise<Run>;
  localInstall: Promise<Run>;
}

/**
 * Packs, then starts both installs. They are slow (the global one sets up the
 * package's Node.js 24 binary), so this starts as the file loads and the
 * launcher tests run meanwhile. The npm cache the project's own install
 * filled serves them.
 */
async function prepare(): Promise<Prepared> {
  const work = await tempDir('petrel-package-');
  const r = await ok('npm', ['pack', '--json', '--pack-destination', work]);
  const [info] = JSON.parse(r.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const tarball = join(work, info!.filename);
  const prefix = join(work, 'prefix');
  const globalInstall = run('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball]);
  const consumer = join(work, 'consumer');
  await mkdir(consumer);
  await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'petrel-callbacks', private: true, type: 'module' }));
  // Types only: the Node.js binary the package's "node" dependency would download is not needed here.
  const localInstall = run('npm', ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', tarball], { cwd: consumer });
  globalInstall.catch(() => {});
  localInstall.catch(() => {});
  return { work, tarball, packed: info!.files, prefix, consumer, globalInstall, localInstall };
}

const prepared = NO_NPM === false ? prepare() : undefined;
prepared?.catch(() => {});

describe('the launcher, from the checkout, run by a Node that cannot run the sources itself', () => {
  let dir: string;
  let config: string;
  let port: number;
  before(async () => {
    dir = await tempDir('petrel-launcher-');
    port = await freePort();
    config = join(dir, 'petrel.toml');
    await writeFile(config, serverConfig(port));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Node 24 with type stripping turned off stands for an older Node: the
  // launcher has to run the server in a child, under the Node the project pins.
  const launch = () =>
    new Started(process.execPath, ['--no-experimental-strip-types', join(REPO_ROOT, 'bin', 'petrel.mjs'), 'start', '-c', config], ENV);

  test('killing the launcher with SIGKILL stops its server: the server process ends and the port is free again', async () => {
    const p = launch();
    const pid = await p.serverPid();
    assert.notEqual(pid, p.child.pid, 'the server runs in a child of the launcher');
    assert.equal(await portIsFree(port), false);
    p.child.kill('SIGKILL');
    assert.equal((await p.exited).signal, 'SIGKILL');
    await eventually(`server ${pid} ends`, () => processGone(pid));
    await eventually(`port ${port} is free`, () => portIsFree(port));
    // It stopped as SIGTERM stops it, not by being killed.
    await p.log((l) => l.what === 'server_stopped', 5_000);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal} to the launcher stops its server, and the launcher exits 0 after it`, async () => {
      const p = launch();
      const pid = await p.serverPid();
      assert.notEqual(pid, p.child.pid);
      p.child.kill(signal);
      assert.deepEqual(await p.exited, { code: 0, signal: null });
      await eventually(`server ${pid} ends`, () => processGone(pid));
      assert.ok(await portIsFree(port));
      assert.ok(p.logs.some((l) => l.what === 'server_stopping' && l.signal === signal), p.stderr);
    });
  }

  test('the server runs with a young generation of 16 MiB a semi-space, in the launcher\'s own process under Node 24, unless NODE_OPTIONS sets one', async () => {
    const cmdline = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    const stop = async (p: Started, pid: number) => {
      p.child.kill('SIGTERM');
      await p.exited;
      await eventually(`server ${pid} ends`, () => processGone(pid));
    };
    const direct = new Started(process.execPath, [join(REPO_ROOT, 'bin', 'petrel.mjs'), 'start', '-c', config], ENV);
    const pid = await direct.serverPid();
    assert.equal(pid, direct.child.pid, 'no second process: the launcher became the server');
    assert.ok((await cmdline(pid)).includes('--max-semi-space-size=16'), (await cmdline(pid)).join(' '));
    await stop(direct, pid);

    const child = launch();
    const childPid = await child.serverPid();
    assert.ok((await cmdline(childPid)).includes('--max-semi-space-size=16'), (await cmdline(childPid)).join(' '));
    await stop(child, childPid);

    const own = new Started(process.execPath, [join(REPO_ROOT, 'bin', 'petrel.mjs'), 'start', '-c', config], { ...ENV, NODE_OPTIONS: '--max-semi-space-size=4' });
    const ownPid = await own.serverPid();
    assert.ok(!(await cmdline(ownPid)).some((a) => a.startsWith('--max-semi-space-size')), (await cmdline(ownPid)).join(' '));
    await stop(own, ownPid);
  });

  test('a command that finishes (check-config) ends on its own under the launcher', async () => {
    const r = await run(process.execPath, ['--no-experimental-strip-types', join(REPO_ROOT, 'bin', 'petrel.mjs'), 'check-config', '-c', config], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /petrel\.toml: OK/);
  });
});

// A callback module written against the package's types; the same source is
// type-checked in a consumer project and run by the installed server.
const CALLBACK = `import type { CallbackModule, PrepareArgs, ShouldMakeReqArgs } from 'petrel';

export function shouldMakeReq({ dir, packet }: ShouldMakeReqArgs): boolean {
  return dir === 'in' && (packet.getChildText('body') ?? '') !== '';
}

export function prepareHeaders({ opts }: PrepareArgs): Array<[string, string]> {
  return [['content-type', 'application/json'], ['x-handler', opts.path]];
}

export function prepareBody({ sender, receiver, message }: PrepareArgs): string {
  return JSON.stringify({ kind: 'installed', sender, receiver, message });
}

export default { shouldMakeReq, prepareHeaders, prepareBody } satisfies CallbackModule;
`;

/** The first TypeScript block of the section "Writing a callback module" of docs/mod_event_pusher_http.md. */
function docExample(): string {
  const doc = readFileSync(join(REPO_ROOT, 'docs', 'mod_event_pusher_http.md'), 'utf8');
  const section = doc.slice(doc.indexOf('\n## Writing a callback module\n'));
  const m = /\n```ts\n([\s\S]*?)\n```\n/.exec(section);
  assert.ok(m !== null, 'the section has a ```ts block');
  const code = m[1]!;
  // It is the synchronous kind, the one with the full delivery guarantee.
  assert.doesNotMatch(code, /\basync\b|Promise/);
  assert.match(code, /satisfies CallbackModule/);
  return code + '\n';
}

describe('the npm package', { skip: NO_NPM }, () => {
  let work: string | undefined;
  let packed: Array<{ path: string }>;
  let prefix: string;
  let consumer: string;
  let globalInstall: Promise<Run> | undefined;
  let localInstall: Promise<Run>;

  before(async () => {
    ({ work, packed, prefix, consumer, globalInstall, localInstall } = await prepared!);
  });

  after(async () => {
    await Promise.allSettled([globalInstall, localInstall]);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  test('the tarball holds only what runs: the launcher, compiled JavaScript with its declarations, the shipped configuration', async () => {
    const r = await ok('npm', ['pack', '--dry-run', '--json', '--ignore-scripts']);
    const files = (JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path).sort();
    assert.deepEqual(files, packed.map((f) => f.path).sort(), 'the dry run lists what was packed');
    for (const f of files) {
      assert.ok(/^(dist\/.+\.(js|d\.ts)|bin\/petrel\.mjs|config\/petrel\.toml|docs\/mod_event_pusher_http\.md|package\.json|README\.md)$/.test(f), `${f} is not part of the package`);
      assert.doesNotMatch(f, /^(test|bench|\.ci|data|src|node_modules|scripts)\/|\.(pem|key|sqlite|log)$/);
    }
    for (const f of ['bin/petrel.mjs', 'dist/cli/main.js', 'dist/index.d.ts', 'dist/index.js', 'dist/storage/outbox/sqlite-worker.js', 'config/petrel.toml']) {
      assert.ok(files.includes(f), `${f} is missing`);
    }
    // Nothing compiled refers to a .ts file the package does not have.
    const main = await readFile(join(REPO_ROOT, 'dist', 'cli', 'main.js'), 'utf8');
    assert.doesNotMatch(main, /from '\.{1,2}\/[^']*\.ts'/);
  });

  test('in another project, a TypeScript callback module, and the worked example of the event pusher\'s page, type-check against the installed package', async () => {
    const r = await localInstall;
    assert.equal(r.code, 0, r.stderr);
    await writeFile(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'esnext', module: 'nodenext', strict: true, noEmit: true, types: [], lib: ['esnext'] }, include: ['*.ts'] }),
    );
    await writeFile(join(consumer, 'callback.ts'), CALLBACK);
    // The worked example of docs/mod_event_pusher_http.md, exactly as the page shows it.
    await writeFile(join(consumer, 'doc-example.ts'), docExample());
    // The types are the real ones, not `any`: a misuse is an error.
    await writeFile(
      join(consumer, 'misuse.ts'),
      "import type { JsonChatPayload, PrepareArgs } from 'petrel';\n" +
        'export function length(a: PrepareArgs): number {\n  // @ts-expect-error message is a string\n  return a.message;\n}\n' +
        'export type Payload = JsonChatPayload;\n',
    );
    const tsc = await run(TSC, ['-p', consumer], { cwd: consumer, timeoutMs: 60_000 });
    assert.equal(tsc.code, 0, tsc.stdout + tsc.stderr);
  });

  test('installed globally and run by the machine\'s own Node, petrel works end to end', async (t) => {
    t.diagnostic(`the machine's Node: ${machineNode.stdout.trim() || 'none'}`);
    const inst = await globalInstall!;
    assert.equal(inst.code, 0, inst.stderr);
    const petrel = join(prefix, 'bin', 'petrel');

    const v = await ok(petrel, ['--version']);
    assert.equal(v.stdout.trim(), VERSION);

    const shipped = await ok(petrel, ['check-config']);
    assert.match(shipped.stdout, new RegExp(`lib[/\\\\]node_modules[/\\\\]petrel[/\\\\]config[/\\\\]petrel\\.toml: OK`));

    // The shipped configuration of an installed package keeps its state in the user's data directory, not in the package.
    const home = await tempDir('petrel-home-');
    try {
      const homeEnv: NodeJS.ProcessEnv = { ...ENV, HOME: home };
      delete homeEnv.XDG_DATA_HOME;
      const cert = await ok(petrel, ['cert', 'generate'], { env: homeEnv });
      assert.match(cert.stdout, new RegExp(`certificate: ${join(home, '.local', 'share', 'petrel', 'cert.pem').replace(/[.]/g, '\\.')}\n`));
      assert.equal((await stat(join(home, '.local', 'share', 'petrel'))).mode & 0o777, 0o700);
      assert.equal((await stat(join(home, '.local', 'share', 'petrel', 'key.pem'))).mode & 0o777, 0o600);
    } finally {
      await rm(home, { recursive: true, force: true });
    }

    // A webhook for the event pusher: deliveries go through the outbox's worker threads.
    const received: Array<{ path: string; body: string }> = [];
    const hook = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (s: string) => (body += s));
      req.on('end', () => {
        received.push({ path: req.url ?? '', body });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', () => resolve()));
    const dir = await tempDir('petrel-installed-');
    try {
      const port = await freePort();
      const metricsPort = await freePort();
      const config = join(dir, 'petrel.toml');
      await writeFile(join(dir, 'callback.ts'), CALLBACK);
      await writeFile(
        config,
        serverConfig(
          port,
          `
[[listen.http]]
  port = ${metricsPort}
  ip_address = "127.0.0.1"
  [[listen.http.handlers.mongoose_prometheus_handler]]
    host = "_"
    path = "/metrics"

[outgoing_pools.http.http_pool]
  [outgoing_pools.http.http_pool.connection]
    host = "http://127.0.0.1:${(hook.address() as AddressInfo).port}"

[[modules.mod_event_pusher.backend.http]]
  path = "/notify"
  callback_module = "./callback.ts"
`,
        ),
      );
      await ok(petrel, ['register', 'alice', 'localhost', 'pw-alice', '-c', config]);
      await ok(petrel, ['register', 'bob', 'localhost', 'pw-bob', '-c', config]);

      const server = new Started(petrel, ['start', '-c', config], ENV);
      try {
        await server.serverPid();
        const started = await server.log((l) => l.what === 'server_started');
        assert.equal(started.version, VERSION);
        assert.equal(started.data_dir, join(dir, 'data'));

        const alice = await connect({ port }, 'alice', 'pw-alice');
        const bob = await connect({ port }, 'bob', 'pw-bob');
        const id = await alice.message(bob.jid, 'hello from the package');
        await bob.waitFor(isMessage(id));
        await alice.close();
        await bob.close();
        await eventually('the webhook gets the message', () => received.length > 0);
        assert.equal(received[0]!.path, '/notify');
        assert.deepEqual(JSON.parse(received[0]!.body), { kind: 'installed', sender: 'alice', receiver: 'bob', message: 'hello from the package' });

        let metrics = '';
        await eventually('petrel metrics counts the delivery', async () => {
          metrics = (await ok(petrel, ['metrics', '-c', config])).stdout;
          return /mod_event_pusher_http, sent\]\s+spiral\s+one=\d+ count=1\b/.test(metrics);
        });
        const deliveries = await ok(petrel, ['deliveries', '-c', config]);
        assert.match(deliveries.stdout, /^HANDLER\s+QUEUED\s+IN_FLIGHT\s+RETRYING\s+DEAD_LETTERED$/m);
        assert.match(deliveries.stdout, /\/notify.*\s0\s+0\s+0\s+0$/m);

        server.child.kill('SIGTERM');
        assert.deepEqual(await server.exited, { code: 0, signal: null }, server.stderr);
        await server.log((l) => l.what === 'server_stopped', 5_000);
        assert.ok(await portIsFree(port));
      } finally {
        server.child.kill('SIGKILL');
      }

      // SIGKILL of the installed launcher leaves no server behind either.
      const again = new Started(petrel, ['start', '-c', config], ENV);
      const pid = await again.serverPid();
      t.diagnostic(pid === again.child.pid ? 'the server ran in the launcher\'s process' : 'the server ran in a child of the launcher');
      again.child.kill('SIGKILL');
      await again.exited;
      await eventually(`server ${pid} ends`, () => processGone(pid));
      await eventually(`port ${port} is free`, () => portIsFree(port));
    } finally {
      hook.close();
      hook.closeAllConnections();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
