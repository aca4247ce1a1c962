// `npm run bench`: end-to-end throughput, latency, CPU and memory of the
// server under test, with and without the event pusher, against a local
// HTTP sink; optionally the same load against ejabberd. Every process runs
// on this machine and all traffic stays on 127.0.0.1.
//
// Flags (each also as an environment variable BENCH_<NAME>, e.g. BENCH_N=100):
//   --n=50               sender/receiver pairs
//   --window=16          messages in flight per sender (saturation)
//   --warmup=2           seconds of saturation before measuring
//   --duration=10        seconds measured (saturation)
//   --rate=1400          total messages per second (paced)
//   --paced-duration=10  seconds (paced)
//   --idle=1000,10000    idle connection counts for the memory figure
//   --workers=50         outgoing HTTP pool workers (pusher on)
//   --pipelining=N       the pool's connection.pipelining (pusher on); absent: the option is not written (its default)
//   --sink=raw           raw | node: the sink's HTTP implementation (bench/sink.ts)
//   --sink-seconds=3     duration of each sink ceiling run
//   --phases=sink,off,on,paced,idle,overload,fairness   which phases to run (also besteffort: the
//                                     pusher with delivery = "best_effort", to show the outbox's cost;
//                                     cluster: 1 vs 2 vs 3 nodes of one cluster, bench/cluster.ts,
//                                     alone with --phases=cluster; its own knobs as BENCH_CLUSTER_<NAME>)
//   --overload-seconds=60  seconds of the overload phase: a webhook answering after 50 ms,
//                        ten times the load its pool takes (flow control, bench/overload.ts)
//   --overload-workers=10  pool workers of the overload phase (its webhook takes 20 a second each)
//   --overload-high-water=1048576  outbox_high_water_bytes of the overload and fairness phases
//                        (outbox_low_water_bytes: half of it)
//   --fairness-seconds=10  seconds of the fairness phase: one user flooding at full speed
//                        while paced pairs send --rate msg/s in all
//   --fairness-flooder=true  false: the fairness phase without its flooder (the same paced load
//                        alone, to compare with); both: with, then without, reported side by side
//   --server=petrel      petrel | ejabberd | both
//   --transport=tcp      tcp | ws | tcp,ws: how the load generator's clients connect to Petrel; with
//                        ws, the same phases run again with every client over XMPP over WebSocket
//                        (RFC 7395, mongoose_websocket_handler), reported under petrel.websocket
//   --repeat=3           saturation runs per server (in the same process, each after the last
//                        drained); reported: every run, and the run with the median rate as `saturation`
//   --cpu-prof           profile Petrel during the pusher-on run (or pusher-off if the pusher is not there)
//   --micro              run the micro-benchmarks (bench/micro.ts) and exit
//   --out=FILE           also write the JSON line to FILE
//   --keep               keep the temporary directory
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readdirSync, mkdirSync, chmodSync } from 'node:fs';
import { tmpdir, cpus, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuMs, freePort, memKiB, now, percentiles, sleep, threadCpuDelta, threadCpuMs, type Percentiles } from './common.ts';
import { registerUsers } from './register.ts';
import { REPO, WS_PATH, ejabberdHasPostLog, ejabberdMissing, startEjabberd, startPetrel, type ServerHandle } from './servers.ts';
import { summariseProfile, type ProfileEntry } from './profile-summary.ts';
import { fairnessPhase, overloadPhase, type FlowPhaseOptions } from './overload.ts';

const { values: flags } = parseArgs({
  args: process.argv.slice(2),
  options: {
    n: { type: 'string' },
    window: { type: 'string' },
    warmup: { type: 'string' },
    duration: { type: 'string' },
    rate: { type: 'string' },
    'paced-duration': { type: 'string' },
    idle: { type: 'string' },
    workers: { type: 'string' },
    pipelining: { type: 'string' },
    sink: { type: 'string' },
    'sink-seconds': { type: 'string' },
    phases: { type: 'string' },
    'overload-seconds': { type: 'string' },
    'overload-workers': { type: 'string' },
    'overload-high-water': { type: 'string' },
    'fairness-seconds': { type: 'string' },
    'fairness-flooder': { type: 'string' },
    repeat: { type: 'string' },
    server: { type: 'string' },
    transport: { type: 'string' },
    'cpu-prof': { type: 'boolean' },
    micro: { type: 'boolean' },
    out: { type: 'string' },
    keep: { type: 'boolean' },
  },
});

function opt(name: keyof typeof flags, def: string): string {
  const v = flags[name];
  if (typeof v === 'string') return v;
  const env = process.env['BENCH_' + name.toUpperCase().replace(/-/g, '_')];
  return env ?? def;
}
function num(name: keyof typeof flags, def: number): number {
  const v = Number(opt(name, String(def)));
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

if (flags.micro) {
  const r = spawnSync(process.execPath, [join(REPO, 'bench/micro.ts')], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const P = {
  n: Math.floor(num('n', 50)),
  window: Math.floor(num('window', 16)),
  warmupMs: num('warmup', 2) * 1000,
  durationMs: num('duration', 10) * 1000,
  rate: num('rate', 1400),
  pacedMs: num('paced-duration', 10) * 1000,
  idle: opt('idle', '1000,10000')
    .split(',')
    .filter((s) => s !== '')
    .map(Number)
    .sort((a, b) => a - b),
  workers: Math.floor(num('workers', 50)),
  pipelining: opt('pipelining', '') === '' ? undefined : Math.floor(num('pipelining', 1)),
  sink: opt('sink', 'raw'),
  sinkMs: num('sink-seconds', 3) * 1000,
  phases: new Set(opt('phases', 'sink,off,on,paced,idle,overload,fairness').split(',')),
  overloadSeconds: num('overload-seconds', 60),
  overloadWorkers: Math.floor(num('overload-workers', 10)),
  overloadHighWater: Math.floor(num('overload-high-water', 1024 * 1024)),
  fairnessSeconds: num('fairness-seconds', 10),
  fairnessFlooder: opt('fairness-flooder', 'true'),
  server: opt('server', 'petrel'),
  transports: opt('transport', 'tcp').split(',').filter((t) => t !== ''),
  repeat: Math.max(1, Math.floor(num('repeat', 3))),
  cpuProf: flags['cpu-prof'] === true || process.env.BENCH_CPU_PROF === '1',
};
if (P.sink !== 'raw' && P.sink !== 'node') throw new Error('--sink is raw or node');
if (!['true', 'false', 'both'].includes(P.fairnessFlooder)) throw new Error('--fairness-flooder is true, false or both');
if (!['petrel', 'ejabberd', 'both'].includes(P.server)) throw new Error('--server is petrel, ejabberd or both');
if (P.transports.length === 0 || P.transports.some((t) => t !== 'tcp' && t !== 'ws')) throw new Error('--transport is tcp, ws or tcp,ws');
const PASSWORD = 'bench-secret';
const LOGIN_BATCH = 50;

const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

// --- child processes ----------------------------------------------------------

class Child {
  proc: ChildProcess;
  #queue: Array<(m: any) => void> = [];
  constructor(file: string, args: string[] = []) {
    this.proc = fork(join(REPO, file), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m) => {
      const w = this.#queue.shift();
      if (w) w(m);
    });
  }
  /** Sends a command and waits for its one reply, bounded in time. */
  ask<T = any>(msg: object, timeoutMs = 30_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply to ${JSON.stringify(msg).slice(0, 80)} within ${timeoutMs} ms`)), timeoutMs);
      this.#queue.push((m) => {
        clearTimeout(t);
        if (m && typeof m === 'object' && 'error' in m) reject(new Error(String(m.error)));
        else resolve(m as T);
      });
      this.proc.send(msg);
    });
  }
  /** Sends a command that has no reply. */
  tell(msg: object): void {
    this.proc.send(msg);
  }
  ready(): Promise<any> {
    return new Promise((resolve) => this.#queue.push(resolve));
  }
  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
  }
}

// --- phases ---------------------------------------------------------------------

interface SinkStats {
  count: number;
  unmarked: number;
  t: number;
}

async function sinkCount(sink: Child): Promise<SinkStats> {
  return sink.ask<SinkStats>({ cmd: 'stats' });
}

/** Waits until the sink has seen `expect` POSTs, or none for `quietMs`; at most `maxMs`. */
async function sinkSettle(sink: Child, quietMs: number, maxMs: number, expect = Infinity): Promise<number> {
  const end = now() + maxMs;
  let last = (await sinkCount(sink)).count;
  let since = now();
  while (now() < end && last < expect) {
    await sleep(100);
    const c = (await sinkCount(sink)).count;
    if (c !== last) {
      last = c;
      since = now();
    } else if (now() - since >= quietMs) break;
  }
  return last;
}

function runSinkLoad(url: string, connections: number, ms: number, pipelining: number): Promise<any> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bench/sink-load.ts'), url, String(connections), String(ms), String(pipelining)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const t = setTimeout(() => child.kill('SIGKILL'), ms + 20_000);
    child.on('exit', (code) => {
      clearTimeout(t);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!));
      } catch {
        reject(new Error(`sink load run failed (exit ${code})`));
      }
    });
  });
}

async function sinkCeiling(sink: Child, sinkPort: number) {
  const url = `http://127.0.0.1:${sinkPort}/webservice/notifications`;
  const out: Record<string, unknown> = {};
  const runs: Array<[string, number, number]> = [['conn1', 1, 1], ['conn4', 4, 1]];
  if (P.pipelining !== undefined && P.pipelining > 1) runs.push([`conn4pipe${P.pipelining}`, 4, P.pipelining]);
  for (const [name, c, pipe] of runs) {
    await sink.ask({ cmd: 'reset' });
    const s0 = cpuMs(sink.proc.pid!);
    const r = await runSinkLoad(url, c, P.sinkMs, pipe);
    const sinkCpu = cpuMs(sink.proc.pid!) - s0;
    out[name] = { rps: Math.round(r.rps), requests: r.requests, failed: r.failed, clientCpuMs: Math.round(r.clientCpuMs), sinkCpuMs: Math.round(sinkCpu), sinkCpuMsPer1000: Math.round((sinkCpu / (r.requests / 1000)) * 10) / 10 };
    log(`sink ceiling on ${c} connection(s), pipelining ${pipe}: ${Math.round(r.rps)} POST/s, sink ${out[name] && (out[name] as any).sinkCpuMsPer1000} CPU-ms per 1,000`);
  }
  return out;
}

/** Where the load generator logs in: TCP, or XMPP over WebSocket on a server that serves it. */
function target(server: ServerHandle, transport: Transport) {
  const t = { host: '127.0.0.1', port: server.port, domain: 'localhost', password: PASSWORD, register: server.inBandRegistration };
  if (transport === 'tcp') return t;
  if (server.wsPort === undefined) throw new Error('this server has no WebSocket listener');
  return { ...t, ws: { port: server.wsPort, path: WS_PATH } };
}

type Transport = 'tcp' | 'ws';

interface SaturationResult {
  pushing: boolean;
  deliveredPerSec: number;
  postsPerSec: number | null;
  serverCpuMs: number;
  serverCpuUtil: number;
  cpuMsPer1000Delivered: number;
  cpuMsPer1000Pushed: number | null;
  /** The server's threads during the measured window: CPU-ms, and per 1,000 pushed (or delivered without the pusher). */
  threads: Array<{ thread: string; cpuMs: number; util: number; per1000: number }>;
  loadgenCpuUtil: number;
  sinkCpuUtil: number;
  totals: { sent: number; delivered: number; pushedAfterDrain: number | null; stanzaErrors: number };
  /**
   * Server CPU from the start of the load (warm-up included) until every
   * message was delivered and pushed, per 1,000 messages: the whole cost of a
   * message when pushes lag behind routing and finish after the load stops.
   * Null when the drain did not finish.
   */
  cpuMsPer1000EndToEnd: number | null;
  drainMs: number;
  serverPeakRssKiB: number;
}

async function saturation(server: ServerHandle, gen: Child, sink: Child): Promise<SaturationResult> {
  await sink.ask({ cmd: 'reset' });
  const cStart = cpuMs(server.pid);
  // The generator's counts run on over repeated runs: this run's are the difference.
  const before = (await gen.ask({ cmd: 'count' })) as { sent: number; delivered: number; errors: number };
  await gen.ask({ cmd: 'satStart', window: P.window });
  await sleep(P.warmupMs);
  const g0 = await gen.ask({ cmd: 'count' });
  const s0 = await sinkCount(sink);
  const c0 = cpuMs(server.pid);
  const th0 = threadCpuMs(server.pid);
  const gc0 = cpuMs(gen.proc.pid!);
  const sc0 = cpuMs(sink.proc.pid!);
  const t0 = now();
  await sleep(P.durationMs);
  const g1 = await gen.ask({ cmd: 'count' });
  const s1 = await sinkCount(sink);
  const c1 = cpuMs(server.pid);
  const th1 = threadCpuMs(server.pid);
  const gc1 = cpuMs(gen.proc.pid!);
  const sc1 = cpuMs(sink.proc.pid!);
  const t1 = now();
  const ended = await gen.ask({ cmd: 'satStop', drainMs: 5000 }, 20_000);
  const end = { sent: ended.sent - before.sent, delivered: ended.delivered - before.delivered, errors: ended.errors - before.errors };
  const d0 = now();
  // Pushes may lag far behind routing: wait until they are all in (or stop for 2 s).
  const pushedAfterDrain = server.pushing ? await sinkSettle(sink, 2000, 120_000, end.sent) : null;
  const drainMs = now() - d0;
  const cEnd = cpuMs(server.pid);
  const wall = t1 - t0;
  const deliveredIn = g1.delivered - g0.delivered;
  const postsIn = s1.count - s0.count;
  const cpu = c1 - c0;
  const r = (x: number, d = 1) => Math.round(x * d) / d;
  return {
    pushing: server.pushing,
    deliveredPerSec: r((deliveredIn * 1000) / (g1.t - g0.t)),
    postsPerSec: server.pushing ? r((postsIn * 1000) / (s1.t - s0.t)) : null,
    serverCpuMs: r(cpu),
    serverCpuUtil: r(cpu / wall, 1000),
    cpuMsPer1000Delivered: r(cpu / (deliveredIn / 1000), 10),
    cpuMsPer1000Pushed: server.pushing && postsIn > 0 ? r(cpu / (postsIn / 1000), 10) : null,
    threads: threadCpuDelta(th0, th1).map((t) => ({ ...t, util: r(t.cpuMs / wall, 1000), per1000: r(t.cpuMs / ((server.pushing && postsIn > 0 ? postsIn : deliveredIn) / 1000), 10) })),
    loadgenCpuUtil: r((gc1 - gc0) / wall, 1000),
    sinkCpuUtil: r((sc1 - sc0) / wall, 1000),
    totals: { sent: end.sent, delivered: end.delivered, pushedAfterDrain, stanzaErrors: end.errors },
    cpuMsPer1000EndToEnd: server.pushing && pushedAfterDrain === end.sent ? r((cEnd - cStart) / (end.sent / 1000), 10) : null,
    drainMs: r(drainMs),
    serverPeakRssKiB: memKiB(server.pid).hwm,
  };
}

interface PacedResult {
  rate: number;
  achievedRate: number;
  sent: number;
  lostDeliveries: number;
  sendToDeliveryMs: Percentiles;
  sendToPostMs: Percentiles | null;
  missingPosts: number | null;
  serverCpuUtil: number;
  cpuMsPer1000Messages: number;
  /** The server's threads over the paced run: CPU-ms, share of a core, CPU-ms per 1,000 messages. */
  threads: Array<{ thread: string; cpuMs: number; util: number; per1000: number }>;
}

async function paced(server: ServerHandle, gen: Child, sink: Child): Promise<PacedResult> {
  await sink.ask({ cmd: 'reset' });
  sink.tell({ cmd: 'record', on: true });
  const c0 = cpuMs(server.pid);
  const th0 = threadCpuMs(server.pid);
  const t0 = now();
  const g = await gen.ask({ cmd: 'paced', rate: P.rate, durationMs: P.pacedMs, drainMs: 5000 }, P.pacedMs * 2 + 30_000);
  const c1 = cpuMs(server.pid);
  const th1 = threadCpuMs(server.pid);
  const t1 = now();
  let sendToPost: Percentiles | null = null;
  let missing: number | null = null;
  if (server.pushing) {
    await sinkSettle(sink, 500, 10_000);
    const a = await sink.ask<{ seqs: number[]; times: number[] }>({ cmd: 'arrivals' });
    const arrived = new Map<number, number>();
    for (let i = 0; i < a.seqs.length; i++) if (!arrived.has(a.seqs[i]!)) arrived.set(a.seqs[i]!, a.times[i]!);
    const lat: number[] = [];
    for (let i = 0; i < g.seqs.length; i++) {
      const t = arrived.get(g.seqs[i]);
      if (t !== undefined) lat.push(t - g.sendTimes[i]);
    }
    sendToPost = percentiles(lat);
    missing = g.seqs.length - lat.length;
  }
  sink.tell({ cmd: 'record', on: false });
  const sent = g.seqs.length;
  return {
    rate: P.rate,
    achievedRate: Math.round(g.achievedRate),
    sent,
    lostDeliveries: g.lost,
    sendToDeliveryMs: percentiles(g.latencies),
    sendToPostMs: sendToPost,
    missingPosts: missing,
    serverCpuUtil: Math.round(((c1 - c0) / (t1 - t0)) * 1000) / 1000,
    cpuMsPer1000Messages: Math.round(((c1 - c0) / (sent / 1000)) * 10) / 10,
    threads: threadCpuDelta(th0, th1).map((t) => ({ ...t, util: Math.round((t.cpuMs / (t1 - t0)) * 1000) / 1000, per1000: Math.round((t.cpuMs / (sent / 1000)) * 10) / 10 })),
  };
}

async function idleMemory(server: ServerHandle, gen: Child, transport: Transport = 'tcp') {
  // Start-up garbage is returned in the first seconds (the BEAM especially).
  await sleep(4000);
  const base = memKiB(server.pid).rss;
  const steps: Array<{ connections: number; rssKiB: number; deltaKiB: number; kibPerConnection: number; failedLogins: number }> = [];
  let open = 0;
  for (const count of P.idle) {
    const t0 = now();
    const r = await gen.ask({ cmd: 'idle', target: target(server, transport), from: open, count: count - open, batch: 100 }, 600_000);
    open = count;
    log(`${count} idle connections logged in (${Math.round(now() - t0)} ms, ${r.failed} failed${r.failed ? ': ' + JSON.stringify(r.reasons) : ''})`);
    await sleep(3000);
    const rss = memKiB(server.pid).rss;
    steps.push({ connections: count, rssKiB: rss, deltaKiB: rss - base, kibPerConnection: Math.round(((rss - base) / count) * 100) / 100, failedLogins: r.failed });
  }
  await gen.ask({ cmd: 'closeIdle' });
  return { baselineRssKiB: base, steps };
}

// --- one server, all phases ---------------------------------------------------

interface Ctx {
  dir: string;
  dataDir: string;
  sink: Child;
  sinkPort: number;
}

async function withServer<T>(start: () => Promise<ServerHandle>, body: (s: ServerHandle, gen: Child) => Promise<T>): Promise<T> {
  const server = await start();
  const gen = new Child('bench/loadgen.ts');
  await gen.ready();
  try {
    return await body(server, gen);
  } finally {
    gen.tell({ cmd: 'exit' });
    await sleep(200);
    gen.kill();
    await server.stop();
  }
}

/**
 * The run with the median rate (POST/s when pushing, delivered msg/s otherwise):
 * on a shared machine one run's rate moves by a third, the median of three far less.
 */
function medianRun(runs: SaturationResult[]): SaturationResult {
  const key = (r: SaturationResult) => r.postsPerSec ?? r.deliveredPerSec;
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  return sorted[(sorted.length - 1) >> 1]!;
}

async function loadPhases(s: ServerHandle, gen: Child, ctx: Ctx, label: string, transport: Transport = 'tcp') {
  const out: Record<string, unknown> = {};
  const t0 = now();
  await gen.ask({ cmd: 'pairs', target: target(s, transport), n: P.n, batch: LOGIN_BATCH }, 300_000);
  log(`${label}: ${P.n} pairs logged in (${Math.round(now() - t0)} ms)`);
  const runs: SaturationResult[] = [];
  for (let i = 0; i < P.repeat; i++) {
    const r = await saturation(s, gen, ctx.sink);
    log(`${label}: saturation${P.repeat > 1 ? ` ${i + 1}/${P.repeat}` : ''} ${JSON.stringify(r)}`);
    runs.push(r);
  }
  out.saturation = medianRun(runs);
  if (runs.length > 1) out.saturationRuns = runs.map((r) => ({ deliveredPerSec: r.deliveredPerSec, postsPerSec: r.postsPerSec, cpuMsPer1000Pushed: r.cpuMsPer1000Pushed, cpuMsPer1000Delivered: r.cpuMsPer1000Delivered }));
  if (P.phases.has('paced')) {
    out.paced = await paced(s, gen, ctx.sink);
    log(`${label}: paced ${JSON.stringify(out.paced)}`);
  }
  out.peakRssKiB = memKiB(s.pid).hwm;
  return out;
}

async function benchPetrel(ctx: Ctx) {
  const res: Record<string, unknown> = {};
  const profDir = join(ctx.dir, 'cpuprof');
  if (P.cpuProf) mkdirSync(profDir, { recursive: true });
  let profiled = false;
  const withWs = P.transports.includes('ws');
  const petrel = (name: string, push: boolean, prof: boolean, delivery?: 'best_effort') => async () => {
    const port = await freePort();
    const wsPort = withWs ? await freePort() : undefined;
    return startPetrel({ dir: ctx.dir, name, port, wsPort, dataDir: ctx.dataDir, push: push ? { sinkPort: ctx.sinkPort, workers: P.workers, pipelining: P.pipelining, delivery } : null, cpuProfDir: prof ? profDir : undefined });
  };
  let pusherAvailable = true;
  if (!P.transports.includes('tcp')) {
    res.websocket = await websocketPhases(ctx, petrel);
    return res;
  }
  if (P.phases.has('on')) {
    try {
      res.pusherOn = await withServer(petrel('pusher-on', true, P.cpuProf), (s, gen) => loadPhases(s, gen, ctx, 'petrel pusher on'));
      profiled = P.cpuProf;
    } catch (err) {
      pusherAvailable = false;
      res.pusherOn = { skipped: (err as Error).message.split('\n')[0] };
      log(`petrel pusher on: skipped: ${(err as Error).message}`);
    }
  }
  if (P.phases.has('besteffort')) {
    res.pusherBestEffort = await withServer(petrel('pusher-best-effort', true, false, 'best_effort'), (s, gen) => loadPhases(s, gen, ctx, 'petrel pusher on, best_effort'));
  }
  if (P.phases.has('off')) {
    const prof = P.cpuProf && !profiled;
    res.pusherOff = await withServer(petrel('pusher-off', false, prof), (s, gen) => loadPhases(s, gen, ctx, 'petrel pusher off'));
    profiled ||= prof;
  }
  if (P.phases.has('idle') && P.idle.length > 0) {
    res.idle = await withServer(petrel('idle', false, false), (s, gen) => idleMemory(s, gen));
    log(`petrel idle: ${JSON.stringify(res.idle)}`);
  }
  if (profiled) {
    // One file per thread of the server (main thread first, then workers such as the outbox's);
    // the server is the only process started with --cpu-prof.
    const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).sort();
    const summaries = files.map((f) => summariseProfile(join(profDir, f), 25));
    res.profile = { files: files.map((f) => join(profDir, f)), top: summaries[0] ?? null, threads: summaries };
  }
  const flowOpts: FlowPhaseOptions = { dir: ctx.dir, dataDir: ctx.dataDir, password: PASSWORD, pairs: P.n, log };
  const high = P.overloadHighWater;
  if (P.phases.has('overload')) {
    res.overload = await overloadPhase(flowOpts, { seconds: P.overloadSeconds, workers: P.overloadWorkers, delayMs: 50, flooders: 4, highWaterBytes: high, lowWaterBytes: Math.floor(high / 2), pacedRate: 50, warmupMs: P.warmupMs });
    log(`petrel overload: ${JSON.stringify(res.overload)}`);
  }
  if (P.phases.has('fairness')) {
    const fair = (flooder: boolean) =>
      fairnessPhase(flowOpts, { seconds: P.fairnessSeconds, workers: P.workers, rate: P.rate, pacedPairs: Math.min(P.n - 1, 20), highWaterBytes: high, lowWaterBytes: Math.floor(high / 2), flooder, warmupMs: P.warmupMs });
    if (P.fairnessFlooder !== 'false') {
      res.fairness = await fair(true);
      log(`petrel fairness: ${JSON.stringify(res.fairness)}`);
    }
    if (P.fairnessFlooder !== 'true') {
      res.fairnessNoFlooder = await fair(false);
      log(`petrel fairness without the flooder: ${JSON.stringify(res.fairnessNoFlooder)}`);
    }
  }
  res.pusherAvailable = pusherAvailable;
  if (withWs) res.websocket = await websocketPhases(ctx, petrel);
  return res;
}

/** The pusher on / pusher off / idle phases again, every client over XMPP over WebSocket. */
async function websocketPhases(ctx: Ctx, petrel: (name: string, push: boolean, prof: boolean) => () => Promise<ServerHandle>) {
  const out: Record<string, unknown> = {};
  if (P.phases.has('on')) {
    try {
      out.pusherOn = await withServer(petrel('ws-pusher-on', true, false), (s, gen) => loadPhases(s, gen, ctx, 'petrel ws pusher on', 'ws'));
    } catch (err) {
      out.pusherOn = { skipped: (err as Error).message.split('\n')[0] };
      log(`petrel ws pusher on: skipped: ${(err as Error).message}`);
    }
  }
  if (P.phases.has('off')) {
    out.pusherOff = await withServer(petrel('ws-pusher-off', false, false), (s, gen) => loadPhases(s, gen, ctx, 'petrel ws pusher off', 'ws'));
  }
  if (P.phases.has('idle') && P.idle.length > 0) {
    out.idle = await withServer(petrel('ws-idle', false, false), (s, gen) => idleMemory(s, gen, 'ws'));
    log(`petrel ws idle: ${JSON.stringify(out.idle)}`);
  }
  return out;
}

async function benchEjabberd(ctx: Ctx) {
  const missing = ejabberdMissing();
  if (missing !== null) {
    log(`ejabberd: skipped: ${missing}`);
    return { skipped: missing };
  }
  const res: Record<string, unknown> = {};
  const postLog = ejabberdHasPostLog();
  res.push = postLog ? 'mod_post_log (ejabberd-contrib): one POST per chat or groupchat message a user sends, body = the stanza XML' : 'none: mod_post_log is not installed; routing only';
  const ej = (name: string, push: boolean) => async () => {
    const port = await freePort();
    return startEjabberd({ dir: ctx.dir, name, port, postUrl: push ? `http://127.0.0.1:${ctx.sinkPort}/webservice/notifications` : null });
  };
  if (P.phases.has('on') && postLog) {
    try {
      res.pusherOn = await withServer(ej('pusher-on', true), (s, gen) => loadPhases(s, gen, ctx, 'ejabberd mod_post_log'));
    } catch (err) {
      res.pusherOn = { skipped: (err as Error).message };
      log(`ejabberd pusher on: ${(err as Error).message}`);
    }
  }
  if (P.phases.has('off')) {
    try {
      res.pusherOff = await withServer(ej('pusher-off', false), (s, gen) => loadPhases(s, gen, ctx, 'ejabberd routing'));
    } catch (err) {
      res.pusherOff = { skipped: (err as Error).message };
      log(`ejabberd pusher off: ${(err as Error).message}`);
    }
  }
  if (P.phases.has('idle') && P.idle.length > 0) {
    try {
      res.idle = await withServer(ej('idle', false), (s, gen) => idleMemory(s, gen));
      log(`ejabberd idle: ${JSON.stringify(res.idle)}`);
    } catch (err) {
      res.idle = { skipped: (err as Error).message };
    }
  }
  return res;
}

/** bench/cluster.ts in a process of its own; its JSON line. */
function clusterPhase(): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bench/cluster.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`bench/cluster.ts failed (exit ${code})`));
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line === undefined) return reject(new Error('bench/cluster.ts printed no result'));
      log(`cluster: ${line}`);
      resolve(JSON.parse(line));
    });
  });
}

// --- report ---------------------------------------------------------------------

function machine() {
  const c = cpus();
  return { nproc: c.length, cpuModel: c[0]?.model ?? 'unknown', node: process.version, kernel: release(), ulimitN: spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim() };
}

function targets(petrel: any, sinkCeiling: any, ejabberd?: any) {
  const on = petrel?.pusherOn?.saturation;
  const off = petrel?.pusherOff?.saturation;
  const pacedOn = petrel?.pusherOn?.paced;
  const idle = petrel?.idle?.steps as Array<{ connections: number; kibPerConnection: number }> | undefined;
  const idleMax = idle?.[idle.length - 1];
  const ceiling = sinkCeiling ? Math.max(...Object.values(sinkCeiling as Record<string, { rps?: number }>).map((c) => c.rps ?? 0)) : null;
  const rows: Array<{ name: string; target: string; value: number | null; unit: string; pass: boolean | null }> = [];
  const add = (name: string, tgt: string, value: number | null | undefined, unit: string, ok: (v: number) => boolean) =>
    rows.push({ name, target: tgt, value: value ?? null, unit, pass: value === null || value === undefined ? null : ok(value) });
  add('pushed msg/s at saturation', '>= 20000', on?.postsPerSec, 'POST/s', (v) => v >= 20_000);
  const ejPosts = ejabberd?.pusherOn?.saturation?.postsPerSec;
  add('pushed POST/s, times ejabberd + mod_post_log', '>= 8', on?.postsPerSec && ejPosts ? Math.round((on.postsPerSec / ejPosts) * 10) / 10 : null, 'x', (v) => v >= 8);
  add('server CPU-ms per 1,000 pushed', '<= 60', on?.cpuMsPer1000Pushed, 'ms', (v) => v <= 60);
  add('routed msg/s, pusher off', '>= 20000', off?.deliveredPerSec, 'msg/s', (v) => v >= 20_000);
  add(`p50 send->POST at ${P.rate} msg/s`, '<= 1', pacedOn?.sendToPostMs?.p50, 'ms', (v) => v <= 1);
  add(`p99 send->POST at ${P.rate} msg/s`, '<= 3', pacedOn?.sendToPostMs?.p99, 'ms', (v) => v <= 3);
  add(`RSS per idle connection (${idleMax?.connections ?? '-'})`, '<= 10', idleMax?.kibPerConnection, 'KiB', (v) => v <= 10);
  const cost = on && off ? Math.round((1 - on.deliveredPerSec / off.deliveredPerSec) * 1000) / 10 : null;
  add('throughput lost to the pusher', '<= 40', cost, '%', (v) => v <= 40);
  const ov = petrel?.overload;
  add('events lost under overload', '= 0', ov?.eventsLost, '', (v) => v === 0);
  add('outbox max / high-water mark under overload', '< 1', ov?.outboxMaxOverHighWater, 'x', (v) => v < 1);
  add('p99 of users not pushed, under overload', 'info', ov?.otherUsersLatencyMs?.p99, 'ms', () => true);
  add('events lost, fairness', '= 0', petrel?.fairness?.eventsLost, '', (v) => v === 0);
  add(`p99 of the others beside a flooder at ${P.rate} msg/s`, '<= 5', petrel?.fairness?.othersLatencyMs?.p99, 'ms', (v) => v <= 5);
  add(`p99 of the same paced load without the flooder`, 'info', petrel?.fairnessNoFlooder?.othersLatencyMs?.p99, 'ms', () => true);
  const frac = on?.postsPerSec && ceiling ? Math.round((on.postsPerSec / ceiling) * 1000) / 10 : null;
  add('pushes/s as a share of the sink ceiling', 'info', frac, '%', () => true);
  return rows;
}

function table(result: any): string {
  const lines: string[] = [];
  const row = (cells: Array<string | number | null | undefined>) => lines.push('| ' + cells.map((c) => (c === null || c === undefined ? '-' : String(c))).join(' | ') + ' |');
  row(['server', 'run', 'delivered msg/s', 'POST/s', 'CPU util', 'CPU-ms/1k deliv', 'CPU-ms/1k push', 'p50/p99/max deliv ms', 'p50/p99/max POST ms', 'peak RSS MiB']);
  row(['---', '---', '---', '---', '---', '---', '---', '---', '---', '---']);
  const servers: Array<[string, any]> = [['petrel', result.petrel], ['petrel ws', result.petrel?.websocket], ['ejabberd', result.ejabberd]];
  for (const [name, s] of servers) {
    if (!s || s.skipped) continue;
    for (const run of ['pusherOff', 'pusherOn', 'pusherBestEffort']) {
      const r = s[run];
      if (!r || r.skipped) continue;
      const sat = r.saturation;
      const pc = r.paced;
      const pp = (p: Percentiles | null | undefined) => (p ? `${p.p50}/${p.p99}/${p.max}` : null);
      row([name, run === 'pusherOn' ? 'pusher on' : run === 'pusherOff' ? 'pusher off' : 'pusher on, best_effort', sat.deliveredPerSec, sat.postsPerSec, sat.serverCpuUtil, sat.cpuMsPer1000Delivered, sat.cpuMsPer1000Pushed, pp(pc?.sendToDeliveryMs), pp(pc?.sendToPostMs), Math.round(r.peakRssKiB / 102.4) / 10]);
    }
  }
  lines.push('');
  for (const [name, s] of servers) {
    const idle = s?.idle;
    if (idle?.steps) lines.push(`${name} idle: ` + idle.steps.map((s: any) => `${s.connections} conns -> +${Math.round(s.deltaKiB / 1024)} MiB, ${s.kibPerConnection} KiB/conn`).join('; '));
  }
  if (result.sinkCeiling) lines.push(`sink ceiling: 1 conn ${result.sinkCeiling.conn1?.rps} POST/s, 4 conns ${result.sinkCeiling.conn4?.rps} POST/s`);
  lines.push('');
  lines.push('| target | goal | measured | pass |');
  lines.push('| --- | --- | --- | --- |');
  for (const t of result.targets) lines.push(`| ${t.name} | ${t.target} | ${t.value ?? '-'} ${t.value !== null ? t.unit : ''} | ${t.pass === null ? 'n/a' : t.pass ? 'yes' : 'NO'} |`);
  const top = result.petrel?.profile?.top?.entries as ProfileEntry[] | undefined;
  if (top) {
    lines.push('');
    lines.push('Top self time (Petrel, profiled run):');
    for (const e of top.slice(0, 15)) lines.push(`  ${e.selfPct.toFixed(1).padStart(5)}%  ${e.function}  ${e.location}`);
  }
  return lines.join('\n');
}

// --- main -------------------------------------------------------------------

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-bench-'));
  chmodSync(dir, 0o755);
  const dataDir = join(dir, 'data');
  log(`working directory ${dir}`);
  const sink = new Child('bench/sink.ts', [P.sink]);
  const { port: sinkPort } = await sink.ready();
  const result: Record<string, any> = { machine: machine(), params: { ...P, phases: [...P.phases] } };
  const ctx: Ctx = { dir, dataDir, sink, sinkPort };
  try {
    if (P.server !== 'ejabberd') {
      const maxIdle = P.phases.has('idle') ? (P.idle[P.idle.length - 1] ?? 0) : 0;
      const t0 = now();
      const created = await registerUsers({ dataDir, domain: 'localhost', pairs: P.n, idle: maxIdle, password: PASSWORD, iterations: 4096 });
      log(`${created} accounts created (${Math.round(now() - t0)} ms)`);
    }
    if (P.phases.has('sink')) result.sinkCeiling = await sinkCeiling(sink, sinkPort);
    const single = [...P.phases].some((p) => p !== 'cluster');
    if (P.server !== 'ejabberd' && single) result.petrel = await benchPetrel(ctx);
    if (P.server !== 'petrel' && single) result.ejabberd = await benchEjabberd(ctx);
    if (P.phases.has('cluster')) result.cluster = await clusterPhase();
    result.targets = targets(result.petrel, result.sinkCeiling, result.ejabberd);
    const line = JSON.stringify(result);
    process.stdout.write(line + '\n\n' + table(result) + '\n');
    if (flags.out) writeFileSync(flags.out, line + '\n');
  } finally {
    sink.tell({ cmd: 'exit' });
    await sleep(100);
    sink.kill();
    if (!flags.keep && !P.cpuProf) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
