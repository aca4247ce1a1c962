// The overload and fairness phases of `npm run bench` (flow control of the
// event pusher, docs/mod_event_pusher_http.md#outbox_high_water_bytes-outbox_low_water_bytes-petrel).
//
// overload: the webhook answers each request after 50 ms, so the pool's
//   workers take `workers × 20` events a second; flooders offer ten times
//   that for `--overload-seconds`. Reported: the outbox's largest size
//   against its high-water mark, the events lost (delivered messages
//   without their push, and refused messages: must be 0), duplicates, and
//   the send → delivery latency of a paced pair whose messages are not
//   pushed (the callback module pushes the flooders' only).
// fairness: one user floods as fast as its socket takes it while paced
//   pairs send `--rate` messages a second in all, everyone pushed, the
//   webhook answering at once; reported: the paced pairs' latency.
//
// The webhook is an HTTP server in this process (it only answers and counts).
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MARK_RE, freePort, now, percentiles, sleep, type Percentiles } from './common.ts';
import { REPO, startPetrel, type ServerHandle } from './servers.ts';

export interface FlowPhaseOptions {
  dir: string;
  dataDir: string;
  password: string;
  /** Pairs registered (s<i>, r<i>): the phases use the first few. */
  pairs: number;
  log(s: string): void;
}

export interface OverloadOptions {
  seconds: number;
  workers: number;
  delayMs: number;
  flooders: number;
  highWaterBytes: number;
  lowWaterBytes: number;
  pacedRate: number;
  /** Paced load alone before the measured run, not measured (ms): a fresh server's code is compiled first. */
  warmupMs: number;
}

export interface FairnessOptions {
  seconds: number;
  workers: number;
  rate: number;
  pacedPairs: number;
  highWaterBytes: number;
  lowWaterBytes: number;
  /** false: the same paced load without the flooder (the figure to compare with). */
  flooder?: boolean;
  /** The same load (flooder and paced pairs) before the measured run, not measured (ms). */
  warmupMs: number;
}

/** The webhook: answers every request after `delayMs`, counts each marked message once and the repeats. */
async function slowSink(delayMs: number): Promise<{ port: number; unique: () => number; duplicates: () => number; requests: () => number; close(): Promise<void> }> {
  const seen = new Set<string>();
  let duplicates = 0;
  let requests = 0;
  const server: Server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      requests++;
      MARK_RE.lastIndex = 0;
      const m = MARK_RE.exec(body);
      if (m !== null) {
        const k = m[1] + ':' + m[2];
        if (seen.has(k)) duplicates++;
        else seen.add(k);
      }
      const answer = () => {
        res.writeHead(204);
        res.end();
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    unique: () => seen.size,
    duplicates: () => duplicates,
    requests: () => requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

class Gen {
  proc: ChildProcess;
  #queue: Array<(m: any) => void> = [];
  constructor() {
    this.proc = fork(join(REPO, 'bench/overload-gen.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m) => this.#queue.shift()?.(m));
  }
  ready(): Promise<unknown> {
    return new Promise((resolve) => this.#queue.push(resolve));
  }
  ask<T = any>(msg: object, timeoutMs: number): Promise<T> {
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
  close(): void {
    this.proc.send({ cmd: 'exit' });
    setTimeout(() => this.proc.exitCode === null && this.proc.kill('SIGTERM'), 200).unref();
  }
}

/** Samples of the server's flow-control metrics, read from its Prometheus listener. */
function sampler(metricsPort: number) {
  const max = { outboxBytes: 0, throttledUsers: 0 };
  let last: Record<string, number> = {};
  let stop = false;
  const read = async () => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    const text = await res.text();
    const get = (name: string) => {
      let sum = 0;
      for (const line of text.split('\n')) if (line.startsWith(name + ' ') || line.startsWith(name + '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      return sum;
    };
    last = {
      outboxBytes: get('petrel_event_pusher_outbox_bytes'),
      outboxDepth: get('petrel_event_pusher_outbox_depth'),
      throttledUsers: get('petrel_event_pusher_throttled_users'),
      throttleTotal: get('petrel_event_pusher_throttle_total'),
      waitedTotal: get('petrel_event_pusher_outbox_waited_total'),
      rejected: get('petrel_event_pusher_outbox_rejected_total') + get('petrel_event_pusher_outbox_user_rejected_total'),
    };
    max.outboxBytes = Math.max(max.outboxBytes, last.outboxBytes!);
    max.throttledUsers = Math.max(max.throttledUsers, last.throttledUsers!);
    return last;
  };
  const loop = (async () => {
    while (!stop) {
      await read().catch(() => {});
      await sleep(200);
    }
  })();
  return {
    max,
    read,
    async stop() {
      stop = true;
      await loop;
      return read();
    },
  };
}

function flowToml(metricsPort: number, high: number, low: number): string {
  return `
[[listen.http]]
  port = ${metricsPort}
  ip_address = "127.0.0.1"
  [[listen.http.handlers.mongoose_prometheus_handler]]
    host = "_"
    path = "/metrics"

[instrumentation.prometheus]

[modules.mod_event_pusher]
  outbox_high_water_bytes = ${high}
  outbox_low_water_bytes = ${low}
`;
}

/** A callback module that pushes the chat messages of the given senders only. */
function onlySendersModule(dir: string, name: string, senders: string[]): string {
  writeFileSync(
    join(dir, `${name}.ts`),
    `// Generated by bench/overload.ts: pushes the messages of ${senders.join(', ')} only.
const PUSHED = new Set(${JSON.stringify(senders)});
export function shouldMakeReq(a) { return a.dir === 'in' && a.packet.attrs.type === 'chat' && PUSHED.has(a.from.local); }
export function prepareHeaders() { return [['content-type', 'text/plain; charset=utf-8']]; }
export function prepareBody(a) { return a.sender + ' ' + a.receiver + ' ' + a.message; }
`,
  );
  return name;
}

async function withFlowServer<T>(
  o: FlowPhaseOptions,
  name: string,
  sinkDelayMs: number,
  workers: number,
  high: number,
  low: number,
  callbackModule: string | undefined,
  body: (server: ServerHandle, gen: Gen, sink: Awaited<ReturnType<typeof slowSink>>, metricsPort: number) => Promise<T>,
): Promise<T> {
  const sink = await slowSink(sinkDelayMs);
  const metricsPort = await freePort();
  const port = await freePort();
  const server = await startPetrel({
    dir: o.dir, name, port, dataDir: o.dataDir,
    push: { sinkPort: sink.port, workers, callbackModule },
    extraToml: flowToml(metricsPort, high, low),
  });
  const gen = new Gen();
  await gen.ready();
  try {
    return await body(server, gen, sink, metricsPort);
  } finally {
    gen.close();
    await sleep(300);
    await server.stop();
    await sink.close();
  }
}

/**
 * A second load generator for the paced pairs: the users whose latency is
 * reported must not share an event loop with a flooder (its writes and the
 * reading of its deliveries would be measured as the server's latency).
 */
async function pacedGen(server: ServerHandle, password: string, paced: number[]): Promise<Gen> {
  const g = new Gen();
  await g.ready();
  await g.ask({ cmd: 'login', target: target(server, password), flooders: [], paced }, 120_000);
  return g;
}

const target = (server: ServerHandle, password: string) => ({ host: '127.0.0.1', port: server.port, domain: 'localhost', password, register: false });

/**
 * The phase's load for `ms` before it is measured: a fresh server compiles
 * its code in the first second or two, and what waits meanwhile would be
 * counted as the steady state's tail. The paced messages sent are pushed
 * too (counted in the phase's losses); their latencies are forgotten.
 */
async function warmUp(pg: Gen, flood: Gen | undefined, floodRate: number | null, pacedRate: number, ms: number) {
  if (ms <= 0) return { pacedSent: 0, pacedLost: 0 };
  const [w] = await Promise.all([
    pg.ask<{ pacedSent: number; pacedLost: number }>({ cmd: 'run', floodRate: 0, pacedRate, durationMs: ms, drainMs: 5000 }, ms + 60_000),
    flood?.ask({ cmd: 'run', floodRate, pacedRate: 0, durationMs: ms, drainMs: 0 }, ms + 60_000),
  ]);
  await pg.ask({ cmd: 'reset' }, 10_000);
  return w;
}

/** Waits until every flooded message that reached its recipient was pushed, and the outbox is empty (or `maxMs`). */
async function drain(gen: Gen, sink: { unique(): number }, s: ReturnType<typeof sampler>, maxMs: number) {
  const t0 = now();
  let c = await gen.ask<{ floodSent: number; floodDelivered: number; errors: number }>({ cmd: 'count' }, 10_000);
  while (now() - t0 < maxMs) {
    const m = await s.read().catch(() => undefined);
    c = await gen.ask({ cmd: 'count' }, 10_000);
    if (c.floodDelivered >= c.floodSent && m !== undefined && m.outboxDepth === 0 && sink.unique() >= c.floodDelivered) break;
    await sleep(250);
  }
  return { ...c, drainMs: Math.round(now() - t0) };
}

export interface OverloadResult {
  seconds: number;
  webhookDelayMs: number;
  webhookCapacityPerSec: number;
  offeredPerSec: number;
  acceptedPerSec: number;
  highWaterBytes: number;
  lowWaterBytes: number;
  outboxBytesMax: number;
  outboxMaxOverHighWater: number;
  throttledUsersMax: number;
  throttleTotal: number;
  /** Events that waited for room below the ceiling (the throttle mark's headroom was not enough for them). */
  eventsWaited: number;
  flood: { sent: number; heldBack: number; delivered: number; pushed: number; duplicates: number; refusedEvents: number; stanzaErrors: number; inOutboxAtEnd: number };
  eventsLost: number;
  notDrained: number;
  drainMs: number;
  otherUsersLatencyMs: Percentiles;
  otherUsersLost: number;
}

export async function overloadPhase(o: FlowPhaseOptions, x: OverloadOptions): Promise<OverloadResult> {
  const capacity = Math.round((x.workers * 1000) / x.delayMs);
  const flooders = Array.from({ length: x.flooders }, (_, i) => i);
  const pacedPair = x.flooders;
  if (o.pairs < x.flooders + 1) throw new Error(`the overload phase needs ${x.flooders + 1} pairs (--n)`);
  const module = onlySendersModule(o.dir, 'overload_callback', flooders.map((i) => `s${i}`));
  return withFlowServer(o, 'overload', x.delayMs, x.workers, x.highWaterBytes, x.lowWaterBytes, module, async (server, gen, sink, metricsPort) => {
    await gen.ask({ cmd: 'login', target: target(server, o.password), flooders, paced: [] }, 120_000);
    const pg = await pacedGen(server, o.password, [pacedPair]);
    const warm = await warmUp(pg, undefined, 0, x.pacedRate, x.warmupMs);
    const s = sampler(metricsPort);
    o.log(`overload: ${x.flooders} flooders offering ${capacity * 10} msg/s to a webhook taking ${capacity}/s, for ${x.seconds} s`);
    const [r, rp] = await Promise.all([
      gen.ask({ cmd: 'run', floodRate: capacity * 10, pacedRate: 0, durationMs: x.seconds * 1000, drainMs: 5000 }, x.seconds * 1000 + 60_000),
      pg.ask({ cmd: 'run', floodRate: 0, pacedRate: x.pacedRate, durationMs: x.seconds * 1000, drainMs: 5000 }, x.seconds * 1000 + 60_000),
    ]);
    pg.close();
    const d = await drain(gen, sink, s, 120_000);
    const m = await s.stop();
    const pushed = sink.unique();
    return {
      seconds: x.seconds,
      webhookDelayMs: x.delayMs,
      webhookCapacityPerSec: capacity,
      offeredPerSec: capacity * 10,
      acceptedPerSec: r.floodAcceptedPerSec,
      highWaterBytes: x.highWaterBytes,
      lowWaterBytes: x.lowWaterBytes,
      outboxBytesMax: s.max.outboxBytes,
      outboxMaxOverHighWater: Math.round((s.max.outboxBytes / x.highWaterBytes) * 1000) / 1000,
      throttledUsersMax: s.max.throttledUsers,
      throttleTotal: m.throttleTotal!,
      eventsWaited: m.waitedTotal!,
      flood: { sent: d.floodSent, heldBack: r.floodHeldBack, delivered: d.floodDelivered, pushed, duplicates: sink.duplicates(), refusedEvents: m.rejected!, stanzaErrors: d.errors, inOutboxAtEnd: m.outboxDepth! },
      // A message that reached its recipient without its push (and whose event is no longer in the outbox), or that was refused.
      eventsLost: Math.max(0, d.floodDelivered - pushed - m.outboxDepth!) + d.errors + m.rejected!,
      notDrained: d.floodSent - d.floodDelivered,
      drainMs: d.drainMs,
      otherUsersLatencyMs: percentiles(rp.pacedLatencies),
      otherUsersLost: rp.pacedLost + warm.pacedLost,
    };
  });
}

export interface FairnessResult {
  flooder: boolean;
  seconds: number;
  rate: number;
  flooderAcceptedPerSec: number;
  othersLatencyMs: Percentiles;
  othersLost: number;
  outboxBytesMax: number;
  throttledUsersMax: number;
  eventsLost: number;
  duplicates: number;
  drainMs: number;
}

export async function fairnessPhase(o: FlowPhaseOptions, x: FairnessOptions): Promise<FairnessResult> {
  if (o.pairs < x.pacedPairs + 1) throw new Error(`the fairness phase needs ${x.pacedPairs + 1} pairs (--n)`);
  const paced = Array.from({ length: x.pacedPairs }, (_, i) => i + 1);
  const flooder = x.flooder !== false;
  return withFlowServer(o, flooder ? 'fairness' : 'fairness-alone', 0, x.workers, x.highWaterBytes, x.lowWaterBytes, undefined, async (server, gen, sink, metricsPort) => {
    await gen.ask({ cmd: 'login', target: target(server, o.password), flooders: flooder ? [0] : [], paced: [] }, 120_000);
    const pg = await pacedGen(server, o.password, paced);
    const warm = await warmUp(pg, flooder ? gen : undefined, null, x.rate, x.warmupMs);
    const s = sampler(metricsPort);
    o.log(`fairness: ${flooder ? 'one user flooding at full speed' : 'no flooder'}, ${x.pacedPairs} pairs at ${x.rate} msg/s in all, for ${x.seconds} s`);
    const [f, r] = await Promise.all([
      gen.ask({ cmd: 'run', floodRate: null, pacedRate: 0, durationMs: x.seconds * 1000, drainMs: 5000 }, x.seconds * 1000 + 60_000),
      pg.ask({ cmd: 'run', floodRate: 0, pacedRate: x.rate, durationMs: x.seconds * 1000, drainMs: 5000 }, x.seconds * 1000 + 60_000),
    ]);
    pg.close();
    const d = await drain(gen, sink, s, 120_000);
    const m = await s.stop();
    // The paced messages are pushed too: every delivered message has its push.
    const delivered = d.floodDelivered + (r.pacedSent - r.pacedLost) + (warm.pacedSent - warm.pacedLost);
    return {
      flooder,
      seconds: x.seconds,
      rate: x.rate,
      flooderAcceptedPerSec: f.floodAcceptedPerSec,
      othersLatencyMs: percentiles(r.pacedLatencies),
      othersLost: r.pacedLost + warm.pacedLost,
      outboxBytesMax: s.max.outboxBytes,
      throttledUsersMax: s.max.throttledUsers,
      eventsLost: Math.max(0, delivered - sink.unique() - m.outboxDepth!) + d.errors + m.rejected!,
      duplicates: sink.duplicates(),
      drainMs: d.drainMs,
    };
  });
}
