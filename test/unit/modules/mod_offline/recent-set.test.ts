// The bounded memory of users a node stored offline messages for lately.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecentSet } from '../../../../src/modules/mod_offline.ts';

test('a key is known for its time to live, then forgotten', () => {
  const s = new RecentSet(10, 1000);
  s.add('a@x', 0);
  assert.equal(s.has('a@x', 1000), true);
  assert.equal(s.has('a@x', 1001), false);
  assert.equal(s.size, 0);
});

test('past its bound the oldest key goes first, and a key added again is young again', () => {
  const s = new RecentSet(3, 60_000);
  s.add('a', 0);
  s.add('b', 1);
  s.add('c', 2);
  s.add('a', 3);
  s.add('d', 4);
  assert.equal(s.size, 3);
  assert.equal(s.has('b', 5), false);
  for (const k of ['a', 'c', 'd']) assert.equal(s.has(k, 5), true, k);
});

test('a flood of distinct keys keeps at most the bound', () => {
  const s = new RecentSet(1000, 60_000);
  for (let i = 0; i < 100_000; i++) s.add(`u${i}@x`, i);
  assert.equal(s.size, 1000);
  assert.equal(s.has('u99999@x', 100_000), true);
  assert.equal(s.has('u0@x', 100_000), false);
});
