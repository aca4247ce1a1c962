// Pieces shared by the benchmark processes: one clock for all of them, free
// ports, /proc readings and percentiles.
import { createServer } from 'node:net';
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/**
 * Milliseconds on CLOCK_MONOTONIC. Every process on the machine reads the
 * same clock, so a send time taken in the load generator and an arrival time
 * taken in the sink can be subtracted directly.
 */
export function now(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A loopback port nobody listens on right now. */
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

let ticks = 0;
/** Clock ticks per second of utime/stime in /proc/<pid>/stat. */
export function clockTicks(): number {
  if (ticks === 0) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** CPU time (user + system) of a process in milliseconds. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name is in parentheses and may contain spaces; fields follow the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return ((utime + stime) * 1000) / clockTicks();
}

/**
 * CPU time (user + system, ms) of each thread of a process, keyed
 * `<name>#<tid>` (/proc/<pid>/task/<tid>/stat): the main thread carries the
 * process's name, worker threads and libuv's pool their own.
 */
export function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(rest[11]) + Number(rest[12])) * 1000) / clockTicks();
      out.set(`${comm}#${tid}`, ms);
    } catch {}
  }
  return out;
}

/** Per-thread CPU between two threadCpuMs readings, the busiest first, threads under `minMs` left out. */
export function threadCpuDelta(a: Map<string, number>, b: Map<string, number>, minMs = 50): Array<{ thread: string; cpuMs: number }> {
  const rows: Array<{ thread: string; cpuMs: number }> = [];
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d >= minMs) rows.push({ thread: k, cpuMs: Math.round(d) });
  }
  return rows.sort((x, y) => y.cpuMs - x.cpuMs);
}

/** VmRSS and VmHWM of a process, in KiB. */
export function memKiB(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) : NaN;
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export function percentiles(values: number[]): Percentiles {
  const v = values.slice().sort((a, b) => a - b);
  const n = v.length;
  if (n === 0) return { n: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN };
  const at = (q: number) => v[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!;
  let sum = 0;
  for (const x of v) sum += x;
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { n, p50: r(at(0.5)), p90: r(at(0.9)), p99: r(at(0.99)), max: r(v[n - 1]!), mean: r(sum / n) };
}

/**
 * The marker that identifies a message in a chat body, in a delivered stanza
 * and in a pushed form or XML body alike: letters and digits only, so neither
 * XML escaping nor form encoding changes it.
 */
export const MARK_RE = /bx(\d+)q(\d+)x/g;
export function mark(pair: number, seq: number): string {
  return `bx${pair}q${seq}x`;
}
