// The JID cache must not keep the parser's input alive: an attribute value cut
// out of a chunk is, in V8, a view of the whole chunk. Measured in a child
// process with --expose-gc, so the heap holds nothing but what is measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const JID_MODULE = new URL('../../../src/xmpp/jid.ts', import.meta.url).href;

/**
 * 1,000 chunks of 100 KiB, ten JIDs cut out of each (10,000 JIDs, all cache
 * misses, all kept by the cache): the heap growth once the chunks are dropped,
 * in MiB. With `mode = "slices"` the cut strings themselves are kept instead,
 * which is what pinning every chunk costs (about 100 MiB).
 */
const CHILD = `
import { parseJid } from ${JSON.stringify(JID_MODULE)};
const mode = process.argv[1];
const heap = () => { globalThis.gc(); globalThis.gc(); return process.memoryUsage().heapUsed; };
const kept = [];
const before = heap();
for (let c = 0; c < 1000; c++) {
  const buf = Buffer.alloc(100 * 1024, 0x20);
  const cuts = [];
  for (let j = 0; j < 10; j++) {
    const jid = 'user' + c + '_' + j + '@localhost/resource' + j;
    buf.write(jid, j * 10000, 'latin1');
    cuts.push([j * 10000, j * 10000 + jid.length]);
  }
  const chunk = buf.toString('latin1');
  for (const [from, to] of cuts) {
    const s = chunk.slice(from, to);
    kept.push(mode === 'slices' ? s : parseJid(s));
  }
}
const grown = (heap() - before) / 1048576;
process.stdout.write(JSON.stringify({ grown, kept: kept.length }));
`;

function grownMiB(mode: 'parse' | 'slices'): number {
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD, mode], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { grown: number; kept: number };
  assert.equal(out.kept, 10_000);
  return out.grown;
}

test('10,000 cached JIDs cut out of 100 KiB chunks do not keep the chunks alive', () => {
  const pinned = grownMiB('slices');
  const parsed = grownMiB('parse');
  // The control shows the measurement sees pinned chunks (10,000 views of 1,000 chunks of 100 KiB).
  assert.ok(pinned > 60, `keeping the slices grew the heap by only ${pinned.toFixed(1)} MiB`);
  // 10,000 JIDs with their keys are a few MiB.
  assert.ok(parsed < 25, `10,000 parsed JIDs grew the heap by ${parsed.toFixed(1)} MiB (slices: ${pinned.toFixed(1)} MiB)`);
});
