// Micro-benchmark of the outgoing HTTP pool: client CPU per 1,000 POSTs of a
// default-callback-sized form through createHttpPool, 50 requests in flight
// (the example config's workers), at several connection.pipelining values,
// against the raw-socket sink in its own process. What pipelining and the
// write coalescing (src/outgoing/coalesce.ts) save is the write per request.
// `node bench/micro-http.ts [--n=20000] [--pipelining=1,8,16]`
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createHttpPool } from '../src/outgoing/http.ts';
import { REPO } from './servers.ts';

const { values } = parseArgs({ args: process.argv.slice(2), options: { n: { type: 'string' }, pipelining: { type: 'string' }, 'in-flight': { type: 'string' } } });
const N = Number(values.n ?? 20_000);
const IN_FLIGHT = Number(values['in-flight'] ?? 50);
const PIPES = (values.pipelining ?? '1,8,16').split(',').map(Number);

const sink = fork(join(REPO, 'bench/sink.ts'), ['raw'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const port: number = await new Promise((r) => sink.once('message', (m: { port: number }) => r(m.port)));
const body = Buffer.from('author=s1&server=localhost&receiver=r1&message=bx0q1x+Hi%21+Are+we+still+on+for+lunch+tomorrow+at+noon%3F+Let+me+know.');
const headers: Array<[string, string]> = [['content-type', 'application/x-www-form-urlencoded'], ['webhook-id', 'msg_2x1bTzQlqYQyT8aE0dRk4g']];

const results: unknown[] = [];
for (const pipelining of PIPES) {
  const pool = createHttpPool('micro', { scope: 'global', workers: IN_FLIGHT, strategy: 'best_worker', call_timeout: 5000, connection: { host: `http://127.0.0.1:${port}`, path_prefix: '/', request_timeout: 2000, pipelining } });
  const run = (n: number) =>
    new Promise<number>((resolve) => {
      let started = 0;
      let done = 0;
      let failed = 0;
      const one = () => {
        if (started >= n) return;
        started++;
        void pool.post('/notifications', headers, body).then((o) => {
          if (o.kind !== 'ok') failed++;
          if (++done === n) resolve(failed);
          else one();
        });
      };
      for (let i = 0; i < IN_FLIGHT; i++) one();
    });
  await run(2000); // connections opened, code warm
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const failed = await run(N);
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  await pool.close();
  const r = { pipelining, posts: N, failed, postsPerSec: Math.round((N * 1000) / ms), clientCpuMsPer1000: Math.round(((c.user + c.system) / 1000 / (N / 1000)) * 10) / 10 };
  results.push(r);
  process.stdout.write(`http pool, pipelining ${String(pipelining).padEnd(3)} ${String(r.postsPerSec).padStart(8)} POST/s ${String(r.clientCpuMsPer1000).padStart(7)} client CPU-ms per 1,000${failed ? ` (${failed} failed)` : ''}\n`);
}
sink.kill();
process.stdout.write(JSON.stringify({ microHttp: results }) + '\n');
