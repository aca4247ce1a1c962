import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkLimit } from '../../../src/c2s/auth-work.ts';

test('no more pieces of work run at once than the limit, and every piece runs', async () => {
  const limit = new WorkLimit(2);
  let now = 0;
  let most = 0;
  const piece = async (i: number): Promise<number> => {
    now++;
    most = Math.max(most, now);
    await new Promise((r) => setTimeout(r, 5));
    now--;
    if (i === 3) throw new Error('piece 3 fails');
    return i;
  };
  const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => limit.run(() => piece(i))));
  assert.equal(most, 2);
  assert.deepEqual(results.map((r) => r.status), results.map((_, i) => (i === 3 ? 'rejected' : 'fulfilled')));
  assert.equal(limit.running, 0);
  assert.equal(limit.waiting, 0);
});

test('a limit of 0 runs everything at once', async () => {
  const limit = new WorkLimit(0);
  let now = 0;
  let most = 0;
  await Promise.all(Array.from({ length: 5 }, () => limit.run(async () => {
    now++;
    most = Math.max(most, now);
    await new Promise((r) => setTimeout(r, 5));
    now--;
  })));
  assert.equal(most, 5);
});
