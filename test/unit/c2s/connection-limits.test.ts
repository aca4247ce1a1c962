import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionLimits, refusalError } from '../../../src/c2s/connection-limits.ts';

test('connections are refused past the per-address cap and past the server-wide cap, and a released slot can be taken again', () => {
  const limits = new ConnectionLimits(3, 2);
  const a1 = limits.admit('10.0.0.1');
  const a2 = limits.admit('::ffff:10.0.0.1');
  assert.ok('key' in a1 && 'key' in a2);
  assert.deepEqual(limits.admit('10.0.0.1'), { refused: 'address_limit' });
  assert.ok('key' in limits.admit('10.0.0.2'));
  assert.deepEqual(limits.admit('10.0.0.3'), { refused: 'global_limit' });
  assert.equal(limits.open, 3);
  limits.release(a1.key);
  assert.ok('key' in limits.admit('10.0.0.1'));
  assert.equal(limits.open, 3);
});

test('addresses of one IPv6 /64 share one per-address count', () => {
  const limits = new ConnectionLimits(0, 2);
  assert.ok('key' in limits.admit('2001:db8:1:2::1'));
  assert.ok('key' in limits.admit('2001:db8:1:2:aaaa::9'));
  assert.deepEqual(limits.admit('2001:db8:1:2:ffff:ffff:ffff:ffff'), { refused: 'address_limit' });
  assert.ok('key' in limits.admit('2001:db8:1:3::1'));
});

test('a refusal is a stream error: resource-constraint server-wide, policy-violation per address', () => {
  assert.equal(refusalError('global_limit').condition, 'resource-constraint');
  assert.equal(refusalError('address_limit').condition, 'policy-violation');
});
