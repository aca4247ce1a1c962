import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JID, JidError, makeJid, parseJid, tryParseJid } from '../../../src/xmpp/jid.ts';

function throwsJid(s: string, pattern?: RegExp): void {
  assert.throws(() => parseJid(s), (e: unknown) => e instanceof JidError && e.code === 'jid_malformed' && (!pattern || pattern.test(e.message)));
}

test('a full JID splits into localpart, domainpart and resourcepart', () => {
  const j = parseJid('alice@example.com/phone');
  assert.equal(j.local, 'alice');
  assert.equal(j.domain, 'example.com');
  assert.equal(j.resource, 'phone');
  assert.equal(j.bare, 'alice@example.com');
  assert.equal(j.full, 'alice@example.com/phone');
  assert.equal(j.toString(), 'alice@example.com/phone');
  assert.equal(j.isBare(), false);
  assert.ok(j instanceof JID);
});

test('a domain-only JID has empty localpart and resourcepart', () => {
  const j = parseJid('example.com');
  assert.equal(j.local, '');
  assert.equal(j.resource, '');
  assert.equal(j.bare, 'example.com');
  assert.equal(j.isBare(), true);
});

test('a domain with a resource but no localpart is valid', () => {
  assert.equal(parseJid('example.com/x').full, 'example.com/x');
});

test('a JID with an upper-case domain and localpart is lower-cased but the resource keeps its case', () => {
  assert.equal(parseJid('Alice@Example.COM/Phone').full, 'alice@example.com/Phone');
});

test('the resource is everything after the first slash, including slashes and at-signs', () => {
  const j = parseJid('a@b/c/d@e');
  assert.equal(j.domain, 'b');
  assert.equal(j.resource, 'c/d@e');
});

test('an upper-case A with diaeresis and its decomposed form both prepare to the same localpart', () => {
  assert.equal(parseJid('\u00C4@x').local, '\u00E4');
  assert.equal(parseJid('A\u0308@x').local, '\u00E4');
  assert.equal(parseJid('a\u0308@x').local, '\u00E4');
  assert.ok(parseJid('\u00C4@x').equals(parseJid('a\u0308@x')));
});

test('full-width letters in localpart and domain are mapped to ASCII', () => {
  assert.equal(parseJid('\uFF35\uFF33\uFF25\uFF32@\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45.com').full, 'user@example.com');
});

test('sharp s in a localpart folds to "ss" as in table B.2', () => {
  assert.equal(parseJid('Stra\u00DFe@x').local, 'strasse');
  assert.ok(parseJid('STRASSE@x').equals(parseJid('stra\u00DFe@x')));
});

test('compatibility characters are normalised and folded (NFKC with case folding)', () => {
  assert.equal(parseJid('\u2121@x').local, 'tel');
  assert.equal(parseJid('\u2160@x').local, 'i');
});

test('a final sigma folds to the ordinary sigma', () => {
  assert.equal(parseJid('\u03B1\u03C2@x').local, parseJid('\u0391\u03A3@x').local);
});

test('characters mapped to nothing (soft hyphen, zero-width space) disappear', () => {
  assert.equal(parseJid('al\u00ADi\u200Bce@x/re\u00ADs').full, 'alice@x/res');
});

test('a localpart made only of characters mapped to nothing is empty and rejected', () => {
  throwsJid('\u00AD@x', /localpart is empty/);
});

for (const ch of ['"', '&', "'", ':', '<', '>', ' ']) {
  test(`the character ${JSON.stringify(ch)} is prohibited in a localpart`, () => throwsJid(`a${ch}b@x`, /localpart/));
}

test('prohibited characters of the localpart are allowed in a resource', () => {
  assert.equal(parseJid('a@x/"&\'<>: @').resource, '"&\'<>: @');
});

test('control characters are prohibited in every part', () => {
  throwsJid('a\u0007@x', /control/);
  throwsJid('a@x/b\u0000', /control/);
  throwsJid('a@x\u0001', /domainpart/);
  throwsJid('a\u0085@x', /U\+0085/);
});

test('private use, non-characters and lone surrogates are prohibited', () => {
  throwsJid('\uE000@x', /U\+E000/);
  throwsJid('a@x/\uFFFF', /U\+FFFF/);
  throwsJid('a\uD800@x', /U\+D800/);
  throwsJid('a@x/\uFDD0', /U\+FDD0/);
});

test('a non-ASCII space is prohibited in a localpart but NFKC turns a no-break space into a space in a resource', () => {
  throwsJid('a\u3000b@x');
  assert.equal(parseJid('a@x/a\u00A0b').resource, 'a b');
});

test('left-to-right marks are prohibited (RFC 3454 table C.8)', () => {
  throwsJid('a@x/\u200Eb', /U\+200E/);
});

test('a right-to-left localpart is accepted and mixing directions is rejected', () => {
  assert.equal(parseJid('\u05D0\u05D1@x').local, '\u05D0\u05D1');
  throwsJid('\u05D0a\u05D1@x', /mixes/);
  throwsJid('\u05D01@x', /start and end/);
});

test('empty parts are errors', () => {
  throwsJid('', /empty/);
  throwsJid('@x', /localpart is empty/);
  throwsJid('a@', /domainpart is empty/);
  throwsJid('a@x/', /resourcepart is empty/);
  throwsJid('/r', /domainpart is empty/);
  throwsJid('a@/r', /domainpart is empty/);
});

test('each part may be 1023 octets long but not 1024', () => {
  assert.equal(parseJid('a'.repeat(1023) + '@x').local.length, 1023);
  throwsJid('a'.repeat(1024) + '@x', /1023 octets/);
  assert.equal(parseJid('x/' + 'r'.repeat(1023)).resource.length, 1023);
  throwsJid('x/' + 'r'.repeat(1024), /1023 octets/);
  // 341 three-octet characters are 1023 octets, 342 are too many.
  assert.ok(parseJid('\u4E00'.repeat(341) + '@x'));
  throwsJid('\u4E00'.repeat(342) + '@x', /1023 octets/);
});

test('one trailing dot of the domain is removed', () => {
  assert.equal(parseJid('a@example.com./r').full, 'a@example.com/r');
});

test('a domain with an empty label or a label over 63 octets is rejected', () => {
  throwsJid('a@x..y', /empty label/);
  throwsJid('a@.x', /empty label/);
  throwsJid('a@' + 'l'.repeat(64) + '.com', /63/);
  assert.ok(parseJid('a@' + 'l'.repeat(63) + '.com'));
});

test('underscores, digits and hyphens are accepted in a domain, other ASCII punctuation is not', () => {
  assert.equal(parseJid('a@_xmpp-client.host-1.example').domain, '_xmpp-client.host-1.example');
  throwsJid('a@ex!ample.com', /domainpart/);
  throwsJid('a@ex ample.com', /domainpart/);
  throwsJid('a@b@c', /domainpart/);
});

test('an internationalised domain is lower-cased and kept in Unicode form', () => {
  assert.equal(parseJid('a@B\u00DCcher.DE').domain, 'b\u00FCcher.de');
  assert.equal(parseJid('a@x\u3002com').domain, 'x.com');
});

test('a domain written with A-labels equals the same domain written with U-labels', () => {
  assert.equal(parseJid('a@XN--BCHER-KVA.de').domain, 'b\u00FCcher.de');
  assert.ok(parseJid('a@xn--bcher-kva.de').equals(parseJid('a@b\u00FCcher.de')));
});

test('IPv6 literals in brackets are accepted as domains, malformed ones are not', () => {
  assert.equal(parseJid('a@[::1]/r').domain, '[::1]');
  assert.equal(parseJid('[2001:DB8::1]').domain, '[2001:db8::1]');
  throwsJid('a@[::1', /IPv6/);
  throwsJid('a@[not-an-ip]', /IPv6/);
  assert.equal(parseJid('a@127.0.0.1').domain, '127.0.0.1');
});

test('bareJid drops the resource and withResource prepares the new one', () => {
  const j = parseJid('a@x/r');
  assert.equal(j.bareJid().full, 'a@x');
  assert.equal(j.bareJid().isBare(), true);
  const b = parseJid('a@x');
  assert.equal(b.bareJid(), b);
  assert.equal(b.withResource('R\u00ADes').full, 'a@x/Res');
  assert.throws(() => b.withResource(''), JidError);
  assert.throws(() => b.withResource('a\u0000'), JidError);
});

test('equals compares prepared forms', () => {
  assert.ok(parseJid('A@X/r').equals(parseJid('a@x/r')));
  assert.ok(!parseJid('a@x/R').equals(parseJid('a@x/r')));
});

test('makeJid prepares each part and treats an empty localpart or resource as absent', () => {
  assert.equal(makeJid('Alice', 'EXAMPLE.com', 'Phone').full, 'alice@example.com/Phone');
  assert.equal(makeJid('', 'example.com').full, 'example.com');
  assert.equal(makeJid('bob', 'example.com', '').full, 'bob@example.com');
  assert.throws(() => makeJid('a@b', 'example.com'), JidError);
  assert.throws(() => makeJid('a', ''), JidError);
});

test('tryParseJid returns null instead of throwing', () => {
  assert.equal(tryParseJid('@x'), null);
  assert.equal(tryParseJid('a@x')?.bare, 'a@x');
});

test('parsing the same string twice returns an equal JID from the cache', () => {
  const a = parseJid('cache@example.com/r');
  const b = parseJid('cache@example.com/r');
  assert.equal(a, b);
});

test('a JID that fails to parse keeps failing on every attempt', () => {
  throwsJid('bad@');
  throwsJid('bad@');
});

test('a dotless i and a plain i make different JIDs, and a capital I is the plain one', () => {
  const dotless = parseJid('\u0131@localhost');
  const plain = parseJid('i@localhost');
  assert.equal(dotless.local, '\u0131');
  assert.equal(dotless.equals(plain), false);
  assert.ok(parseJid('I@localhost').equals(plain));
  assert.equal(makeJid('\u0131', 'localhost').bare, '\u0131@localhost');
});

test('a 200 KiB resource is refused with a JidError naming the resourcepart, by every way in', () => {
  const huge = 'r'.repeat(200 * 1024);
  const tooLong = (e: unknown) => e instanceof JidError && e.code === 'jid_malformed' && /resourcepart is too long/.test(e.message);
  assert.throws(() => makeJid('alice', 'localhost', huge), tooLong);
  assert.throws(() => parseJid('alice@localhost').withResource(huge), tooLong);
  throwsJid('alice@localhost/' + huge, /too long/);
  // Just above what one profile takes, the whole JID is still short enough to reach the profile.
  throwsJid('alice@localhost/' + '\u00AD'.repeat(2047), /resourcepart is too long/);
  assert.equal(tryParseJid('alice@localhost/' + huge), null);
});

test('a JID longer than the cache takes is parsed every time, to the same value', () => {
  const long = 'alice@localhost/' + 'r'.repeat(600);
  assert.equal(parseJid(long).resource.length, 600);
  assert.ok(parseJid(long).equals(parseJid(long)));
  // A short one is cached: the same instance comes back.
  assert.equal(parseJid('cached@localhost/r'), parseJid('cached@localhost/r'));
});
