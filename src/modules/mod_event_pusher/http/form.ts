// application/x-www-form-urlencoded exactly as MongooseIM's default callback
// produces it (cowlib's cow_qs:qs/1): bytes of the UTF-8 encoding outside
// A-Z a-z 0-9 "-" "." "_" become %XX with upper-case hex, and a space becomes
// "+". This differs from URLSearchParams only for "*", which cowlib encodes.
const HEX = '0123456789ABCDEF';

/** What each byte becomes: itself when it is plain, "+" for a space, else %XX. */
const ENCODED: readonly string[] = Array.from({ length: 256 }, (_, b) => {
  const plain = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x2e || b === 0x5f;
  if (plain) return String.fromCharCode(b);
  if (b === 0x20) return '+';
  return '%' + HEX[b >> 4] + HEX[b & 15];
});

/** Whether a UTF-16 code unit below 0x80 is kept as it is. */
const PLAIN: Uint8Array = Uint8Array.from({ length: 128 }, (_, b) => (ENCODED[b]!.length === 1 && b !== 0x20 ? 1 : 0));

const PLAIN_RE = /^[A-Za-z0-9._-]*$/;

/**
 * The encoding of `s`. ASCII (the usual chat body) is encoded from its code
 * units, runs of plain characters copied as slices; from the first non-ASCII
 * character on, the rest goes through its UTF-8 bytes, where a lone
 * surrogate becomes U+FFFD, as any UTF-8 encoder must.
 */
export function formEncode(s: string): string {
  if (PLAIN_RE.test(s)) return s;
  let out = '';
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (PLAIN[c] === 1) continue;
      if (run < i) out += s.slice(run, i);
      out += ENCODED[c]!;
      run = i + 1;
      continue;
    }
    if (run < i) out += s.slice(run, i);
    return out + encodeBytes(Buffer.from(s.slice(i), 'utf8'));
  }
  return run < s.length ? out + s.slice(run) : out;
}

function encodeBytes(bytes: Buffer): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += ENCODED[bytes[i]!]!;
  return out;
}

/** Pairs joined with "&", each as name=value, in the given order. */
export function formBody(pairs: ReadonlyArray<readonly [string, string]>): string {
  let out = '';
  for (let i = 0; i < pairs.length; i++) {
    const [k, v] = pairs[i]!;
    if (i > 0) out += '&';
    out += formEncode(k) + '=' + formEncode(v);
  }
  return out;
}
