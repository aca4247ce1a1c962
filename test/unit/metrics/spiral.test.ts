import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Spiral } from '../../../src/metrics/spiral.ts';

const T0 = 1_700_000_000_000;

test('a spiral sums what was added within the last minute and keeps the total', () => {
  const s = new Spiral();
  s.add(1, T0);
  s.add(2, T0 + 500);
  s.add(3, T0 + 30_000);
  assert.equal(s.one(T0 + 30_000), 6);
  assert.equal(s.count, 6);
});

test('counts older than sixty seconds leave the window but not the total', () => {
  const s = new Spiral();
  s.add(5, T0);
  s.add(1, T0 + 59_000);
  assert.equal(s.one(T0 + 59_999), 6);
  assert.equal(s.one(T0 + 60_000), 1);
  assert.equal(s.one(T0 + 200_000), 0);
  assert.equal(s.count, 6);
});

test('a bucket reused a minute later starts from zero', () => {
  const s = new Spiral();
  s.add(4, T0);
  s.add(1, T0 + 60_000);
  assert.equal(s.one(T0 + 60_000), 1);
  assert.equal(s.count, 5);
});
