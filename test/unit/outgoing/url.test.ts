import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkHostUrl, fixPath, joinPath } from '../../../src/outgoing/url.ts';

const table: Array<[prefix: string, path: string, expected: string]> = [
  ['/', '', '/'],
  ['/', '/notifications', '/notifications'],
  ['/', 'notifications', '/notifications'],
  ['/webservice', '', '/webservice'],
  ['/webservice', '/notifications', '/webservice/notifications'],
  ['/webservice', 'notifications', '/webservice/notifications'],
  ['/webservice/', '', '/webservice/'],
  ['/webservice/', '/notifications', '/webservice/notifications'],
  ['/webservice/', 'notifications', '/webservice/notifications'],
  ['webservice', '', '/webservice'],
  ['webservice', '/notifications', '/webservice/notifications'],
  ['webservice', 'notifications', '/webservice/notifications'],
];

for (const [prefix, path, expected] of table) {
  test(`path_prefix ${JSON.stringify(prefix)} and path ${JSON.stringify(path)} give ${JSON.stringify(expected)}`, () => {
    assert.equal(joinPath(prefix, path), expected);
  });
}

test('only one leading slash of a handler path is dropped, as fix_path/1 does', () => {
  assert.equal(fixPath('//x'), '/x');
  assert.equal(fixPath('x/'), 'x/');
});

test('a query string in the handler path is kept', () => {
  assert.equal(joinPath('/api/', '/hook?source=xmpp'), '/api/hook?source=xmpp');
});

test('a host with scheme, name and port is accepted', () => {
  assert.equal(checkHostUrl('https://localhost:8000'), undefined);
  assert.equal(checkHostUrl('http://127.0.0.1'), undefined);
  assert.equal(checkHostUrl('http://[::1]:8080'), undefined);
});

test('a host that is not http[s]://host[:port] is refused with a reason', () => {
  assert.match(checkHostUrl('localhost:8000')!, /http\[s\]/);
  assert.match(checkHostUrl('ftp://example.com')!, /scheme "ftp"/);
  assert.match(checkHostUrl('http://example.com/api')!, /path_prefix/);
  assert.match(checkHostUrl('http://user:pw@example.com')!, /credentials/);
  assert.match(checkHostUrl('not a url')!, /not a URL/);
});
