// How the HTTP backend stores a request in the outbox's opaque payload:
//
//   0x01, flags, path, 0x00, (name, 0x00, value, 0x00) per header, 0x00, body
//
// as UTF-8; the header list ends where a name would start with 0x00 (a field
// name is never empty, and no path, name or value may hold a NUL: RFC 9110
// §5.1, §5.5). Flag "1": the sender adds `webhook-id: <the row's event id>`
// as the last header, so the part before the body is the same for every
// event of a handler whose callback returns the same headers: it is built
// once as a string (encodePrefix, cached by the backend), and each event
// costs one UTF-8 encoding of prefix + body, as storing the body alone
// would, with no JSON of headers.
//
// Rows written before payloads were opaque were migrated to the layout
//   0x00, path, 0x00, headers as JSON (webhook-id included), 0x00, body
// which the decoder also reads.
const FORMAT = 1;
const LEGACY = 0;
const FLAG_ADD_EVENT_ID = '1';
const NUL = '\0';

/** A stored request, decoded. */
export interface HttpPayload {
  path: string;
  /** As stored, without the webhook-id the sender adds (see addEventId). */
  headers: ReadonlyArray<readonly [string, string]>;
  /** Whether `webhook-id: <event id>` follows the stored headers. */
  addEventId: boolean;
  body: Uint8Array;
}

/** The part of a payload before the body; throws a TypeError on an empty header name or a NUL anywhere. */
export function encodePrefix(path: string, headers: ReadonlyArray<readonly [string, string]>, addEventId: boolean): string {
  let out = String.fromCharCode(FORMAT) + (addEventId ? FLAG_ADD_EVENT_ID : '0');
  if (path.includes(NUL)) throw new TypeError('the path holds a NUL character');
  out += path + NUL;
  for (const [k, v] of headers) {
    if (k === '' || k.includes(NUL) || v.includes(NUL)) throw new TypeError(`header ${JSON.stringify(k)} is empty or holds a NUL character`);
    out += k + NUL + v + NUL;
  }
  return out + NUL;
}

/** One event's payload: `prefix` then the body, in one buffer. */
export function encodePayload(prefix: string, body: string | Uint8Array): Uint8Array {
  // The concatenation is flattened by the encoder itself: one pass, one buffer.
  if (typeof body === 'string') return Buffer.from(prefix + body, 'utf8');
  return Buffer.concat([Buffer.from(prefix, 'utf8'), body]);
}

function decodeLegacy(b: Buffer): HttpPayload {
  const a = b.indexOf(0, 1);
  const c = a < 0 ? -1 : b.indexOf(0, a + 1);
  if (c < 0) throw new Error('unreadable stored request (legacy layout)');
  const pairs = JSON.parse(b.toString('utf8', a + 1, c)) as Array<[string, string]>;
  return { path: b.toString('utf8', 1, a), headers: pairs, addEventId: false, body: b.subarray(c + 1) };
}

interface Prefix {
  path: string;
  headers: Array<[string, string]>;
  addEventId: boolean;
  /** Where the body starts. */
  end: number;
}

function decodePrefix(b: Buffer): Prefix {
  let off = 2;
  const next = () => {
    const z = b.indexOf(0, off);
    if (z < 0) throw new Error('unreadable stored request (truncated)');
    const s = b.toString('utf8', off, z);
    off = z + 1;
    return s;
  };
  const path = next();
  const headers: Array<[string, string]> = [];
  while (off < b.byteLength && b[off] !== 0) {
    const k = next();
    headers.push([k, next()]);
  }
  if (off >= b.byteLength) throw new Error('unreadable stored request (truncated)');
  return { path, headers, addEventId: b[1] === FLAG_ADD_EVENT_ID.charCodeAt(0), end: off + 1 };
}

/**
 * A decoder that remembers the last prefix it read: the events of one handler
 * usually share it, and comparing the bytes costs less than reading the
 * strings again (the headers list is then shared; it is never changed).
 */
export function payloadDecoder(): (p: Uint8Array) => HttpPayload {
  let last: Buffer | null = null;
  let lastDecoded: Prefix | null = null;
  return (p) => {
    if (p.byteLength === 0) throw new Error('unreadable stored request (empty)');
    const b = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
    if (b[0] === LEGACY) return decodeLegacy(b);
    if (b[0] !== FORMAT) throw new Error(`unreadable stored request (format ${b[0]})`);
    if (last !== null && lastDecoded !== null && b.byteLength >= last.byteLength && b.compare(last, 0, last.byteLength, 0, last.byteLength) === 0) {
      return { path: lastDecoded.path, headers: lastDecoded.headers, addEventId: lastDecoded.addEventId, body: b.subarray(lastDecoded.end) };
    }
    const d = decodePrefix(b);
    last = Buffer.from(b.subarray(0, d.end));
    lastDecoded = d;
    return { path: d.path, headers: d.headers, addEventId: d.addEventId, body: b.subarray(d.end) };
  };
}
