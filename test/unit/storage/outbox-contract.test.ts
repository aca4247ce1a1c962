// The outbox's contract (src/storage/outbox/types.ts), one set of cases run
// on each store: the SQLite file and PostgreSQL. Failures are real, injected
// through the database itself: triggers that make writes throw or sleep, a
// lock held by another connection. After each one the outbox is drained and
// compared with what was appended, event by event (ledger.ts).
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HARNESSES, payloadOf, until, type ContractStore, type Harness, type StoreOptions } from './outbox-contract/stores.ts';
import { assertClean, claimSoon, drain, Ledger } from './outbox-contract/ledger.ts';

/** Far enough in the suite's clock that every row is due. */
const LATER = 1_000_000;

for (const kind of HARNESSES) {
  describe(`the ${kind.name} outbox`, { skip: kind.skip }, () => {
    let h: Harness;
    const open: ContractStore[] = [];
    const store = async (o?: StoreOptions) => {
      const s = await h.open(o);
      open.push(s);
      return s;
    };
    const closeAll = async () => {
      for (const s of open.splice(0)) await s.close().catch(() => {});
    };

    before(async () => {
      h = await kind.create();
      // The store creates its tables; the failure triggers go on them.
      await (await h.open()).close();
      await h.installFailures();
    });
    afterEach(async () => {
      await h.reset();
      await closeAll();
      await h.reset();
    });
    after(async () => {
      await closeAll();
      await h?.destroy();
    });

    // ---------------------------------------------------------- basics

    test('appends resolve with growing ids once committed, and a claim returns the payload byte for byte', async () => {
      const s = await store();
      const l = new Ledger();
      const binary = new Uint8Array([...payloadOf('bin'), 0, 1, 0xfe, 0xff, 0x5c, 0x22, 0x27, 0]);
      const a = l.append(s, { handler: 'h1', at: 1000 });
      const b = l.append(s, { handler: 'h1', at: 1001, size: 3000 });
      const idA = (await a.done) as number;
      const idB = (await b.done) as number;
      assert.equal(typeof idA, 'number');
      assert.ok(idB > idA, 'ids grow in the order of the appends');
      // Resolved means committed: another connection sees the rows.
      assert.deepEqual((await h.rows()).map((r) => [r.id, r.key, r.claimed]), [[idA, a.key, false], [idB, b.key, false]]);
      const idBin = await s.append({ handler: 'h1', key: 'bin', payload: binary, createdAt: 1002 });
      const got = await s.claim('h1', 5000, 10);
      assert.deepEqual(got.map((r) => r.id), [idA, idB, idBin]);
      assert.deepEqual(Buffer.from(got[2]!.payload), Buffer.from(binary));
      assert.deepEqual(Buffer.from(got[1]!.payload), Buffer.from(payloadOf(b.key, 3000)));
      assert.deepEqual(got.map((r) => [r.handler, r.attempts, r.createdAt]), [['h1', 0, 1000], ['h1', 0, 1001], ['h1', 0, 1002]]);
    });

    test('a claim takes due, unclaimed rows of its own handler only, oldest due first and then by id', async () => {
      const s = await store();
      const l = new Ledger();
      const ks: string[] = [];
      for (const [handler, at, claimed] of [
        ['h1', 3000, false],
        ['h1', 1000, false],
        ['h2', 500, false],
        ['h1', 9000, false],
        ['h1', 400, true],
        ['h1', 1000, false],
        ['h2', 2000, false],
      ] as const) {
        ks.push(l.append(s, { handler, at, claimed }).key);
      }
      await l.appendsSettled();
      assert.deepEqual(await s.depth(), new Map([['h1', 5], ['h2', 2]]));
      const first = await s.claim('h1', 5000, 2);
      l.claimed(first, 5000);
      assert.deepEqual(first.map((r) => r.key), [ks[1], ks[5]], 'oldest due first, then by id; the claimed one is skipped');
      const second = await s.claim('h1', 5000, 10);
      l.claimed(second, 5000);
      assert.deepEqual(second.map((r) => r.key), [ks[0]], 'a row due later than now is not taken');
      assert.deepEqual(await s.claim('h1', 5000, 10), [], 'claimed rows are not claimed again');
      const other = await s.claim('h2', 5000, 10);
      l.claimed(other, 5000);
      assert.deepEqual(other.map((r) => r.key), [ks[2], ks[6]], "each handler's rows are its own");
      assert.deepEqual(l.violations, []);
      assert.deepEqual(await s.depth(), new Map([['h1', 5], ['h2', 2]]), 'claimed rows still count in the depth');
      await drain(h, s, l, ['h1', 'h2'], LATER);
      await assertClean(h, l);
    });

    test('each settle op does what it says: delivered deletes, retry reschedules, dead moves to the dead letters, release puts back', async () => {
      const s = await store();
      const l = new Ledger();
      const [d, r, x, rel] = [0, 1, 2, 3].map(() => l.append(s, { handler: 'h1', at: 1000, claimed: true }).key) as [string, string, string, string];
      await l.appendsSettled();
      assert.deepEqual(await s.claim('h1', 5000, 10), [], 'rows appended claimed are not handed out');
      l.settle(s, d, 'delivered');
      l.settle(s, r, { retry: 7000 });
      l.settle(s, x, 'dead', 6000);
      l.settle(s, rel, 'release');
      // A claim first writes the ops given before it.
      const now = await s.claim('h1', 6000, 10);
      l.claimed(now, 6000);
      assert.deepEqual(now.map((c) => c.key), [rel]);
      const stored = await h.rows();
      assert.deepEqual(stored.map((c) => [c.key, c.claimed, c.attempts]), [[r, false, 1], [rel, true, 0]]);
      assert.equal(stored[0]!.nextAt, 7000);
      assert.equal(stored[0]!.lastError, `retry ${r}`);
      assert.deepEqual(await h.dead(), [{ handler: 'h1', key: x, attempts: 1, lastError: `dead ${x}` }]);
      assert.deepEqual(await s.claim('h1', 6999, 10), [], 'a retried row waits for its time');
      const again = await s.claim('h1', 7000, 10);
      l.claimed(again, 7000);
      assert.deepEqual(again.map((c) => [c.key, c.attempts]), [[r, 1]]);
      await drain(h, s, l, ['h1'], LATER);
      await assertClean(h, l);
    });

    test('ops on one row are applied in the order they were given', async () => {
      const s = await store();
      const l = new Ledger();
      const { key: a, done } = l.append(s, { handler: 'h1', at: 1000, claimed: true });
      const id = (await done) as number;
      s.settle({ op: 'retry', id, attempts: 1, nextAt: 2000, error: 'first' });
      s.settle({ op: 'dead', id, attempts: 2, error: 'second', at: 3000 });
      assert.deepEqual(await s.depth(), new Map());
      assert.deepEqual(await h.dead(), [{ handler: 'h1', key: a, attempts: 2, lastError: 'second' }]);
    });

    test('close writes what is pending and releases every claim; the store opened again hands the rows out', async () => {
      let s = await store();
      const l = new Ledger();
      const keys = [0, 1, 2, 3].map(() => l.append(s, { handler: 'h1', at: 1000 }).key);
      await l.appendsSettled();
      const got = await s.claim('h1', 5000, 3);
      l.claimed(got, 5000);
      l.settle(s, keys[0]!, 'delivered');
      const late = l.append(s, { handler: 'h1', at: 1001 });
      await s.close();
      l.claimsReleased();
      assert.equal(typeof (await late.done), 'number', 'an append pending at close is committed');
      assert.deepEqual((await h.rows()).map((r) => [r.key, r.claimed]), [[keys[1], false], [keys[2], false], [keys[3], false], [late.key, false]]);
      await assert.rejects(s.append({ handler: 'h1', key: 'after', payload: payloadOf('after'), createdAt: 1 }), 'appends after close are refused');
      s = await store();
      assert.equal(s.releasedAtOpen, 0, 'a clean close leaves no claim behind');
      await drain(h, s, l, ['h1'], LATER);
      await assertClean(h, l);
    });

    test('claims of an owner that died go back to the queue once it is gone, as the store tells it', async () => {
      const l = new Ledger('orphan');
      const rows = [0, 1, 2].map(() => l.key()).map((key) => ({ handler: 'h1', key, payload: payloadOf(key), createdAt: 1000, claimed: true }));
      const owner = await h.spawnOwner(rows);
      assert.equal(owner.ids.length, 3);
      assert.deepEqual((await h.rows()).map((r) => [r.key, r.claimed]), rows.map((r) => [r.key, true]));
      await owner.kill();
      const s = await store();
      await h.reclaimOrphans(s);
      const got = await s.claim('h1', 5000, 10);
      assert.deepEqual(got.map((r) => [r.id, r.key]), rows.map((r, i) => [owner.ids[i], r.key]));
      for (const r of got) s.settle({ op: 'delivered', id: r.id });
      assert.deepEqual(await s.depth(), new Map());
    });

    test('the admin side counts per handler, lists dead letters, replays them with attempts reset and purges them', async () => {
      const s = await store();
      const l = new Ledger();
      const [x, y, z] = [0, 1, 2].map(() => l.append(s, { handler: 'h1', at: 1000, claimed: true }).key) as [string, string, string];
      const w = l.append(s, { handler: 'h2', at: 1000, claimed: true }).key;
      const q = l.append(s, { handler: 'h2', at: 1000 }).key;
      await l.appendsSettled();
      l.settle(s, x, 'dead', 9000);
      l.settle(s, y, 'dead', 9001);
      l.settle(s, z, { retry: 2000 });
      await s.depth();
      const admin = await h.admin();
      try {
        assert.deepEqual(await admin.counts(), new Map([
          ['h1', { queued: 1, inFlight: 0, retrying: 1, deadLettered: 2 }],
          ['h2', { queued: 2, inFlight: 1, retrying: 0, deadLettered: 0 }],
        ]));
        const dl = await admin.deadLetters();
        assert.deepEqual(dl.map((d) => [d.eventId, d.handler, d.attempts, d.lastError, d.deadAt, d.createdAt]), [
          [x, 'h1', 1, `dead ${x}`, 9000, 1000],
          [y, 'h1', 1, `dead ${y}`, 9001, 1000],
        ]);
        assert.deepEqual(await admin.replay({ ids: [x, 'nothing'] }, 20_000), [x]);
        assert.deepEqual(await admin.replay({ ids: [] }, 20_000), []);
        // Replayed: back in the queue, due at once, attempts reset, payload unchanged.
        const back = await claimSoon(s, 'h1', 20_000, 10);
        assert.deepEqual(back.map((r) => [r.key, r.attempts, Buffer.from(r.payload).toString()]), [
          [z, 1, Buffer.from(payloadOf(z)).toString()],
          [x, 0, Buffer.from(payloadOf(x)).toString()],
        ]);
        assert.deepEqual(await admin.purge({ all: true }), [y]);
        assert.deepEqual(await admin.deadLetters(), []);
        assert.deepEqual((await admin.counts()).get('h1'), { queued: 2, inFlight: 2, retrying: 0, deadLettered: 0 });
        for (const r of back) s.settle({ op: 'delivered', id: r.id });
        s.settle({ op: 'delivered', id: l.entry(w)!.id! });
        await s.depth();
        assert.deepEqual([...(await admin.counts())].filter(([, c]) => c.queued + c.deadLettered > 0), [['h2', { queued: 1, inFlight: 0, retrying: 0, deadLettered: 0 }]]);
        assert.deepEqual((await h.rows()).map((r) => r.key), [q]);
      } finally {
        await admin.close();
      }
    });

    // ---------------------------------------------------------- injected failures

    test('a row the database refuses fails alone: the rows batched with it are committed and only its append rejects', async () => {
      const s = await store();
      const l = new Ledger();
      await h.failRowsContaining('POISON');
      const appends = Array.from({ length: 10 }, (_, i) => l.append(s, { handler: i % 2 ? 'h1' : 'h2', at: 1000 + i, mark: i === 6 ? 'POISON' : '' }));
      const results = await Promise.all(appends.map((a) => a.done));
      assert.ok(results[6] instanceof Error, 'the marked row is refused');
      assert.match((results[6] as Error).message, /injected failure/);
      results.splice(6, 1);
      assert.ok(results.every((r) => typeof r === 'number'), 'every other row of the batch is committed');
      assert.equal((await h.rows()).length, 9);
      const n = await h.injected();
      if (n !== undefined) assert.ok(n >= 1, 'the trigger did refuse a write');
      await drain(h, s, l, ['h1', 'h2'], LATER);
      await assertClean(h, l);
    });

    test('settle ops written with a batch that fails are kept and applied afterwards: no event stays claimed', async () => {
      const s = await store();
      const l = new Ledger();
      const [d, r, x, rel] = [0, 1, 2, 3].map(() => l.append(s, { handler: 'h1', at: 1000, claimed: true }).key) as [string, string, string, string];
      await l.appendsSettled();
      await h.failRowsContaining('POISON');
      // In one tick: the ops and two appends, one of which the database refuses, so the ops ride with a failing batch.
      l.settle(s, d, 'delivered');
      l.settle(s, r, { retry: 2000 });
      l.settle(s, x, 'dead', 3000);
      l.settle(s, rel, 'release');
      const bad = l.append(s, { handler: 'h1', at: 1000, mark: 'POISON' });
      const good = l.append(s, { handler: 'h1', at: 1000 });
      assert.ok((await bad.done) instanceof Error);
      assert.equal(typeof (await good.done), 'number');
      const ok = await until(async () => {
        const rows = await h.rows();
        return rows.every((row) => !row.claimed) && !rows.some((row) => row.key === d || row.key === x);
      }, 10_000);
      assert.ok(ok, `the settle ops are written after the failure: ${JSON.stringify(await h.rows())}`);
      assert.deepEqual((await h.rows()).map((row) => [row.key, row.claimed, row.attempts]), [[r, false, 1], [rel, false, 0], [good.key, false, 0]]);
      assert.deepEqual((await h.dead()).map((row) => row.key), [x]);
      // Claims after the failure see the rows as settled.
      const got = await claimSoon(s, 'h1', 5000, 10);
      l.claimed(got, 5000);
      assert.deepEqual(got.map((c) => c.key).sort(), [r, rel, good.key].sort());
      await drain(h, s, l, ['h1'], LATER);
      await assertClean(h, l);
    });

    test('while every write fails, accepted settle ops are kept, appends are committed or refused, and all is written once writes work again', async () => {
      const s = await store();
      const l = new Ledger();
      const claimed = [0, 1, 2].map(() => l.append(s, { handler: 'h1', at: 1000, claimed: true }).key);
      const queued = [0, 1].map(() => l.append(s, { handler: 'h1', at: 1000 }).key);
      await l.appendsSettled();
      await h.armWrites(true);
      l.settle(s, claimed[0]!, 'delivered');
      l.settle(s, claimed[1]!, { retry: 1500 });
      l.settle(s, claimed[2]!, 'dead', 1500);
      for (let i = 0; i < 6; i++) l.append(s, { handler: i % 2 ? 'h1' : 'h2', at: 1100 });
      // Appends end one way or the other while the store cannot write (refused after a few tries).
      await l.appendsSettled();
      const n = await h.injected();
      if (n !== undefined) assert.ok(n >= 1, 'writes did fail');
      // A claim meanwhile must not hand out a row whose settle op is still unwritten.
      const during = await s.claim('h1', LATER, 10).catch(() => []);
      l.claimed(during, LATER);
      for (const c of during) l.settle(s, c.key, 'release');
      assert.deepEqual(l.violations, []);
      await h.armWrites(false);
      const ok = await until(async () => {
        const rows = await h.rows();
        return !rows.some((row) => row.key === claimed[0] || row.key === claimed[2]) && rows.every((row) => !row.claimed);
      }, 10_000);
      assert.ok(ok, `the settle ops kept through the failure are written once writes work: ${JSON.stringify(await h.rows())}`);
      assert.deepEqual((await h.dead()).map((row) => row.key), [claimed[2]]);
      assert.deepEqual(
        (await h.rows()).filter((row) => row.key === claimed[1] || queued.includes(row.key)).map((row) => [row.key, row.attempts]),
        [[claimed[1], 1], [queued[0], 0], [queued[1], 0]],
      );
      await drain(h, s, l, ['h1', 'h2'], LATER);
      await assertClean(h, l);
    });

    test('appends and settles made while another connection holds the write lock briefly are all committed once it lets go', async () => {
      const s = await store();
      const l = new Ledger();
      const claimed = [0, 1].map(() => l.append(s, { handler: 'h1', at: 1000, claimed: true }).key);
      await l.appendsSettled();
      const lock = await h.lock();
      let released = false;
      try {
        l.settle(s, claimed[0]!, 'delivered');
        l.settle(s, claimed[1]!, { retry: 1500 });
        const appends = Array.from({ length: 8 }, (_, i) => l.append(s, { handler: 'h1', at: 1000 + i }));
        // Released once a write of the store waits for it, well within the store's wait. Where the
        // database cannot tell (SQLite's busy handler leaves no trace), held long enough for the
        // store to have tried: the batch goes at the next tick.
        if ((await lock.waited()) === undefined) await new Promise((r) => setTimeout(r, Math.min(500, h.lockWait() / 4)));
        else assert.ok(await until(async () => (await lock.waited()) === true, h.lockWait() * 0.8), 'a write of the store waits for the lock');
        await lock.release();
        released = true;
        const results = await Promise.all(appends.map((a) => a.done));
        assert.ok(results.every((r) => typeof r === 'number'), `every append made under the lock is committed: ${results.filter((r) => r instanceof Error).join('; ')}`);
      } finally {
        if (!released) await lock.release();
      }
      const ok = await until(async () => !(await h.rows()).some((r) => r.claimed || r.key === claimed[0]), 10_000);
      assert.ok(ok, 'the settle ops made under the lock are written');
      await drain(h, s, l, ['h1'], LATER);
      await assertClean(h, l);
    });

    test('a lock held longer than the store waits: appends are committed or refused, never lost, and settle ops are not forgotten', async () => {
      const o = { waitMs: 600 };
      const s = await store(o);
      const l = new Ledger();
      const claimed = [0, 1, 2].map(() => l.append(s, { handler: 'h1', at: 1000, claimed: true }).key);
      await l.appendsSettled();
      const lock = await h.lock();
      let released = false;
      try {
        l.settle(s, claimed[0]!, 'delivered');
        l.settle(s, claimed[1]!, { retry: 1500 });
        l.settle(s, claimed[2]!, 'dead', 1500);
        for (let i = 0; i < 4; i++) l.append(s, { handler: 'h1', at: 1000 + i });
        assert.ok(await until(async () => (await lock.waited()) !== false, 5000), 'a write of the store waits for the lock');
        // Held past the store's wait, so that its first write gives up.
        await new Promise((r) => setTimeout(r, h.lockWait(o) + 300));
        await lock.release();
        released = true;
      } finally {
        if (!released) await lock.release();
      }
      await l.appendsSettled();
      const ok = await until(async () => {
        const rows = await h.rows();
        return !rows.some((r) => r.claimed || r.key === claimed[0] || r.key === claimed[2]);
      }, 15_000);
      assert.ok(ok, `the settle ops given during the lock are written after it: ${JSON.stringify(await h.rows())}`);
      assert.deepEqual((await h.dead()).map((r) => r.key), [claimed[2]]);
      await drain(h, s, l, ['h1'], LATER);
      await assertClean(h, l);
    });

    test(
      'a write that outlasts the statement timeout is cancelled, and what it held is written again',
      { skip: kind.name === 'SQLite' ? 'SQLite has no statement timeout: a write outwaiting the busy timeout is the lock case above' : false },
      async () => {
        const s = await store({ waitMs: 500 });
        const l = new Ledger();
        const claimed = [0, 1].map(() => l.append(s, { handler: 'h1', at: 1000, claimed: true }).key);
        await l.appendsSettled();
        await h.slowNextWrites(1, 2000);
        l.settle(s, claimed[0]!, 'delivered');
        l.settle(s, claimed[1]!, { retry: 1500 });
        const appends = Array.from({ length: 5 }, (_, i) => l.append(s, { handler: 'h1', at: 1000 + i }));
        const results = await Promise.all(appends.map((a) => a.done));
        assert.equal(await h.injected(), 1, 'one write slept past the timeout');
        assert.ok(results.every((r) => typeof r === 'number'), `a write cancelled once does not cost an append: ${results.filter((r) => r instanceof Error).join('; ')}`);
        const ok = await until(async () => !(await h.rows()).some((r) => r.claimed || r.key === claimed[0]), 10_000);
        assert.ok(ok, 'the settle ops of the cancelled write are written again');
        await drain(h, s, l, ['h1'], LATER);
        await assertClean(h, l);
      },
    );

    // ---------------------------------------------------------- bounds

    test('a batch holds at most the bound in payload bytes: large payloads go in several transactions, each under it', async () => {
      const bound = 64 * 1024;
      const s = await store({ maxBatchBytes: bound, maxBatch: 10_000 });
      const l = new Ledger();
      const size = 10 * 1024;
      const n = 40;
      const keys: string[] = [];
      const txs = await h.transactions(keys, async () => {
        for (let i = 0; i < n; i++) keys.push(l.append(s, { handler: 'h1', at: 1000, size }).key);
        await l.appendsSettled();
      });
      assert.equal((await h.rows()).length, n, 'every row is committed');
      const least = Math.ceil((n * size) / bound);
      assert.ok(txs.length >= least, `${n} rows of ${size} bytes take at least ${least} transactions under a bound of ${bound} (took ${txs.length})`);
      for (const t of txs) {
        if (t.rows !== undefined) {
          assert.ok(t.bytes <= bound, `a transaction of ${t.rows} rows holds ${t.bytes} payload bytes, over the bound`);
        } else {
          // Pages written, b-tree pages included: above the payload, by a margin.
          assert.ok(t.bytes <= bound * 1.5 + 16 * 1024, `a transaction wrote ${t.bytes} bytes of pages for a bound of ${bound}`);
        }
      }
      await drain(h, s, l, ['h1'], LATER);
      await assertClean(h, l);
    });

    test('a batch holds at most the bound in rows', async () => {
      const s = await store({ maxBatch: 4 });
      const l = new Ledger();
      const keys: string[] = [];
      const txs = await h.transactions(keys, async () => {
        for (let i = 0; i < 18; i++) keys.push(l.append(s, { handler: 'h1', at: 1000 }).key);
        await l.appendsSettled();
      });
      assert.ok(txs.length >= 5, `18 rows in batches of 4 take at least 5 transactions (took ${txs.length})`);
      for (const t of txs) if (t.rows !== undefined) assert.ok(t.rows <= 4, `a transaction holds ${t.rows} rows`);
      await drain(h, s, l, ['h1'], LATER);
      await assertClean(h, l);
    });

    test('a row larger than the byte bound is written on its own, not refused', async () => {
      const bound = 16 * 1024;
      const s = await store({ maxBatchBytes: bound });
      const l = new Ledger();
      const keys: string[] = [];
      let big = '';
      const txs = await h.transactions(keys, async () => {
        keys.push(l.append(s, { handler: 'h1', at: 1000, size: 1000 }).key);
        keys.push(l.append(s, { handler: 'h1', at: 1000, size: 1000 }).key);
        big = l.append(s, { handler: 'h1', at: 1000, size: 5 * bound }).key;
        keys.push(big);
        keys.push(l.append(s, { handler: 'h1', at: 1000, size: 1000 }).key);
        await l.appendsSettled();
      });
      assert.deepEqual(l.keysIn('refused'), []);
      assert.deepEqual((await h.rows()).map((r) => r.key), keys);
      assert.ok(txs.length >= 2, `the large row is not batched with the others (${txs.length} transaction(s))`);
      for (const t of txs) if (t.rows !== undefined && t.bytes > bound) assert.equal(t.rows, 1, 'a batch over the bound holds one row');
      await drain(h, s, l, ['h1'], LATER);
      await assertClean(h, l);
    });
  });
}
