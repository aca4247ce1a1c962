import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JidError, MAX_PART_INPUT, MAX_PART_OCTETS, caseFoldB2, nameprep, nodeprep, resourceprep, saslprep } from '../../../src/xmpp/stringprep.ts';

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

// --- Table B.2 exactly (RFC 3454 Appendix B.2) -------------------------------

/** Lines of table B.2 as the RFC prints them: every 25th line, and the cases named below. */
const B2_SAMPLE = `
0041; 0061; Case map
005A; 007A; Case map
00D8; 00F8; Case map
00DF; 0073 0073; Case map
0122; 0123; Case map
0130; 0069 0307; Case map
0154; 0155; Case map
0184; 0185; Case map
01AE; 0288; Case map
01C4; 01C6; Case map
01E2; 01E3; Case map
0210; 0211; Case map
037A; 0020 03B9; Additional folding
038E; 03CD; Case map
0390; 03B9 0308 0301; Case map
03A3; 03C3; Case map
03A8; 03C8; Case map
03C2; 03C3; Case map
03F0; 03BA; Case map
0414; 0434; Case map
042D; 044D; Case map
0494; 0495; Case map
04C7; 04C8; Case map
0502; 0503; Case map
0543; 0573; Case map
1E08; 1E09; Case map
1E3A; 1E3B; Case map
1E6C; 1E6D; Case map
1E9A; 0061 02BE; Case map
1ECE; 1ECF; Case map
1F0B; 1F03; Case map
1F3E; 1F36; Case map
1F81; 1F01 03B9; Case map
1F88; 1F00 03B9; Case map
1F9A; 1F22 03B9; Case map
1FB6; 03B1 0342; Case map
1FDB; 1F77; Case map
20A8; 0072 0073; Additional folding
2109; 00B0 0066; Additional folding
2121; 0074 0065 006C; Additional folding
2131; 0066; Additional folding
2160; 2170; Case map
24BA; 24D4; Case map
3371; 0068 0070 0061; Additional folding
3380; 0070 0061; Additional folding
33B9; 006D 0076; Additional folding
FB00; 0066 0066; Case map
FB03; 0066 0066 0069; Case map
FF31; FF51; Case map
10400; 10428; Case map
1040F; 10437; Case map
1D400; 0061; Additional folding
1D402; 0063; Additional folding
1D435; 0062; Additional folding
1D468; 0061; Additional folding
1D481; 007A; Additional folding
1D4D6; 0067; Additional folding
1D50A; 0067; Additional folding
1D543; 006C; Additional folding
1D57B; 0070; Additional folding
1D5AE; 006F; Additional folding
1D5E1; 006E; Additional folding
1D614; 006D; Additional folding
1D647; 006C; Additional folding
1D67A; 006B; Additional folding
1D6B1; 03BA; Additional folding
1D6EA; 03B9; Additional folding
1D723; 03B8; Additional folding
1D75C; 03B7; Additional folding
1D795; 03B6; Additional folding
`;

test('the B.2 table agrees with a sample of the lines of the RFC\'s table', () => {
  const lines = B2_SAMPLE.trim().split('\n');
  assert.ok(lines.length >= 50);
  for (const line of lines) {
    const [from, to] = line.split('; ') as [string, string];
    const expected = String.fromCodePoint(...to.split(' ').map((h) => parseInt(h, 16)));
    assert.equal(caseFoldB2(parseInt(from, 16)), expected, line);
  }
});

test('code points B.2 does not list map to themselves, however later Unicode cases them', () => {
  // U+0131 DOTLESS I, U+1E9E CAPITAL SHARP S (Unicode 5.1), Cherokee U+13A0 (lower case since Unicode 8),
  // Georgian U+10A0 (lower case since 4.1), U+2132 TURNED F, Glagolitic U+2C00 (4.1).
  for (const cp of [0x0131, 0x1e9e, 0x13a0, 0x13f5, 0xab70, 0x10a0, 0x2132, 0x2c00, 0x0069, 0x00e4]) {
    assert.equal(caseFoldB2(cp), undefined, cp.toString(16));
  }
});

test('nodeprep keeps a dotless i, so ı and i are different localparts', () => {
  assert.equal(nodeprep('\u0131'), '\u0131');
  assert.equal(nodeprep('\u0131'.toUpperCase()), 'i');
  assert.notEqual(nodeprep('\u0131'), nodeprep('i'));
  assert.equal(nodeprep('k\u0131z'), 'k\u0131z');
});

test('nodeprep maps a capital I with dot above to i and a combining dot above, as B.2 lists', () => {
  assert.equal(nodeprep('\u0130'), 'i\u0307');
  assert.equal(nodeprep('\u0130stanbul'), 'i\u0307stanbul');
});

test('nodeprep maps sharp s to ss but leaves the capital sharp s, which B.2 does not list', () => {
  assert.equal(nodeprep('stra\u00DFe'), 'strasse');
  assert.equal(nodeprep('\u1E9E'), '\u1E9E');
});

test('nodeprep folds a final sigma and a capital sigma to the same sigma', () => {
  assert.equal(nodeprep('\u03C2'), '\u03C3');
  assert.equal(nodeprep('\u03B1\u03C2'), nodeprep('\u0391\u03A3'));
});

test('nodeprep maps the telephone sign to tel through its additional folding', () => {
  assert.equal(nodeprep('\u2121'), 'tel');
  assert.equal(nodeprep('\u3371'), 'hpa');
  assert.equal(nodeprep('\u{1D400}'), 'a');
});

test('nodeprep leaves Cherokee letters as they are', () => {
  assert.equal(nodeprep('\u13A0\u13A1'), '\u13A0\u13A1');
  assert.equal(nodeprep('\uAB70'), '\uAB70');
});

test('resourceprep does not fold case, nameprep does', () => {
  assert.equal(resourceprep('\u0130\u00DF'), '\u0130\u00DF');
  assert.equal(nameprep('\u0130x.example'), 'i\u0307x.example');
});

test('a character unassigned in Unicode 3.2 whose NFKC form B.2 maps prepares to a stable form', () => {
  // U+1D2C MODIFIER LETTER CAPITAL A (Unicode 4.0): the engine's NFKC gives "A", which maps again.
  const once = nodeprep('\u1D2Clice');
  assert.equal(once, 'alice');
  assert.equal(nodeprep(once), once);
});

// --- bounded input ----------------------------------------------------------

test('every profile refuses an input far longer than a prepared part may be, whatever it holds', () => {
  const big = 'a'.repeat(200 * 1024);
  assert.throws(() => resourceprep(big), (e: unknown) => e instanceof JidError && /^resourcepart is too long/.test(e.message));
  assert.throws(() => nodeprep(big), (e: unknown) => e instanceof JidError && /^localpart is too long/.test(e.message));
  assert.throws(() => nameprep(big), (e: unknown) => e instanceof JidError && /^domainpart is too long/.test(e.message));
  // Characters that NFKC expands 18-fold are refused before NFKC runs.
  assert.throws(() => resourceprep('\uFDFA'.repeat(MAX_PART_INPUT + 1)), /resourcepart is too long/);
});

test('an input at the limit is prepared, and soft hyphens within it are removed', () => {
  assert.equal(MAX_PART_INPUT, 2 * MAX_PART_OCTETS);
  assert.equal(resourceprep('a' + '\u00AD'.repeat(MAX_PART_INPUT - 1)), 'a');
  assert.throws(() => resourceprep('a' + '\u00AD'.repeat(MAX_PART_INPUT)), /too long/);
  // The most code units a part can have without B.1 characters: two per code point, one octet each once prepared.
  assert.equal(nodeprep('\u{1D400}'.repeat(MAX_PART_OCTETS)), 'a'.repeat(MAX_PART_OCTETS));
});
