// Where the tail of send→delivery comes from at a paced rate: a time series
// instead of percentiles. Not part of `npm run bench` or `npm test`.
//
//   node bench/latency-trace.ts [--rate=1400] [--seconds=10] [--pairs=20] [--push] [--stall-ms=2]
//                               [--delivery=best_effort] [--toml='[modules.mod_event_pusher]\n  sender_thread = "main"']
//
// Starts one Petrel (pusher off, or on with --push and the raw sink of
// bench/sink.ts), logs in the pairs, sends at `rate` for 3 s unmeasured (the
// server compiles its hot path meanwhile), then for `seconds` on a 1 ms timer,
// round robin over the pairs. Prints the percentiles, then every stall: a run
// of messages slower than --stall-ms, each less than 5 ms after the last, with
// when it began (ms after the start) and its slowest message. Stalls at a
// fixed period point at a timer; stalls that follow GC lines point at the
// collector (BENCH_SERVER_NODE_FLAGS="--trace-gc" puts those in the server's
// log, under TRACE_DIR or the system's temporary directory). --delivery sets
// the handler's delivery mode; --toml appends to the server's config (TOML,
// `\n` for a new line), to compare one option's effect on the tail.
import { fork } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { registerUsers } from './register.ts';
import { startPetrel } from './servers.ts';
import { login, type Conn } from './xmpp-client.ts';
import { MARK_RE, freePort, mark, now, sleep } from './common.ts';

const { values } = parseArgs({
  options: { rate: { type: 'string' }, seconds: { type: 'string' }, pairs: { type: 'string' }, push: { type: 'boolean' }, 'stall-ms': { type: 'string' }, delivery: { type: 'string' }, toml: { type: 'string' } },
});
const rate = Number(values.rate ?? 1400);
const seconds = Number(values.seconds ?? 10);
const pairs = Number(values.pairs ?? 20);
const stallMs = Number(values['stall-ms'] ?? 2);
const delivery = values.delivery;
if (delivery !== undefined && delivery !== 'best_effort' && delivery !== 'at_least_once') throw new Error('--delivery is best_effort or at_least_once');
const extraToml = values.toml?.replaceAll('\\n', '\n');
const dir = mkdtempSync(join(process.env.TRACE_DIR ?? tmpdir(), 'petrel-trace-'));
const dataDir = join(dir, 'data');
await registerUsers({ dataDir, domain: 'localhost', pairs, idle: 0, password: 'trace-secret', iterations: 4096 });
const port = await freePort();
const sink = values.push ? fork(join(import.meta.dirname, 'sink.ts'), ['raw'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }) : null;
const sinkPort = sink === null ? 0 : await new Promise<number>((r) => sink.once('message', (m: { port: number }) => r(m.port)));
const server = await startPetrel({ dir, name: 'trace', port, dataDir, push: sink === null ? null : { sinkPort, workers: 50, delivery }, extraToml });
const common = { host: '127.0.0.1', port, domain: 'localhost', password: 'trace-secret' };
const recv: Conn[] = await Promise.all(Array.from({ length: pairs }, (_, i) => login({ ...common, user: `r${i}`, resource: 'r', presence: true })));
const send: Conn[] = await Promise.all(Array.from({ length: pairs }, (_, i) => login({ ...common, user: `s${i}`, resource: 's', presence: true })));
const total = Math.round(rate * seconds);
const sentAt = new Float64Array(total);
const gotAt = new Float64Array(total);
for (const c of recv) {
  c.onText = (t) => {
    const at = now();
    MARK_RE.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = MARK_RE.exec(t)) !== null) gotAt[Number(m[2])] = at;
  };
  c.drain();
}
for (const c of send) c.drain();

/** Sends `count` messages at `rate` on a 1 ms timer; `body(k)` is the k-th one's body. */
async function pace(count: number, body: (k: number) => string, stamp: (k: number, t: number) => void): Promise<void> {
  const t0 = now();
  let k = 0;
  while (k < count) {
    const due = Math.min(count, Math.floor(((now() - t0) * rate) / 1000) + 1);
    const t = now();
    for (; k < due; k++) {
      stamp(k, t);
      send[k % pairs]!.writeAll([`<message to='r${k % pairs}@localhost' type='chat' id='t${k}'><body>${body(k)}</body></message>`]);
    }
    await sleep(1);
  }
}

await sleep(500);
await pace(rate * 3, () => 'warm up', () => {});
await sleep(300);
const t0 = now();
await pace(total, (k) => `${mark(k % pairs, k)} hello there`, (k, t) => (sentAt[k] = t));
await sleep(1000);

const lat = Array.from(sentAt, (s, i) => ({ s: s - t0, l: gotAt[i] === 0 ? Infinity : gotAt[i]! - s }));
const sorted = lat.map((x) => x.l).sort((a, b) => a - b);
const q = (p: number) => sorted[Math.floor(p * (sorted.length - 1))]!.toFixed(3);
const lost = sorted.filter((l) => l === Infinity).length;
console.log(`p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)} ms; ${lost} not delivered`);
interface Stall { from: number; to: number; n: number; max: number }
const stalls: Stall[] = [];
let cur: Stall | null = null;
for (const x of lat) {
  if (x.l <= stallMs) continue;
  if (cur !== null && x.s - cur.to < 5) {
    cur.to = x.s;
    cur.n++;
    cur.max = Math.max(cur.max, x.l);
  } else {
    if (cur !== null) stalls.push(cur);
    cur = { from: x.s, to: x.s, n: 1, max: x.l };
  }
}
if (cur !== null) stalls.push(cur);
console.log(`${stalls.length} stalls over ${stallMs} ms`);
for (const st of stalls) console.log(`at ${st.from.toFixed(1)} ms: ${st.n} messages, slowest ${st.max.toFixed(2)} ms`);
await server.stop();
sink?.kill();
process.exit(0);
