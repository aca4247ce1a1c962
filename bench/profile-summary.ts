// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per
// function and per file, from the sample list and its time deltas.
// Also usable on its own: node bench/profile-summary.ts FILE [TOP]
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  function: string;
  location: string;
  selfMs: number;
  selfPct: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Share of samples that were not idle, program or garbage collector. */
  busyPct: number;
  entries: ProfileEntry[];
  byFile: Array<{ file: string; selfMs: number; selfPct: number }>;
}

const ROOT = relative(process.cwd(), fileURLToPath(new URL('..', import.meta.url))) || '.';

function shortUrl(url: string): string {
  if (url === '') return '(native)';
  let p = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = p.lastIndexOf('node_modules/');
  if (nm !== -1) return p.slice(nm + 'node_modules/'.length);
  const rel = relative(ROOT === '.' ? process.cwd() : ROOT, p);
  return rel.startsWith('..') ? p : rel;
}

export function summariseProfile(file: string, top = 25): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const n of prof.nodes) byId.set(n.id, n);
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time since the previous sample; it is charged to sample i.
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, prof.timeDeltas[i] ?? 0));
  }
  let total = 0;
  let idle = 0;
  const fn = new Map<string, { function: string; location: string; us: number }>();
  const files = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const cf = n.callFrame;
    total += us;
    const name = cf.functionName || '(anonymous)';
    if (name === '(idle)' || name === '(program)') idle += us;
    const loc = cf.url === '' ? '' : `${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
    const key = name + ' ' + loc;
    const e = fn.get(key) ?? { function: name, location: loc, us: 0 };
    e.us += us;
    fn.set(key, e);
    const f = cf.url === '' ? name : shortUrl(cf.url);
    files.set(f, (files.get(f) ?? 0) + us);
  }
  const pct = (us: number) => Math.round((us / total) * 1000) / 10;
  const ms = (us: number) => Math.round(us / 100) / 10;
  const entries = [...fn.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ function: e.function, location: e.location, selfMs: ms(e.us), selfPct: pct(e.us) }));
  const byFile = [...files.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([f, us]) => ({ file: f, selfMs: ms(us), selfPct: pct(us) }));
  return { file, totalMs: ms(total), busyPct: pct(total - idle), entries, byFile };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, n] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: node bench/profile-summary.ts FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  const s = summariseProfile(file, Number(n ?? 30));
  process.stdout.write(`${s.file}: ${s.totalMs} ms sampled, ${s.busyPct}% not idle\n\nself%   self ms  function  location\n`);
  for (const e of s.entries) process.stdout.write(`${e.selfPct.toFixed(1).padStart(5)}  ${e.selfMs.toFixed(1).padStart(8)}  ${e.function}  ${e.location}\n`);
  process.stdout.write('\nby file:\n');
  for (const f of s.byFile) process.stdout.write(`${f.selfPct.toFixed(1).padStart(5)}  ${f.selfMs.toFixed(1).padStart(8)}  ${f.file}\n`);
}
