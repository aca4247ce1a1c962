// What a wake-up costs on this machine: two threads of one process pass a
// message back and forth (postMessage), at a paced rate on a 1 ms timer and
// then as fast as the pacing allows, and the process's CPU per round trip is
// printed with the round trip's p50 / p99. A thread woken from sleep costs
// far more CPU than one that is already running, so at a low rate the CPU
// per message of anything that hands work to another thread or process (the
// server's outbox thread, a socket to a sleeping peer) is mostly wake-ups.
// Not part of `npm run bench` or `npm test`.
//
//   node bench/wakeup-cost.ts [--rates=1400,20000] [--seconds=5]
import { Worker, isMainThread, parentPort } from 'node:worker_threads';
import { parseArgs } from 'node:util';

if (!isMainThread) {
  parentPort!.on('message', (m: bigint) => parentPort!.postMessage(m));
} else {
  const { values } = parseArgs({ options: { rates: { type: 'string' }, seconds: { type: 'string' } } });
  const rates = (values.rates ?? '1400,20000').split(',').map(Number);
  const seconds = Number(values.seconds ?? 5);
  const w = new Worker(new URL(import.meta.url));
  for (const rate of rates) {
    const lat: number[] = [];
    const onReply = (t: bigint) => lat.push(Number(process.hrtime.bigint() - t) / 1e3);
    w.on('message', onReply);
    await new Promise((r) => setTimeout(r, 300));
    let sent = 0;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) * rate) / 1000);
      while (sent < due) {
        w.postMessage(process.hrtime.bigint());
        sent++;
      }
    }, 1);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    clearInterval(timer);
    await new Promise((r) => setTimeout(r, 100));
    const cpu = process.cpuUsage(c0);
    w.off('message', onReply);
    lat.sort((a, b) => a - b);
    const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]!.toFixed(0);
    console.log(`${rate}/s: ${lat.length} round trips, ${((cpu.user + cpu.system) / lat.length).toFixed(1)} CPU-µs each (both threads), p50 ${q(0.5)} µs, p99 ${q(0.99)} µs`);
  }
  await w.terminate();
}
