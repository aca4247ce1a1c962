import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMixedScript, scriptsOf } from '../../../src/xmpp/scripts.ts';

test('a Latin name with a Cyrillic a is mixed-script, the all-Latin one is not', () => {
  assert.deepEqual(scriptsOf('\u0430lice'), ['Cyrillic', 'Latin']);
  assert.equal(isMixedScript('\u0430lice'), true);
  assert.equal(isMixedScript('alice'), false);
  assert.equal(isMixedScript('\u0391laskaJazz'), true);
});

test('digits, punctuation and combining marks belong to no script', () => {
  assert.deepEqual(scriptsOf('alice.2_-+'), ['Latin']);
  assert.deepEqual(scriptsOf('jose\u0301'), ['Latin']);
  assert.deepEqual(scriptsOf('42'), []);
  assert.equal(isMixedScript('\u0438\u0432\u0430\u043D.2000'), false);
  assert.equal(isMixedScript('\u03B1\u03B8\u03B7\u03BD\u03AC'), false);
});

test('Han with kana, with Hangul or with Bopomofo counts as one writing system', () => {
  assert.equal(isMixedScript('\u3068\u3046\u304D\u3087\u3046\u6771\u4EAC\u30AB\u30BF'), false);
  assert.equal(isMixedScript('\uC11C\uC6B8\u6F22\u5B57'), false);
  assert.equal(isMixedScript('\u3105\u4E2D'), false);
  assert.equal(isMixedScript('\u30AB\uC11C'), true);
  assert.equal(isMixedScript('\u6771a'), true);
});

test('an unassigned code point counts as a script of its own', () => {
  assert.equal(isMixedScript('a\u0378'), true);
  assert.deepEqual(scriptsOf('\u0378\u0378'), ['Unknown']);
});

test('a long mixed name is examined in one pass that stops early', () => {
  const s = '\u0430a\u03B1\u05D0\u0627'.repeat(200);
  assert.equal(scriptsOf(s).length, 4);
  assert.equal(isMixedScript(s), true);
});
