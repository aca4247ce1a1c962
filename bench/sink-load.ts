// The sink's own ceiling: POSTs a form body like the default callback's to
// the sink as fast as an undici Pool with keep-alive allows, on a given
// number of connections, for a fixed time. Its own process, so that it runs
// like the server's HTTP client does and not inside the runner.
// Arguments: <url> <connections> <durationMs> [pipelining]
import { Pool } from 'undici';
import { now, cpuMs } from './common.ts';

const [url, connArg, durArg, pipeArg] = process.argv.slice(2);
const pipelining = Math.max(1, Number(pipeArg ?? 1));
const connections = Number(connArg);
const durationMs = Number(durArg);
const u = new URL(url!);
const pool = new Pool(u.origin, { connections, pipelining, keepAliveTimeout: 60_000 });
const headers = { 'content-type': 'application/x-www-form-urlencoded' };

let done = 0;
let failed = 0;
let seq = 0;
const t0 = now();
const cpu0 = cpuMs(process.pid);
const deadline = t0 + durationMs;

async function worker(): Promise<void> {
  while (now() < deadline) {
    const body = `author=s1&server=localhost&receiver=r1&message=bx0q${seq++}x+Hi%21+Are+we+still+on+for+lunch+tomorrow+at+noon%3F+Let+me+know.`;
    try {
      // undici pipelines only requests marked idempotent and non-blocking (as Petrel's pool marks them).
      const res = await pool.request({ path: u.pathname, method: 'POST', headers, body, ...(pipelining > 1 ? { idempotent: true, blocking: false } : {}) });
      await res.body.dump();
      if (res.statusCode < 300) done++;
      else failed++;
    } catch {
      failed++;
    }
  }
}

// Twice the requests a connection can carry at once keep every connection busy between responses.
await Promise.all(Array.from({ length: connections * pipelining * 2 }, () => worker()));
const elapsed = now() - t0;
const cpu = cpuMs(process.pid) - cpu0;
await pool.close();
process.stdout.write(JSON.stringify({ connections, pipelining, requests: done, failed, elapsedMs: elapsed, rps: (done * 1000) / elapsed, clientCpuMs: cpu }) + '\n');
