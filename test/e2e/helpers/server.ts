// A real Petrel process for end-to-end tests: its own temporary directory
// (config file and data directory), free loopback ports, the JSON log lines
// it prints, and the command-line tool run against the same config file.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = join(REPO_ROOT, 'src', 'cli', 'main.ts');

/** A port nobody listens on right now (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix = 'petrel-e2e-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * The environment of the processes started here: the tests' own, without a
 * PETREL_DATA_DIR that would send every test server to the same data directory.
 */
export function testEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.PETREL_DATA_DIR;
  return { ...env, ...extra };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `petrel <args>` under the Node that runs the tests; never throws on a non-zero exit. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: opts.env ?? testEnv(), cwd: opts.cwd ?? REPO_ROOT, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A self-signed certificate for CN=localhost, valid two days. */
export function makeCert(dir: string): Promise<{ certfile: string; keyfile: string }> {
  const certfile = join(dir, 'cert.pem');
  const keyfile = join(dir, 'key.pem');
  return new Promise((resolve, reject) => {
    execFile(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '2', '-keyout', keyfile, '-out', certfile],
      (err, _stdout, stderr) => (err ? reject(new Error(`openssl failed: ${stderr}`)) : resolve({ certfile, keyfile })),
    );
  });
}

export interface ListenerOptions {
  /** Without certfile and keyfile: the self-signed certificate Petrel makes under its data directory. */
  tls?: { mode: 'starttls' | 'starttls_required' | 'tls'; certfile?: string; keyfile?: string };
  allow_plaintext_auth?: boolean;
  max_stanza_size?: number;
}

export interface PetrelOptions {
  /** One entry per c2s listener; default: one plaintext listener. */
  listeners?: ListenerOptions[];
  hosts?: string[];
  sasl_mechanisms?: Array<'scram_sha256' | 'scram_sha1' | 'plain'>;
  password_format?: 'scram' | 'plain';
  /** Accounts created with `petrel register` before the server starts. */
  users?: Array<[string, string]>;
  /** More TOML, appended as is. */
  extraToml?: string;
}

/** The TOML of a test server. Paths are left relative where they can be, as an operator writes them. */
export function configToml(o: PetrelOptions, ports: number[]): string {
  const hosts = o.hosts ?? ['localhost'];
  let t = `[general]\n  hosts = ${JSON.stringify(hosts)}\n  loglevel = "info"\n  data_dir = "data"\n\n`;
  (o.listeners ?? [{}]).forEach((l, i) => {
    t += `[[listen.c2s]]\n  port = ${ports[i]}\n  ip_address = "127.0.0.1"\n`;
    if (l.max_stanza_size !== undefined) t += `  max_stanza_size = ${l.max_stanza_size}\n`;
    if (l.allow_plaintext_auth !== undefined) t += `  allow_plaintext_auth = ${l.allow_plaintext_auth}\n`;
    if (l.tls !== undefined) {
      t += `  [listen.c2s.tls]\n    mode = "${l.tls.mode}"\n`;
      if (l.tls.certfile !== undefined) t += `    certfile = ${JSON.stringify(l.tls.certfile)}\n`;
      if (l.tls.keyfile !== undefined) t += `    keyfile = ${JSON.stringify(l.tls.keyfile)}\n`;
    }
    t += '\n';
  });
  t += '[auth]\n';
  if (o.sasl_mechanisms !== undefined) t += `  sasl_mechanisms = ${JSON.stringify(o.sasl_mechanisms)}\n`;
  // The fewest iterations RFC 7677 recommends: registration stays quick.
  t += `  [auth.password]\n    format = "${o.password_format ?? 'scram'}"\n    scram_iterations = 4096\n  [auth.internal]\n\n`;
  t += '[modules.mod_roster]\n[modules.mod_offline]\n[modules.mod_disco]\n[modules.mod_ping]\n';
  if (o.extraToml !== undefined) t += '\n' + o.extraToml + '\n';
  return t;
}

export type LogLine = Record<string, unknown> & { what?: string };

export class Petrel {
  readonly dir: string;
  readonly configPath: string;
  readonly ports: number[];
  readonly domain: string;
  readonly logs: LogLine[] = [];
  stderr = '';
  #child: ChildProcess | null = null;
  #exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | null = null;
  #logWaiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];

  constructor(dir: string, configPath: string, ports: number[], domain: string) {
    this.dir = dir;
    this.configPath = configPath;
    this.ports = ports;
    this.domain = domain;
  }

  /** The first c2s listener's port. */
  get port(): number {
    return this.ports[0]!;
  }

  get running(): boolean {
    return this.#child !== null && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  cli(args: string[]): Promise<CliResult> {
    return runCli([...args, '-c', this.configPath]);
  }

  async register(user: string, password: string, domain = this.domain): Promise<void> {
    const r = await this.cli(['register', user, domain, password]);
    if (r.code !== 0) throw new Error(`petrel register ${user} failed (${r.code}): ${r.stderr}`);
  }

  async unregister(user: string, domain = this.domain): Promise<void> {
    const r = await this.cli(['unregister', user, domain]);
    if (r.code !== 0) throw new Error(`petrel unregister ${user} failed (${r.code}): ${r.stderr}`);
  }

  /**
   * Starts `petrel start -c <config>` and waits for its server_started line.
   * `withConfig: false` leaves out -c, so the shipped configuration is used.
   */
  async start(o: { env?: NodeJS.ProcessEnv; withConfig?: boolean } = {}): Promise<void> {
    // A port chosen free when the config was written can be taken since
    // (another test's listener, or the local end of any connection on the
    // machine): a c2s port found taken is replaced by a new free one.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#startOnce(o);
        return;
      } catch (err) {
        const taken = /EADDRINUSE[^\n]*?:(\d+)/.exec(this.stderr);
        const i = taken === null ? -1 : this.ports.indexOf(Number(taken[1]));
        if (attempt >= 3 || i < 0 || o.withConfig === false) throw err;
        const next = await freePort();
        const text = await readFile(this.configPath, 'utf8');
        await writeFile(this.configPath, text.replace(`port = ${this.ports[i]}\n`, `port = ${next}\n`));
        this.ports[i] = next;
        this.stderr = '';
      }
    }
  }

  async #startOnce(o: { env?: NodeJS.ProcessEnv; withConfig?: boolean }): Promise<void> {
    const args = o.withConfig === false ? [CLI, 'start'] : [CLI, 'start', '-c', this.configPath];
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: o.env ?? testEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    this.#exit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        process.off('exit', killOnExit);
        resolve({ code, signal });
      });
    });
    let buffered = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        this.#onLine(line);
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    const started = this.waitForLog((l) => l.what === 'server_started', 20_000);
    const exited = this.#exit.then(({ code }) => {
      throw new Error(`petrel exited (code ${code}) before it started:\n${this.stderr}`);
    });
    await Promise.race([started, exited]);
  }

  #onLine(line: string): void {
    let entry: LogLine;
    try {
      entry = JSON.parse(line) as LogLine;
    } catch {
      entry = { what: 'unparsed', line };
    }
    this.logs.push(entry);
    this.#logWaiters = this.#logWaiters.filter((w) => {
      if (!w.pred(entry)) return true;
      w.resolve(entry);
      return false;
    });
  }

  /** The first log line, logged already or to come, that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    const seen = this.logs.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#logWaiters = this.#logWaiters.filter((w) => w !== waiter);
        reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${this.logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`));
      }, timeoutMs);
      const waiter = {
        pred,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      this.#logWaiters.push(waiter);
    });
  }

  /** SIGTERM, then the exit status. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.#child === null || this.#exit === null) throw new Error('not started');
    if (this.running) this.#child.kill('SIGTERM');
    const child = this.#child;
    // A server that does not stop is killed, so that it cannot keep the test run alive.
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error('petrel did not exit within 15 s of SIGTERM'));
      }, 15_000).unref(),
    );
    return Promise.race([this.#exit, timeout]);
  }

  /** Stops the server (if it runs), checks it exited cleanly, removes the directory. */
  async dispose(): Promise<void> {
    try {
      if (this.#child !== null && this.running) {
        const { code, signal } = await this.stop();
        if (code !== 0) throw new Error(`petrel exited with code ${code} (signal ${signal}):\n${this.stderr}`);
      }
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}

/** Writes the config of a new server into a fresh temporary directory; does not start it. */
export async function preparePetrel(o: PetrelOptions = {}, dir?: string): Promise<Petrel> {
  const d = dir ?? (await tempDir());
  const ports: number[] = [];
  for (let i = 0; i < (o.listeners ?? [{}]).length; i++) ports.push(await freePort());
  const configPath = join(d, 'petrel.toml');
  await writeFile(configPath, configToml(o, ports));
  const p = new Petrel(d, configPath, ports, (o.hosts ?? ['localhost'])[0]!);
  // The first registration creates the database alone; the others then run side by side.
  const [first, ...rest] = o.users ?? [];
  if (first !== undefined) await p.register(first[0], first[1]);
  await Promise.all(rest.map(([u, pw]) => p.register(u, pw)));
  return p;
}

/** A started server with the given accounts. */
export async function startPetrel(o: PetrelOptions = {}, dir?: string): Promise<Petrel> {
  const p = await preparePetrel(o, dir);
  try {
    await p.start();
  } catch (err) {
    await rm(p.dir, { recursive: true, force: true });
    throw err;
  }
  return p;
}
