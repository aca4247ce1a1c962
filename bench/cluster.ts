// The cluster benchmark: the same sender/receiver load on 1, 2 and 3 Petrel
// nodes of one cluster (general.sm_backend = "cets", discovery in the
// machine's PostgreSQL, stanzas over the machine's NATS), every process on
// this machine. Sender s<i> logs in on node i % N and its receiver r<i> on
// node (i + 1) % N, so that with two nodes or more every message crosses
// nodes (sender on node A, recipient on node B); with one node the same load
// is routed locally, the baseline. Pusher off: what is measured is the bus.
//
// Per node count it reports: routed msg/s at saturation (a window of
// messages in flight per sender), the CPU of all nodes and of the NATS
// server per 1,000 messages, and the send-to-delivery latency (p50/p99) at a
// paced rate. The per-message CPU cost of the bus is the difference of the
// nodes' CPU per message against one node (the bus's publish, request, reply
// and their JSON on both nodes), plus the NATS server's.
//
//   node bench/cluster.ts [--nodes=1,2,3] [--pairs=30] [--window=8]
//                         [--warmup=2] [--duration=6] [--rate=300] [--paced-duration=5] [--out=FILE]
//                         [--cpu-prof]  (profiles every node; the top self time of node 0 of each run is reported)
//   npm run bench -- --phases=cluster     (the same from bench/run.ts; the flags above as
//                                         environment variables BENCH_CLUSTER_<NAME>, e.g. BENCH_CLUSTER_NODES=1,3)
//
// About two and a half minutes with the defaults. Needs PostgreSQL at
// 127.0.0.1:5432 (user postgres, trust) and NATS at 127.0.0.1:4222; each run
// uses a database and a cluster name of its own and drops the database.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { cpuMs, freePort, memKiB, now, percentiles, sleep, type Percentiles } from './common.ts';
import { REPO } from './servers.ts';
import { summariseProfile } from './profile-summary.ts';
import { ACCOUNTS, ACCOUNTS_MIGRATIONS } from '../src/storage/accounts.ts';
import { migratePg } from '../src/storage/migrations.ts';
import { makeStoredCredentials } from '../src/xmpp/sasl/index.ts';

const { values: flags } = parseArgs({
  args: process.argv.slice(2),
  options: {
    nodes: { type: 'string' },
    pairs: { type: 'string' },
    window: { type: 'string' },
    warmup: { type: 'string' },
    duration: { type: 'string' },
    rate: { type: 'string' },
    'paced-duration': { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean' },
    'cpu-prof': { type: 'boolean' },
  },
});

function num(name: keyof typeof flags, def: number): number {
  const raw = flags[name] ?? process.env['BENCH_CLUSTER_' + name.toUpperCase().replace(/-/g, '_')];
  const v = Number(raw ?? def);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

const P = {
  nodes: String(flags.nodes ?? process.env.BENCH_CLUSTER_NODES ?? '1,2,3').split(',').map(Number).filter((n) => n >= 1),
  pairs: Math.floor(num('pairs', 30)),
  window: Math.floor(num('window', 8)),
  warmupMs: num('warmup', 2) * 1000,
  durationMs: num('duration', 6) * 1000,
  rate: num('rate', 300),
  pacedMs: num('paced-duration', 5) * 1000,
};
const PASSWORD = 'bench-secret';
const PG = { host: '127.0.0.1', port: 5432, user: 'postgres', password: 'bench-not-a-password' };
const NATS = { host: '127.0.0.1', port: 4222 };

const log = (s: string) => process.stderr.write(`[bench cluster] ${s}\n`);

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** The NATS server's pid, when it runs on this machine and /proc shows it; its CPU is part of the bus's cost. */
function natsPid(): number | null {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'nats-server') return Number(d);
    } catch {}
  }
  return null;
}

// --- the load generator (bench/loadgen.ts), over IPC ------------------------

class Gen {
  proc: ChildProcess;
  #queue: Array<(m: any) => void> = [];
  constructor() {
    this.proc = fork(join(REPO, 'bench/loadgen.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m) => this.#queue.shift()?.(m));
  }
  ready(): Promise<unknown> {
    return new Promise((resolve) => this.#queue.push(resolve));
  }
  ask<T = any>(msg: object, timeoutMs = 60_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`loadgen: no reply to ${JSON.stringify(msg).slice(0, 60)}`)), timeoutMs);
      this.#queue.push((m) => {
        clearTimeout(t);
        if (m && typeof m === 'object' && 'error' in m) reject(new Error(String(m.error)));
        else resolve(m as T);
      });
      this.proc.send(msg);
    });
  }
  exit(): void {
    this.proc.send({ cmd: 'exit' });
    setTimeout(() => this.proc.kill('SIGKILL'), 1000).unref();
  }
}

// --- the nodes ----------------------------------------------------------------

interface Node {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

function nodeConfig(o: { i: number; port: number; database: string; cluster: string }): string {
  return `# Generated by bench/cluster.ts; loopback only.
[general]
  hosts = ["localhost"]
  loglevel = "warning"
  data_dir = "data${o.i}"
  sm_backend = "cets"
  max_c2s_connections = "infinity"
  max_c2s_connections_per_address = "infinity"
  max_concurrent_password_hashing = "infinity"

[[listen.c2s]]
  port = ${o.port}
  ip_address = "127.0.0.1"

[auth]
  [auth.password]
    format = "scram"
  [auth.rdbms]

[outgoing_pools.rdbms.default]
  workers = 4
  [outgoing_pools.rdbms.default.connection]
    driver = "pgsql"
    host = "${PG.host}"
    port = ${PG.port}
    database = "${o.database}"
    username = "${PG.user}"
    password = "${PG.password}"

[internal_databases.cets]
  backend = "rdbms"
  cluster_name = "${o.cluster}"

[cluster]
  bus = "nats://${NATS.host}:${NATS.port}"
  node_name = "bench${o.i}"

[modules.mod_roster]
  backend = "rdbms"
[modules.mod_offline]
  backend = "rdbms"
[modules.mod_disco]
`;
}

async function waitForPort(port: number, child: ChildProcess, ms: number): Promise<void> {
  const end = now() + ms;
  while (now() < end) {
    if (child.exitCode !== null) throw new Error('a node exited during start-up');
    if (await reachable('127.0.0.1', port)) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
}

async function startNode(dir: string, i: number, database: string, cluster: string, profDir?: string): Promise<Node> {
  const port = await freePort();
  const cfg = join(dir, `node${i}.toml`);
  writeFileSync(cfg, nodeConfig({ i, port, database, cluster }));
  const logFile = join(dir, `node${i}.log`);
  const out = createWriteStream(logFile);
  const prof = profDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', join(profDir, `node${i}`)];
  const child = spawn(process.execPath, [...prof, 'bin/petrel.mjs', 'start', '-c', cfg], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  try {
    await waitForPort(port, child, 20_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n')}`);
  }
  return {
    pid: child.pid!,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

/** The accounts s0..s(N-1), r0..r(N-1) in the run's database, one SCRAM derivation shared by all. */
async function createAccounts(pool: pg.Pool, pairs: number): Promise<void> {
  await migratePg(pool, ACCOUNTS_MIGRATIONS.component, ACCOUNTS_MIGRATIONS.rdbms);
  const creds = await makeStoredCredentials(PASSWORD, { format: 'scram', iterations: 4096 });
  const accounts = [];
  for (let i = 0; i < pairs; i++) accounts.push({ user: `s${i}`, domain: 'localhost', creds }, { user: `r${i}`, domain: 'localhost', creds });
  await ACCOUNTS.rdbms(pool).createUsers(accounts);
}

// --- one node count -------------------------------------------------------------

interface RunResult {
  nodes: number;
  crossNode: boolean;
  routedPerSec: number;
  nodesCpuUtil: number;
  nodesCpuMsPer1000: number;
  natsCpuMsPer1000: number | null;
  pacedRate: number;
  achievedRate: number;
  lost: number;
  latencyMs: Percentiles;
  nodesPeakRssKiB: number[];
  /** With --cpu-prof: node 0's main thread, top self time. */
  profile?: Array<{ selfPct: number; function: string; location: string }>;
}

async function runOne(n: number, dir: string): Promise<RunResult> {
  const database = `petrel_bench_${randomBytes(5).toString('hex')}`;
  const cluster = `bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ ...PG, database: 'postgres' });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.end();
  const pool = new pg.Pool({ ...PG, database, max: 2 });
  const nodes: Node[] = [];
  let gen: Gen | null = null;
  try {
    await createAccounts(pool, P.pairs);
    // One at a time: each joins a cluster that is there, as in a rolling start.
    const profDir = flags['cpu-prof'] === true ? join(dir, `prof-${n}`) : undefined;
    for (let i = 0; i < n; i++) nodes.push(await startNode(dir, i, database, cluster, profDir));
    // Every node sees every other (heartbeats, snapshots) before anyone logs in.
    await sleep(n > 1 ? 2500 : 500);
    gen = new Gen();
    await gen.ready();
    const ports = {
      s: Array.from({ length: P.pairs }, (_, i) => nodes[i % n]!.port),
      r: Array.from({ length: P.pairs }, (_, i) => nodes[(i + 1) % n]!.port),
    };
    await gen.ask({ cmd: 'pairs', target: { host: '127.0.0.1', port: nodes[0]!.port, domain: 'localhost', password: PASSWORD, register: false }, n: P.pairs, batch: 20, ports }, 120_000);
    // The session events of the last logins reach every node.
    await sleep(500);
    const nats = natsPid();
    const cpu = () => nodes.reduce((a, x) => a + cpuMs(x.pid), 0);

    await gen.ask({ cmd: 'satStart', window: P.window });
    await sleep(P.warmupMs);
    const g0 = await gen.ask({ cmd: 'count' });
    const c0 = cpu();
    const k0 = nats === null ? 0 : cpuMs(nats);
    const t0 = now();
    await sleep(P.durationMs);
    const g1 = await gen.ask({ cmd: 'count' });
    const c1 = cpu();
    const k1 = nats === null ? 0 : cpuMs(nats);
    const t1 = now();
    await gen.ask({ cmd: 'satStop', drainMs: 5000 }, 20_000);
    const delivered = g1.delivered - g0.delivered;
    await sleep(500);

    const paced = await gen.ask<{ latencies: number[]; lost: number; achievedRate: number }>({ cmd: 'paced', rate: P.rate, durationMs: P.pacedMs, drainMs: 5000 }, P.pacedMs * 2 + 30_000);
    const r = (x: number, d = 10) => Math.round(x * d) / d;
    const res: RunResult = {
      nodes: n,
      crossNode: n > 1,
      routedPerSec: Math.round((delivered * 1000) / (g1.t - g0.t)),
      nodesCpuUtil: r((c1 - c0) / (t1 - t0), 1000),
      nodesCpuMsPer1000: r((c1 - c0) / (delivered / 1000)),
      natsCpuMsPer1000: nats === null ? null : r((k1 - k0) / (delivered / 1000)),
      pacedRate: P.rate,
      achievedRate: Math.round(paced.achievedRate),
      lost: paced.lost,
      latencyMs: percentiles(paced.latencies),
      nodesPeakRssKiB: nodes.map((x) => memKiB(x.pid).hwm),
    };
    if (profDir !== undefined) {
      gen.exit();
      gen = null;
      await Promise.all(nodes.map((x) => x.stop()));
      const d0 = join(profDir, 'node0');
      // The main thread's profile is the first one written.
      const file = readdirSync(d0).filter((f) => f.endsWith('.cpuprofile')).sort()[0];
      if (file !== undefined) res.profile = summariseProfile(join(d0, file), 20).entries.map((e) => ({ selfPct: e.selfPct, function: e.function, location: e.location }));
    }
    return res;
  } finally {
    gen?.exit();
    await Promise.all(nodes.map((x) => x.stop()));
    await pool.end().catch(() => {});
    const d = new pg.Client({ ...PG, database: 'postgres' });
    await d.connect();
    await d.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => {});
    await d.end();
  }
}

// --- main -------------------------------------------------------------------------

/** The per-message cost of the bus: CPU per message on N nodes against one node, in microseconds. */
function busCost(runs: RunResult[]) {
  const one = runs.find((x) => x.nodes === 1);
  if (one === undefined) return null;
  return runs
    .filter((x) => x.nodes > 1)
    .map((x) => ({
      nodes: x.nodes,
      nodesCpuUsPerMessage: Math.round(x.nodesCpuMsPer1000 - one.nodesCpuMsPer1000),
      natsCpuUsPerMessage: x.natsCpuMsPer1000 === null ? null : Math.round(x.natsCpuMsPer1000 - (one.natsCpuMsPer1000 ?? 0)),
      latencyAddedP50Ms: Math.round((x.latencyMs.p50 - one.latencyMs.p50) * 1000) / 1000,
    }));
}

export async function clusterBench(): Promise<Record<string, unknown>> {
  if (!(await reachable(PG.host, PG.port))) return { skipped: `PostgreSQL is not reachable at ${PG.host}:${PG.port}` };
  if (!(await reachable(NATS.host, NATS.port))) return { skipped: `NATS is not reachable at ${NATS.host}:${NATS.port}` };
  const dir = mkdtempSync(join(tmpdir(), 'petrel-bench-cluster-'));
  const runs: RunResult[] = [];
  try {
    for (const n of P.nodes) {
      const t0 = now();
      const r = await runOne(n, dir);
      runs.push(r);
      log(`${n} node(s): ${JSON.stringify(r)} (${Math.round((now() - t0) / 1000)} s)`);
    }
  } finally {
    if (flags.keep === true) log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  return { params: P, runs, busCost: busCost(runs) };
}

function table(res: Record<string, any>): string {
  if (res.skipped) return `cluster: skipped: ${res.skipped}`;
  const lines = ['| nodes | routed msg/s | nodes CPU util | nodes CPU-ms/1k | NATS CPU-ms/1k | p50/p99 ms (paced) | lost |', '| --- | --- | --- | --- | --- | --- | --- |'];
  for (const x of res.runs as RunResult[]) {
    lines.push(`| ${x.nodes} | ${x.routedPerSec} | ${x.nodesCpuUtil} | ${x.nodesCpuMsPer1000} | ${x.natsCpuMsPer1000 ?? '-'} | ${x.latencyMs.p50}/${x.latencyMs.p99} at ${x.achievedRate}/s | ${x.lost} |`);
  }
  for (const b of res.busCost ?? []) lines.push(`bus cost on ${b.nodes} nodes: ${b.nodesCpuUsPerMessage} µs of node CPU + ${b.natsCpuUsPerMessage ?? '-'} µs of NATS CPU per message; p50 +${b.latencyAddedP50Ms} ms`);
  return lines.join('\n');
}

if (import.meta.main) {
  clusterBench().then(
    (res) => {
      const line = JSON.stringify(res);
      process.stdout.write(line + '\n\n' + table(res) + '\n');
      if (typeof flags.out === 'string') writeFileSync(flags.out, line + '\n');
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`[bench cluster] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
