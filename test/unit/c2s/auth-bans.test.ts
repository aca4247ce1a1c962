import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthBans, FAILURE_WINDOW_MS, clientAddress } from '../../../src/c2s/auth-bans.ts';

function clock(start = 1_000_000) {
  const c = { now: start, fn: () => c.now };
  return c;
}

test('an address is banned at the failure that reaches the limit, and only that address', () => {
  const c = clock();
  const bans = new AuthBans(3, 60_000, c.fn);
  assert.equal(bans.recordFailure('10.0.0.1'), false);
  assert.equal(bans.recordFailure('10.0.0.1'), false);
  assert.equal(bans.bannedFor('10.0.0.1'), 0);
  assert.equal(bans.recordFailure('10.0.0.1'), true);
  assert.equal(bans.bannedFor('10.0.0.1'), 60_000);
  assert.equal(bans.bannedFor('10.0.0.2'), 0);
});

test('the ban ends after its duration and the earlier failures are forgotten with it', () => {
  const c = clock();
  const bans = new AuthBans(2, 1000, c.fn);
  bans.recordFailure('::1');
  bans.recordFailure('::1');
  c.now += 999;
  assert.equal(bans.bannedFor('::1'), 1);
  c.now += 1;
  assert.equal(bans.bannedFor('::1'), 0);
  assert.equal(bans.recordFailure('::1'), false, 'one new failure is not enough to ban again');
});

test('failures older than the window do not count', () => {
  const c = clock();
  const bans = new AuthBans(2, 1000, c.fn);
  bans.recordFailure('10.0.0.3');
  c.now += FAILURE_WINDOW_MS + 1;
  assert.equal(bans.recordFailure('10.0.0.3'), false);
  assert.equal(bans.recordFailure('10.0.0.3'), true);
});

test('a limit of 0 never bans', () => {
  const bans = new AuthBans(0, 1000);
  for (let i = 0; i < 100; i++) assert.equal(bans.recordFailure('10.0.0.4'), false);
  assert.equal(bans.bannedFor('10.0.0.4'), 0);
  assert.equal(bans.size, 0);
});

test('the number of tracked addresses stays bounded', () => {
  const c = clock();
  const bans = new AuthBans(5, 1000, c.fn);
  for (let i = 0; i < 100_050; i++) bans.recordFailure(`a${i}`);
  assert.ok(bans.size <= 100_000);
});

test('an IPv4-mapped IPv6 address counts as the IPv4 address, and an IPv6 address as its /64', () => {
  assert.equal(clientAddress('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(clientAddress('::1'), '0:0:0:0::/64');
  // One /64 is one key, however its addresses are written.
  assert.equal(clientAddress('2001:db8:0:7::1'), '2001:db8:0:7::/64');
  assert.equal(clientAddress('2001:DB8:0:7:ffff:1:2:3'), '2001:db8:0:7::/64');
  assert.equal(clientAddress('2001:db8::7:0:0:1'), '2001:db8:0:0::/64');
  assert.equal(clientAddress('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(clientAddress(undefined), '');
});
