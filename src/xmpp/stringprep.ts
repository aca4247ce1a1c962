// Stringprep profiles for JIDs: Nodeprep and Resourceprep (RFC 6122 Appendices
// A and B, which RFC 7622 replaced by PRECIS while keeping the same effective
// behaviour for almost every real address) and Nameprep (RFC 3491). SASLprep
// (RFC 4013) comes from @mongodb-js/saslprep.
//
// The tables are those of RFC 3454 (Unicode 3.2). Nodeprep and Nameprep map
// with B.1 and B.2, Resourceprep with B.1 only (RFC 6122 A.3 and B.3, RFC 3491
// §5). Table B.2 is used exactly as the RFC lists it (stringprep-b2.ts, data
// generated from the RFC's text), not the engine's case mapping, which follows
// a later Unicode: U+0131 DOTLESS I stays itself, U+0130 becomes "i\u0307",
// Cherokee letters and U+1E9E CAPITAL SHARP S stay as they are. Unassigned code
// points are allowed (RFC 3454 §7, "queries").
//
// Every profile has a pure-ASCII fast path: ASCII never needs B.1, NFKC or the
// bidi rule, and B.2 on ASCII is plain lower-casing, so addresses in the
// common case cost one scan and one toLowerCase.
//
// Every profile refuses, before any other work, an input far longer than a
// prepared part may be (RFC 7622 §3.1: 1023 octets), so the work a peer can
// cause per JID part is bounded whatever the stanza size.

import { domainToASCII, domainToUnicode } from 'node:url';
import { isIPv6 } from 'node:net';
import saslprepImpl from '@mongodb-js/saslprep';
import { B2_MULTI, B2_RUNS } from './stringprep-b2.ts';

/**
 * A JID (or one of its parts) that cannot be prepared. The code is the RFC 6120
 * stanza error condition it becomes at the protocol edge. Re-exported by jid.ts.
 */
export class JidError extends Error {
  readonly code = 'jid_malformed';
  constructor(message: string) {
    super(message);
    this.name = 'JidError';
  }
}

/** RFC 7622 §3.1: a prepared localpart, domainpart or resourcepart is at most 1023 octets (UTF-8). */
export const MAX_PART_OCTETS = 1023;
/**
 * The longest raw part a profile prepares, in UTF-16 code units. Every code
 * point that survives mapping leaves at least one octet in the prepared form
 * (NFKC composes code points only into characters of at least as many octets),
 * and a code point is at most two units: 1023 U+1D400 MATHEMATICAL BOLD
 * CAPITAL A are 2046 units and prepare to 1023 octets of "a". Only table B.1
 * characters could make a longer input legitimate, and nobody writes an
 * address with a thousand soft hyphens. Longer input is refused before B.1,
 * NFKC (which can expand a character 18-fold) or the bidi scan run.
 */
export const MAX_PART_INPUT = 2 * MAX_PART_OCTETS;

/** RFC 3454 table B.1: characters commonly mapped to nothing. */
function isB1(cp: number): boolean {
  return cp === 0x00ad || cp === 0x034f || cp === 0x1806 || (cp >= 0x180b && cp <= 0x180d) || (cp >= 0x200b && cp <= 0x200d) ||
    cp === 0x2060 || (cp >= 0xfe00 && cp <= 0xfe0f) || cp === 0xfeff;
}

/** RFC 3454 table B.2 (case folding for use with NFKC), code point -> mapping, built once from the generated runs. */
const B2 = new Map<number, string>();
for (let i = 0; i < B2_RUNS.length; i += 4) {
  const first = B2_RUNS[i]!;
  const last = B2_RUNS[i + 1]!;
  const step = B2_RUNS[i + 2]!;
  const delta = B2_RUNS[i + 3]!;
  for (let cp = first; cp <= last; cp += step) B2.set(cp, String.fromCodePoint(cp + delta));
}
for (let i = 0; i < B2_MULTI.length; ) {
  const n = B2_MULTI[i + 1]!;
  B2.set(B2_MULTI[i]!, String.fromCodePoint(...B2_MULTI.slice(i + 2, i + 2 + n)));
  i += 2 + n;
}

/** The mapping table B.2 gives a code point, or undefined where it has none (the code point maps to itself). */
export function caseFoldB2(cp: number): string | undefined {
  return B2.get(cp);
}

type Range = readonly [number, number];

/** C.1.2 non-ASCII space characters. */
const C12: Range[] = [[0x00a0, 0x00a0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]];
/** C.2.2 non-ASCII control characters. */
const C22: Range[] = [
  [0x0080, 0x009f], [0x06dd, 0x06dd], [0x070f, 0x070f], [0x180e, 0x180e], [0x200c, 0x200d], [0x2028, 0x2029],
  [0x2060, 0x2063], [0x206a, 0x206f], [0xfeff, 0xfeff], [0xfff9, 0xfffc], [0x1d173, 0x1d17a],
];
/** C.3 private use, C.4 non-characters, C.5 surrogates, C.6-C.9. */
const C3_9: Range[] = [
  [0xe000, 0xf8ff], [0xf0000, 0xffffd], [0x100000, 0x10fffd], // C.3
  [0xfdd0, 0xfdef], // C.4 (the xFFFE/xFFFF of every plane is tested arithmetically)
  [0xd800, 0xdfff], // C.5
  [0xfff9, 0xfffd], // C.6
  [0x2ff0, 0x2ffb], // C.7
  [0x0340, 0x0341], [0x200e, 0x200f], [0x202a, 0x202e], [0x206a, 0x206f], // C.8
  [0xe0001, 0xe0001], [0xe0020, 0xe007f], // C.9
];

/** RFC 3454 table D.1: characters with bidirectional property "R" or "AL". */
const D1: Range[] = [
  [0x05be, 0x05be], [0x05c0, 0x05c0], [0x05c3, 0x05c3], [0x05d0, 0x05ea], [0x05f0, 0x05f4], [0x061b, 0x061b],
  [0x061f, 0x061f], [0x0621, 0x063a], [0x0640, 0x064a], [0x066d, 0x066f], [0x0671, 0x06d5], [0x06dd, 0x06dd],
  [0x06e5, 0x06e6], [0x06fa, 0x06fe], [0x0700, 0x070d], [0x0710, 0x0710], [0x0712, 0x072c], [0x0780, 0x07a5],
  [0x07b1, 0x07b1], [0x200f, 0x200f], [0xfb1d, 0xfb1d], [0xfb1f, 0xfb28], [0xfb2a, 0xfb36], [0xfb38, 0xfb3c],
  [0xfb3e, 0xfb3e], [0xfb40, 0xfb41], [0xfb43, 0xfb44], [0xfb46, 0xfbb1], [0xfbd3, 0xfd3d], [0xfd50, 0xfd8f],
  [0xfd92, 0xfdc7], [0xfdf0, 0xfdfc], [0xfe70, 0xfe74], [0xfe76, 0xfefc],
];

/**
 * Table D.2 (left-to-right characters) is thousands of entries long; strong
 * left-to-right characters are, to a very close approximation, letters, spacing
 * marks and letter numbers that are not right-to-left. Letters of right-to-left
 * scripts encoded after Unicode 3.2 are in neither table and so count as neutral.
 */
const LCAT_CANDIDATE = /[\p{L}\p{Mc}\p{Nl}]/u;
const RTL_SCRIPT = /[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}\p{Script=Samaritan}\p{Script=Mandaic}\p{Script=Adlam}\p{Script=Hanifi_Rohingya}]/u;

function inRanges(cp: number, ranges: readonly Range[]): boolean {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true;
  return false;
}

function isRandAL(cp: number): boolean {
  return inRanges(cp, D1);
}

function isLCat(ch: string, cp: number): boolean {
  return !isRandAL(cp) && LCAT_CANDIDATE.test(ch) && !RTL_SCRIPT.test(ch);
}

type Part = 'localpart' | 'domainpart' | 'resourcepart';

function hex(cp: number): string {
  return 'U+' + cp.toString(16).toUpperCase().padStart(4, '0');
}

/** RFC 3454 §3 mapping: table B.1 removed, and with `caseFold` every code point B.2 lists replaced by its mapping. */
function map(s: string, caseFold: boolean): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const cp = s.codePointAt(i)!;
    const wide = cp > 0xffff;
    if (!isB1(cp)) {
      const m = caseFold ? B2.get(cp) : undefined;
      out += m !== undefined ? m : wide ? s.slice(i, i + 2) : s[i];
    }
    if (wide) i++;
  }
  return out;
}

/** True when mapping `s` again would change it. */
function mapsFurther(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const cp = s.codePointAt(i)!;
    if (isB1(cp) || B2.has(cp)) return true;
    if (cp > 0xffff) i++;
  }
  return false;
}

/** Refuses, in constant time, a raw part too long to be worth preparing. */
function checkInput(s: string, part: Part): void {
  if (s.length > MAX_PART_INPUT) {
    throw new JidError(`${part} is too long: more than ${MAX_PART_INPUT} characters, where a prepared ${part} has at most ${MAX_PART_OCTETS} octets`);
  }
}

/**
 * The non-ASCII half of a profile: map (B.1, optionally B.2), NFKC, check the
 * prohibited tables shared by all three profiles (C.1.2, C.2.2, C.3-C.9) plus
 * the profile's own ASCII check, then the bidi rule of RFC 3454 §6.
 */
function prepareUnicode(input: string, part: Part, caseFold: boolean, asciiOk: (c: number) => boolean, allowNonAsciiSpace: boolean): string {
  let s = map(input, caseFold).normalize('NFKC');
  // B.2 includes the extra foldings that make map-then-NFKC stable for every
  // Unicode 3.2 character, but the engine's NFKC is of a later Unicode and
  // decomposes some characters 3.2 had not assigned (U+1D2C MODIFIER LETTER
  // CAPITAL A -> "A"). Mapping again until nothing changes keeps the prepared
  // form a fixed point, so a prepared JID always prepares to itself.
  for (let round = 0; caseFold && mapsFurther(s); round++) {
    if (round === 3) throw new JidError(`${part} does not prepare to a stable form`);
    s = map(s, true).normalize('NFKC');
  }
  let hasRandAL = false;
  let hasL = false;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) {
      if (!asciiOk(cp)) throw new JidError(`${part} contains the prohibited character ${describeAscii(cp)}`);
      if ((cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a)) hasL = true;
      continue;
    }
    if ((!allowNonAsciiSpace && inRanges(cp, C12)) || inRanges(cp, C22) || inRanges(cp, C3_9) || (cp & 0xfffe) === 0xfffe) {
      throw new JidError(`${part} contains the prohibited character ${hex(cp)}`);
    }
    if (isRandAL(cp)) hasRandAL = true;
    else if (!hasL && isLCat(ch, cp)) hasL = true;
  }
  // RFC 3454 §6: a string with any RandALCat character contains no LCat
  // character and starts and ends with a RandALCat character.
  if (hasRandAL) {
    if (hasL) throw new JidError(`${part} mixes right-to-left and left-to-right characters`);
    const first = s.codePointAt(0)!;
    const last = lastCodePoint(s);
    if (!isRandAL(first) || !isRandAL(last)) throw new JidError(`${part} with right-to-left characters must start and end with one`);
  }
  return s;
}

function lastCodePoint(s: string): number {
  const c = s.charCodeAt(s.length - 1);
  if (c >= 0xdc00 && c <= 0xdfff && s.length > 1) return s.codePointAt(s.length - 2)!;
  return c;
}

function describeAscii(cp: number): string {
  if (cp < 0x20 || cp === 0x7f) return 'control ' + hex(cp);
  if (cp === 0x20) return 'space';
  return `'${String.fromCharCode(cp)}'`;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** RFC 6122 Appendix A.5: C.1.1 (space), C.2.1 (controls) and `"&'/:<>@` are prohibited. */
function nodeAsciiOk(c: number): boolean {
  return c > 0x20 && c !== 0x7f && c !== 0x22 && c !== 0x26 && c !== 0x27 && c !== 0x2f && c !== 0x3a && c !== 0x3c && c !== 0x3e && c !== 0x40;
}

/** RFC 6122 Appendix B.5: only C.2.1 in ASCII; spaces are allowed in resources. */
function resourceAsciiOk(c: number): boolean {
  return c >= 0x20 && c !== 0x7f;
}

/**
 * A lenient host-name check (RFC 1123 letters, digits, hyphen) that also takes
 * the underscore, which appears in real service names.
 */
function domainAsciiOk(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || (c >= 0x41 && c <= 0x5a);
}

/** Nodeprep (RFC 6122 Appendix A): B.1, B.2, NFKC, prohibitions, bidi. */
export function nodeprep(s: string): string {
  checkInput(s, 'localpart');
  if (isAscii(s)) {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (!nodeAsciiOk(c)) throw new JidError(`localpart contains the prohibited character ${describeAscii(c)}`);
    }
    return s.toLowerCase();
  }
  return prepareUnicode(s, 'localpart', true, nodeAsciiOk, false);
}

/** Resourceprep (RFC 6122 Appendix B): B.1 only (no case folding), NFKC, prohibitions, bidi. */
export function resourceprep(s: string): string {
  checkInput(s, 'resourcepart');
  if (isAscii(s)) {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (!resourceAsciiOk(c)) throw new JidError(`resourcepart contains the prohibited character ${describeAscii(c)}`);
    }
    return s;
  }
  // Appendix B.5 prohibits C.1.2 as well: non-ASCII spaces are not allowed.
  return prepareUnicode(s, 'resourcepart', false, resourceAsciiOk, false);
}

/** IDNA label separators (RFC 3490 §3.1): full stop and its ideographic and full-width forms. */
const DOTS = /[\u3002\uFF0E\uFF61]/g;

/**
 * Nameprep (RFC 3491) for a domainpart, plus the domain rules of RFC 7622 §3.2:
 * one trailing dot is removed, an IP literal ("[::1]") is accepted, labels are
 * non-empty and at most 63 octets once converted to their ASCII form.
 */
export function nameprep(input: string): string {
  checkInput(input, 'domainpart');
  let s = input;
  if (s.length > 1 && s.endsWith('.')) s = s.slice(0, -1);
  if (s.length === 0) throw new JidError('domainpart is empty');
  if (s.charCodeAt(0) === 0x5b /* [ */) {
    if (!s.endsWith(']') || !isIPv6(s.slice(1, -1))) throw new JidError('domainpart is not a valid IPv6 literal');
    return s.toLowerCase();
  }
  if (isAscii(s)) {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (!domainAsciiOk(c)) throw new JidError(`domainpart contains the prohibited character ${describeAscii(c)}`);
    }
    s = s.toLowerCase();
    checkLabels(s, s);
    // RFC 7622 §3.2.1 / RFC 6122 §2.2: the domainpart is compared in its
    // Unicode form, so A-labels ("xn--...") become U-labels.
    if (s.includes('xn--')) return aLabelsToUnicode(s);
    return s;
  }
  // Dots again after mapping: NFKC turns some code points (U+FE12) into an ideographic full stop.
  s = prepareUnicode(s.replace(DOTS, '.'), 'domainpart', true, domainAsciiOk, false).replace(DOTS, '.');
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s.length === 0) throw new JidError('domainpart is empty');
  if (isAscii(s)) {
    checkLabels(s, s);
    return s;
  }
  // The ASCII (punycode) form decides label lengths; an empty result means the
  // WHATWG/UTS #46 processing rejected the name (e.g. invalid punycode).
  const ascii = domainToASCII(s);
  if (ascii === '') throw new JidError('domainpart is not a valid internationalized domain name');
  checkLabels(s, ascii);
  return s;
}

function aLabelsToUnicode(ascii: string): string {
  const u = domainToUnicode(ascii);
  if (u === '' || domainToASCII(u) !== ascii) throw new JidError('domainpart has an invalid A-label');
  if (isAscii(u)) return u;
  // The decoded labels go through the same checks as if they had been sent in Unicode.
  return nameprep(u);
}

function checkLabels(s: string, ascii: string): void {
  if (s.startsWith('.') || s.endsWith('.') || s.includes('..')) throw new JidError('domainpart contains an empty label');
  let start = 0;
  for (;;) {
    const dot = ascii.indexOf('.', start);
    const end = dot === -1 ? ascii.length : dot;
    if (end - start > 63) throw new JidError('domainpart has a label longer than 63 octets');
    if (dot === -1) return;
    start = dot + 1;
  }
}

/** SASLprep (RFC 4013); throws on prohibited output, as the library does. */
export function saslprep(s: string): string {
  return saslprepImpl(s, { allowUnassigned: true });
}
