// Which handler table answers a request: named hosts before "_", file order,
// literal paths, and subtrees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostName, isLoopback, makeRoute, matchRoute, orderRoutes, requestPath } from '../../../src/http/routes.ts';
import type { HttpService } from '../../../src/http/types.ts';

const service = (): HttpService => ({ request: () => {} });

function routes(...tables: Array<[host: string, path: string, subtree?: boolean]>) {
  return orderRoutes(tables.map(([host, path, subtree], i) => makeRoute({ host, path }, service(), { subtree, where: `t${i}` })));
}

const at = (ordered: ReturnType<typeof routes>, host: string, path: string) => matchRoute(ordered, host, path)?.where;

test('a path matches literally, and "_" answers any Host header', () => {
  const r = routes(['_', '/metrics']);
  assert.equal(at(r, 'a.example', '/metrics'), 't0');
  assert.equal(at(r, '', '/metrics'), 't0');
  assert.equal(at(r, 'a.example', '/metrics/'), undefined);
  assert.equal(at(r, 'a.example', '/metricsx'), undefined);
  assert.equal(at(r, 'a.example', '/Metrics'), undefined);
  assert.equal(at(r, 'a.example', '/'), undefined);
});

test('a table for a named host is tried before one for "_", whatever the file order', () => {
  const r = routes(['_', '/m'], ['Metrics.Example', '/m']);
  assert.equal(at(r, 'metrics.example', '/m'), 't1');
  assert.equal(at(r, 'other.example', '/m'), 't0');
});

test('a named host only answers its own Host header, and the first matching table in file order wins', () => {
  const r = routes(['a.example', '/x'], ['a.example', '/x/[...]'], ['_', '/x/y']);
  assert.equal(at(r, 'a.example', '/x'), 't0');
  assert.equal(at(r, 'a.example', '/x/y'), 't1');
  assert.equal(at(r, 'b.example', '/x/y'), 't2');
  assert.equal(at(r, 'b.example', '/x'), undefined);
});

test('a trailing "/[...]" or a kind declaring subtree serves the path and everything below it', () => {
  const r = routes(['_', '/api/[...]'], ['_', '/admin', true], ['_', '/[...]']);
  assert.equal(at(r, '', '/api'), 't0');
  assert.equal(at(r, '', '/api/users/alice'), 't0');
  assert.equal(at(r, '', '/apiary'), 't2');
  assert.equal(at(r, '', '/admin'), 't1');
  assert.equal(at(r, '', '/admin/x'), 't1');
  assert.equal(at(r, '', '/anything'), 't2');
  assert.equal(at(r, '', '/'), 't2');
});

test('the request path is the URL before its query, and the Host header loses its port', () => {
  assert.equal(requestPath('/metrics?x=1'), '/metrics');
  assert.equal(requestPath('/metrics'), '/metrics');
  assert.equal(requestPath(undefined), '/');
  assert.equal(hostName('Metrics.Example:9090'), 'metrics.example');
  assert.equal(hostName('[::1]:9090'), '::1');
  assert.equal(hostName('[::1'), '::1');
  assert.equal(hostName(undefined), '');
});

test('only loopback addresses count as loopback', () => {
  assert.ok(isLoopback('127.0.0.1'));
  assert.ok(isLoopback('127.8.0.1'));
  assert.ok(isLoopback('::1'));
  assert.ok(isLoopback('::ffff:127.0.0.5'));
  assert.ok(!isLoopback('10.0.0.1'));
  assert.ok(!isLoopback('::ffff:192.168.1.1'));
  assert.ok(!isLoopback(undefined));
});
