// Others' traffic alone never gets a client dropped as a slow reader: over
// random interleavings of other users' stanzas (of random senders and
// sizes), the session's own output and a client that takes writes at
// random moments, a client whose own output stays within the cap is never
// dropped, others never hold more than half the cap waiting (plus one
// stanza let through onto nothing waiting), and whatever was admitted is
// either taken or handed back by takeUndelivered, never lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Output } from '../../../src/c2s/output.ts';
import type { Transport } from '../../../src/c2s/transport.ts';
import { Element } from '../../../src/xmpp/xml.ts';

/** A transport whose client takes the oldest write only when told to; the kernel holds nothing. */
class SlowTransport implements Transport {
  writes: string[] = [];
  output: Output | null = null;
  get buffered(): number {
    let n = 0;
    for (const w of this.writes) n += w.length;
    return n;
  }
  take(): void {
    if (this.writes.length === 0) return;
    this.writes.shift();
    this.output?.written();
  }
  attach(): void {}
  write(data: string): void {
    this.writes.push(data);
  }
  pause(): void {}
  resume(): void {}
  readonly secure = false;
  end(): void {}
  destroy(): void {}
  readonly remoteAddress = '127.0.0.1';
  readonly remote = '127.0.0.1:1';
}

type Op = { kind: 'foreign'; sender: number; size: number } | { kind: 'own'; size: number } | { kind: 'take' } | { kind: 'turn' };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('foreign' as const), sender: fc.integer({ min: 0, max: 4 }), size: fc.integer({ min: 1, max: 3000 }) }),
  fc.record({ kind: fc.constant('own' as const), size: fc.integer({ min: 1, max: 200 }) }),
  fc.record({ kind: fc.constant('take' as const) }),
  fc.record({ kind: fc.constant('turn' as const) }),
);

test("other users' stanzas never get a client dropped, never hold more than their share, and are never lost", () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
      const CAP = 8192;
      const t = new SlowTransport();
      let dropped = false;
      const out = new Output(t, { maxOutputBuffer: CAP, sendTimeout: 0 }, { onSlowReader: () => (dropped = true) }, false);
      t.output = out;
      const admitted = new Set<string>();
      const taken = new Set<string>();
      let n = 0;
      let ownWaiting = 0;
      const take = () => {
        const w = t.writes[0];
        if (w === undefined) return;
        for (const m of w.matchAll(/\[(m\d+)\]/g)) taken.add(m[1]!);
        t.take();
      };
      for (const o of ops) {
        if (o.kind === 'foreign') {
          if (out.admits(`u${o.sender}@localhost`, o.size)) {
            const id = `m${++n}`;
            out.foreign(new Element('message', { id }), `u${o.sender}@localhost`, `[${id}]`.padEnd(o.size, 'x'));
            admitted.add(id);
          }
        } else if (o.kind === 'own') {
          // The client's own output stays small: it is never what drops it here.
          if (ownWaiting + o.size > CAP / 4) continue;
          out.write('o'.repeat(o.size));
          ownWaiting += o.size;
        } else if (o.kind === 'take') {
          take();
          if (t.writes.length === 0) ownWaiting = 0;
        } else {
          out.flush();
        }
        assert.equal(dropped, false, 'dropped by others traffic');
        // Half the cap, plus one stanza let through onto an empty buffer.
        assert.ok(t.buffered <= CAP / 2 + 3000 + CAP / 4 + 200 * 2, `${t.buffered} waiting`);
      }
      out.flush();
      // What was admitted was either taken or is handed back, each exactly once.
      const back = out.takeUndelivered().map((m) => m.attrs.id!);
      assert.equal(new Set(back).size, back.length);
      for (const id of back) assert.ok(!taken.has(id), `${id} taken and handed back`);
      assert.deepEqual([...taken, ...back].sort(), [...admitted].sort());
    }),
    { numRuns: 300 },
  );
});
