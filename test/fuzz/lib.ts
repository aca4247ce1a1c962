// Shared pieces of the fuzz targets: run counts, the seed corpus, byte-level
// mutations of it, random chunking, and a per-input time limit.
//
// A short run is part of `npm test`. A long run:
//   FUZZ_RUNS=200000 npx node --test test/fuzz/*.test.ts
// FUZZ_SEED=<n> replays a run (fast-check prints the seed and the shrunk
// counterexample of a failure).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';

export { fc };

/** Per-input time limit: no input may take longer to handle. */
export const MAX_MS = 100;

const CORPUS_DIR = fileURLToPath(new URL('./corpus/', import.meta.url));

/** Runs of the short run, relative to each property's own base count; the whole short run takes a few seconds. */
const SHORT_RUN_FACTOR = 6;

/** fast-check parameters: `base` × SHORT_RUN_FACTOR runs unless FUZZ_RUNS (runs per property) says otherwise. */
export function params(base: number): { numRuns: number; seed?: number } {
  const env = Number(process.env.FUZZ_RUNS);
  const seed = Number(process.env.FUZZ_SEED);
  const p: { numRuns: number; seed?: number } = { numRuns: Number.isFinite(env) && env > 0 ? env : base * SHORT_RUN_FACTOR };
  if (Number.isFinite(seed) && process.env.FUZZ_SEED !== undefined) p.seed = seed;
  return p;
}

/** The files of one corpus directory (test/fuzz/corpus/<name>/). */
export function corpus(name: string): Buffer[] {
  const dir = join(CORPUS_DIR, name);
  return readdirSync(dir)
    .sort()
    .map((f) => readFileSync(join(dir, f)));
}

/** Pieces that are interesting to an XML parser, to splice into inputs. */
const XML_TOKENS = [
  '<', '>', '/>', '</', '&', '&amp;', '&#0;', '&#x110000;', '&#65;', '&lt', '&xxe;', '"', "'", '=', ':', 'xmlns=',
  'xmlns:stream=', '<!--', '-->', '<?', '?>', "<?xml version='1.1'?>", "<?xml version='1.0' encoding='latin1'?>",
  '<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>', '<!ENTITY', '<![CDATA[', ']]>', '\u0000', '\u0001',
  '\uFFFE', '\uFFFF', '<stream:stream>', '</stream:stream>', '<a>', '</a>', ' ', '\n', '\r\n', '\t', 'é', '🐦',
].map((t) => Buffer.from(t, 'utf8'));

/** Byte sequences that are not UTF-8 (lone continuation, overlong, surrogate, truncated, out of range). */
const BAD_UTF8 = [[0x80], [0xc0, 0xbc], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0xff], [0xfe]].map((b) => Buffer.from(b));

type Mutation =
  | { op: 'insert'; at: number; data: Uint8Array }
  | { op: 'delete'; at: number; len: number }
  | { op: 'duplicate'; at: number; len: number }
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; byte: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), data: fc.oneof(fc.constantFrom(...XML_TOKENS, ...BAD_UTF8), fc.uint8Array({ minLength: 1, maxLength: 8 })) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
);

function applyMutation(b: Buffer, m: Mutation): Buffer {
  const at = b.length === 0 ? 0 : m.at % (b.length + 1);
  switch (m.op) {
    case 'insert':
      return Buffer.concat([b.subarray(0, at), m.data, b.subarray(at)]);
    case 'delete':
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
    case 'duplicate':
      return Buffer.concat([b.subarray(0, at + m.len), b.subarray(at, at + m.len), b.subarray(at + m.len)]);
    case 'flip': {
      if (b.length === 0) return b;
      const c = Buffer.from(b);
      c[at % c.length]! ^= 1 << m.bit;
      return c;
    }
    case 'set': {
      if (b.length === 0) return b;
      const c = Buffer.from(b);
      c[at % c.length] = m.byte;
      return c;
    }
  }
}

/** One of `seeds` with 1 to `max` random mutations applied. */
export function mutated(seeds: readonly Buffer[], max = 6): fc.Arbitrary<Buffer> {
  return fc
    .tuple(fc.constantFrom(...seeds), fc.array(mutationArb, { minLength: 1, maxLength: max }))
    .map(([seed, ms]) => ms.reduce(applyMutation, Buffer.from(seed)));
}

/** `data` cut at random places (the same bytes, in order). */
export function chunked(data: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer[]> {
  return fc.tuple(data, fc.array(fc.nat(), { maxLength: 8 })).map(([buf, cuts]) => {
    const points = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % buf.length)))].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let last = 0;
    for (const p of points) {
      if (p > last) out.push(buf.subarray(last, p));
      last = Math.max(last, p);
    }
    out.push(buf.subarray(last));
    return out;
  });
}

/**
 * Runs `fn` and returns its time in ms. A slow first run is tried twice more
 * and the fastest counts, so a garbage-collector pause is not taken for a
 * slow input.
 */
export function timeSync(fn: () => void): number {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
    if (best < MAX_MS) break;
  }
  return best;
}

export async function timeAsync(fn: () => Promise<void>): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await fn();
    best = Math.min(best, performance.now() - t0);
    if (best < MAX_MS) break;
  }
  return best;
}
