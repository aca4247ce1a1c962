// application/x-www-form-urlencoded exactly as MongooseIM's default callback
// produces it (cowlib's cow_qs:qs/1): bytes of the UTF-8 encoding outside
// A-Z a-z 0-9 "-" "." "_" become %XX with upper-case hex, and a space becomes
// "+". This differs from URLSearchParams only for "*", which cowlib encodes.
const HEX = '0123456789ABCDEF';

function isPlain(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ||
    b === 0x2d || b === 0x2e || b === 0x5f
  );
}

const PLAIN_RE = /^[A-Za-z0-9._-]*$/;

export function formEncode(s: string): string {
  if (PLAIN_RE.test(s)) return s;
  // Lone surrogates become U+FFFD, as any UTF-8 encoder must.
  const bytes = Buffer.from(s, 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (isPlain(b)) out += String.fromCharCode(b);
    else if (b === 0x20) out += '+';
    else out += '%' + HEX[b >> 4] + HEX[b & 15];
  }
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
