// Fuzzing JID parsing (src/xmpp/jid.ts, RFC 7622): any string either
// parses or throws JidError (tryParseJid: null), never anything else; a
// parsed JID is stable when parsed again, its parts are prepared and within
// 1023 bytes; each input takes < 100 ms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JID, JidError, makeJid, parseJid, tryParseJid } from '../../src/xmpp/jid.ts';
import { validUtf8Prefix } from '../../src/xmpp/stream-parser.ts';
import { MAX_MS, fc, mutated, params, timeSync } from './lib.ts';

const SEEDS = [
  'juliet@example.com/balcony',
  'romeo@montague.lit',
  'localhost',
  'user@localhost/res/with/slashes@and@ats',
  'Ünïcödé@ExAmPlE.CoM/Résource',
  'a@b',
  'user@[::1]',
  'user@127.0.0.1/x',
  '\u00ADsoft@hyphen.example',
].map((s) => Buffer.from(s, 'utf8'));

/** Parses `s` and checks every promise of the API; returns the JID or null. */
function check(s: string): JID | null {
  let jid: JID | null = null;
  try {
    jid = parseJid(s);
  } catch (err) {
    assert.ok(err instanceof JidError, `parseJid threw ${String(err)} for ${JSON.stringify(s)}`);
  }
  const again = tryParseJid(s);
  assert.equal(again?.full ?? null, jid?.full ?? null, 'tryParseJid agrees with parseJid');
  if (jid === null) return null;
  for (const [part, value] of [['local', jid.local], ['domain', jid.domain], ['resource', jid.resource]] as const) {
    assert.ok(Buffer.byteLength(value, 'utf8') <= 1023, `${part} is ${Buffer.byteLength(value)} bytes`);
  }
  assert.ok(jid.domain.length > 0);
  assert.ok(!jid.local.includes('@') && !jid.local.includes('/'), 'the localpart holds no separator');
  assert.ok(!jid.domain.includes('@') && !jid.domain.includes('/'), 'the domainpart holds no separator');
  assert.equal(jid.bare, jid.local === '' ? jid.domain : `${jid.local}@${jid.domain}`);
  assert.equal(jid.full, jid.resource === '' ? jid.bare : `${jid.bare}/${jid.resource}`);
  // Preparation is idempotent: the prepared form parses to itself.
  assert.equal(parseJid(jid.full).full, jid.full, `re-parsing ${JSON.stringify(jid.full)}`);
  assert.equal(makeJid(jid.local, jid.domain, jid.resource).full, jid.full);
  assert.equal(jid.bareJid().full, jid.bare);
  return jid;
}

function property(arb: fc.Arbitrary<string>) {
  return fc.property(arb, (s) => {
    const ms = timeSync(() => void check(s));
    assert.ok(ms < MAX_MS, `${ms.toFixed(1)} ms for a ${s.length}-character input`);
  });
}

test('arbitrary Unicode strings parse or fail with JidError only', () => {
  fc.assert(property(fc.string({ maxLength: 80, unit: 'binary' })), params(1500));
});

test('strings built of separators, dots and troublesome code points parse or fail with JidError only', () => {
  const piece = fc.constantFrom('@', '/', '.', 'a', 'Z', '\u00DF', '\u0130', '\u200B', '\u00AD', '\uFB01', '\u0000', ' ', '"', '&', "'", ':', '<', '>', '\u2126', '\u0301', '[', ']', '\uD83D\uDE00', '\u3002', '\uFF0E');
  fc.assert(property(fc.array(piece, { maxLength: 40 }).map((a) => a.join(''))), params(1500));
});

test('structured local@domain/resource with random parts parse or fail with JidError only', () => {
  const part = fc.string({ maxLength: 20, unit: 'grapheme' });
  const arb = fc.tuple(fc.option(part), part, fc.option(part)).map(([l, d, r]) => `${l === null ? '' : l + '@'}${d}${r === null ? '' : '/' + r}`);
  fc.assert(property(arb), params(1000));
});

test('localparts built of characters that table B.2 and a later Unicode case differently prepare to a fixed point', () => {
  // Dotless and dotted i, capital sharp s, Cherokee in both cases, a modifier capital (Unicode 4.0) that NFKC
  // turns into a letter B.2 maps, iota subscript, final sigma, Greek with ypogegrammeni, ligatures, sign forms.
  const piece = fc.constantFrom('\u0131', '\u0130', 'I', 'i', '\u1E9E', '\u00DF', '\u13A0', '\uAB70', '\u1D2C', '\u0345', '\u03C2', '\u03A3', '\u1F88', '\uFB03', '\u2121', '\u3371', '\u0307', '\u0301', '\u00AD', '\u{1D400}', '\u2C00', 'K', '\u212A');
  fc.assert(property(fc.array(piece, { minLength: 1, maxLength: 30 }).map((a) => `${a.join('')}@example.com/${a.join('')}`)), params(1500));
});

test('one part far over the limit is refused, whichever part it is', () => {
  const arb = fc.tuple(fc.integer({ min: 2047, max: 300_000 }), fc.constantFrom(0, 1, 2), fc.constantFrom('a', '\uFDFA', '\u00AD', '\u{1F426}'))
    .map(([n, which, c]) => {
      const big = c.repeat(Math.ceil(n / c.length));
      return which === 0 ? `${big}@example.com` : which === 1 ? `user@${big}` : `user@example.com/${big}`;
    });
  fc.assert(fc.property(arb, (s) => {
    const ms = timeSync(() => assert.equal(tryParseJid(s), null));
    assert.ok(ms < MAX_MS, `${ms.toFixed(1)} ms for a ${s.length}-character input`);
  }), params(100));
});

test('mutated real JIDs parse or fail with JidError only', () => {
  fc.assert(property(mutated(SEEDS, 4).map((b) => b.toString('utf8'))), params(1500));
});

test('very long inputs are refused quickly', () => {
  const arb = fc.tuple(fc.integer({ min: 1000, max: 20_000 }), fc.constantFrom('a', 'é', '\u00AD', '🐦', '@', '/', '.')).map(([n, c]) => `${c.repeat(n)}@example.com/${c.repeat(n)}`);
  fc.assert(property(arb), params(100));
});

test('the UTF-8 check of the stream parser agrees with a strict decoder', () => {
  const strict = new TextDecoder('utf-8', { fatal: true });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const n = validUtf8Prefix(bytes);
      strict.decode(bytes.subarray(0, n));
      let whole = true;
      try {
        strict.decode(bytes);
      } catch {
        whole = false;
      }
      assert.equal(n === bytes.length, whole);
    }),
    params(3000),
  );
});

test('a domain that only NFKC turns into a full stop is refused, as its prepared form would be', () => {
  // Found by the structured target: U+FE12 maps to U+3002, an ideographic full stop.
  assert.equal(check('\uFE12'), null);
  assert.equal(check('a@\uFE12'), null);
  assert.equal(check('a@b\uFE12c')?.domain, 'b.c');
});
