// The outbox's contract as a property, on each store: random interleavings of
// appends (some of rows the database refuses), claims, settle ops, spells
// during which every write fails, clock steps and reopenings. Whatever the
// interleaving, once writes work again and the outbox is drained, closed,
// reopened and drained again, every append that resolved was delivered or
// dead-lettered exactly once, no claim ever returned a row it should not
// have, and nothing is left claimed.
//
// FUZZ_RUNS / FUZZ_SEED work as for the fuzz targets (test/fuzz/lib.ts).
import { after, before, describe, test } from 'node:test';
import { fc, params } from '../../fuzz/lib.ts';
import { HARNESSES, type ContractStore, type Harness } from './outbox-contract/stores.ts';
import { assertClean, drain, Ledger } from './outbox-contract/ledger.ts';

type Action =
  | { t: 'append'; handler: number; n: number; poison: boolean; claimed: boolean }
  | { t: 'claim'; handler: number; limit: number }
  | { t: 'settle'; pick: number; op: 'delivered' | 'release' | 'retry' | 'dead'; delay: number }
  | { t: 'writes'; fail: boolean }
  | { t: 'advance'; by: number }
  | { t: 'tick' }
  | { t: 'sync' }
  | { t: 'reopen' };

const HANDLERS = ['ha', 'hb'];

// Failing spells and refused rows are frequent: the interleavings worth
// trying are those where settle ops ride with writes that fail.
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('append' as const), handler: fc.nat(1), n: fc.integer({ min: 1, max: 4 }), poison: fc.nat(3).map((n) => n === 0), claimed: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('claim' as const), handler: fc.nat(1), limit: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('settle' as const), pick: fc.nat(), op: fc.constantFrom('delivered' as const, 'release' as const, 'retry' as const, 'dead' as const), delay: fc.nat(3) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('writes' as const), fail: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('advance' as const), by: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'tick' as const }) },
  { weight: 3, arbitrary: fc.constant({ t: 'sync' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'reopen' as const }) },
);

/** Rows marked so are refused by the database (a trigger), whenever they are written. */
const POISON = 'POISON';

for (const kind of HARNESSES) {
  describe(`the ${kind.name} outbox, under random interleavings`, { skip: kind.skip }, () => {
    let h: Harness;
    let s: ContractStore;
    let run = 0;

    before(async () => {
      h = await kind.create();
      s = await h.open();
      await h.installFailures();
    });
    after(async () => {
      await s?.close().catch(() => {});
      await h?.destroy();
    });

    test('every resolved append is delivered or dead-lettered exactly once, and nothing stays claimed after close, reopen and drain', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(action, { minLength: 8, maxLength: 30 }), async (actions) => {
          const l = new Ledger(`r${++run}k`);
          let now = 1000;
          let failing = false;
          await h.reset();
          await h.failRowsContaining(POISON);
          const reopen = async () => {
            if (failing) {
              await h.armWrites(false);
              failing = false;
            }
            await s.close();
            l.claimsReleased();
            s = await h.open();
          };
          try {
            for (const a of actions) {
              switch (a.t) {
                case 'append':
                  for (let i = 0; i < a.n; i++) l.append(s, { handler: HANDLERS[a.handler]!, at: now, claimed: a.claimed, mark: a.poison && i === 0 ? POISON : '' });
                  break;
                case 'claim': {
                  // While writes fail a claim may be refused (the ops before it cannot be written): that is allowed.
                  const rows = await s.claim(HANDLERS[a.handler]!, now, a.limit).catch(() => null);
                  if (rows !== null) l.claimed(rows, now);
                  break;
                }
                case 'settle': {
                  const held = l.keysIn('claimed').filter((k) => l.entry(k)!.id !== undefined);
                  if (held.length === 0) break;
                  const key = held[a.pick % held.length]!;
                  l.settle(s, key, a.op === 'retry' ? { retry: now + a.delay } : a.op, now);
                  break;
                }
                case 'writes':
                  if (a.fail !== failing) await h.armWrites(a.fail);
                  failing = a.fail;
                  break;
                case 'advance':
                  now += a.by;
                  break;
                case 'tick':
                  await new Promise((r) => setImmediate(r));
                  break;
                case 'sync':
                  // Waits for the ops given so far to be written (or to fail): the next actions come after that write.
                  await s.depth().catch(() => {});
                  break;
                case 'reopen':
                  await reopen();
                  break;
              }
            }
            if (failing) await h.armWrites(false);
            failing = false;
            await drain(h, s, l, HANDLERS, now + 10);
            await reopen();
            await drain(h, s, l, HANDLERS, now + 10);
            await assertClean(h, l);
          } finally {
            if (failing) await h.armWrites(false);
            await l.appendsSettled();
          }
        }),
        // No shrinking: each run opens stores and may wait for drains, so a failure is reported as found.
        { ...params(1), endOnFailure: true },
      );
    });
  });
}
