import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JidError, nameprep, nodeprep, resourceprep, saslprep } from '../../../src/xmpp/stringprep.ts';

test('nodeprep lower-cases ASCII without touching other characters', () => {
  assert.equal(nodeprep('Juliet.Capulet+1'), 'juliet.capulet+1');
});

test('nodeprep rejects an at-sign and a slash', () => {
  assert.throws(() => nodeprep('a@b'), JidError);
  assert.throws(() => nodeprep('a/b'), JidError);
});

test('resourceprep keeps case and spaces', () => {
  assert.equal(resourceprep('My Phone'), 'My Phone');
  assert.equal(resourceprep('\u00C4'), '\u00C4');
  assert.equal(resourceprep('A\u0308'), '\u00C4');
});

test('resourceprep applies NFKC to compatibility characters but does not fold case', () => {
  assert.equal(resourceprep('\uFF21'), 'A');
});

test('nameprep maps full-width dots to label separators', () => {
  assert.equal(nameprep('\uFF25\uFF38\uFF0E\uFF23\uFF2F\uFF2D'), 'ex.com');
});

test('a prepared string prepares to itself', () => {
  for (const s of ['stra\u00DFe', '\u00C4bc', '\u2121', '\u03B1\u03A3']) {
    const once = nodeprep(s);
    assert.equal(nodeprep(once), once);
  }
});

test('saslprep maps non-ASCII spaces to a space and removes soft hyphens (RFC 4013 §3)', () => {
  assert.equal(saslprep('I\u00ADX'), 'IX');
  assert.equal(saslprep('a\u00A0b'), 'a b');
  assert.throws(() => saslprep('\u0007'));
});
