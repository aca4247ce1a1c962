// How the HTTP backend stores a request in the outbox's opaque payload.
//
//   0x01, flags, u16 path length, path, u16 header count,
//   (u16 name length, name, u16 value length, value) per header, body
//
// (lengths big-endian, strings UTF-8). Flag 1: the sender adds
// `webhook-id: <the row's event id>` as the last header, so the part before
// the body is the same for every event of a handler whose callback returns
// the same headers: it is encoded once (encodePrefix, cached by the backend)
// and each event costs one buffer of prefix + body, with no JSON of headers.
//
// Rows written before payloads were opaque were migrated to the layout
//   0x00, path, 0x00, headers as JSON (webhook-id included), 0x00, body
// which the decoder also reads.
const FORMAT = 1;
const LEGACY = 0;
export const FLAG_ADD_EVENT_ID = 1;

/** A stored request, decoded. */
export interface HttpPayload {
  path: string;
  /** As stored, without the webhook-id the sender adds (see addEventId). */
  headers: ReadonlyArray<readonly [string, string]>;
  /** Whether `webhook-id: <event id>` follows the stored headers. */
  addEventId: boolean;
  body: Uint8Array;
}

const MAX_U16 = 0xffff;

/** The bytes before the body; throws a TypeError when a header or the path is longer than 65535 bytes. */
export function encodePrefix(path: string, headers: ReadonlyArray<readonly [string, string]>, addEventId: boolean): Uint8Array {
  const strs = [path];
  for (const [k, v] of headers) strs.push(k, v);
  let size = 4 + 2 * strs.length;
  const lens: number[] = [];
  for (const s of strs) {
    const n = Buffer.byteLength(s, 'utf8');
    if (n > MAX_U16) throw new TypeError(`a header or path of ${n} bytes cannot be stored (at most ${MAX_U16})`);
    lens.push(n);
    size += n;
  }
  const out = Buffer.alloc(size);
  out[0] = FORMAT;
  out[1] = addEventId ? FLAG_ADD_EVENT_ID : 0;
  let off = 2;
  const put = (i: number) => {
    out.writeUInt16BE(lens[i]!, off);
    off += 2;
    off += out.write(strs[i]!, off, 'utf8');
  };
  put(0);
  out.writeUInt16BE(headers.length, off);
  off += 2;
  for (let i = 1; i < strs.length; i++) put(i);
  return out;
}

/** One event's payload: `prefix` then the body, in one buffer. */
export function encodePayload(prefix: Uint8Array, body: string | Uint8Array): Uint8Array {
  const n = typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.byteLength;
  const out = Buffer.allocUnsafe(prefix.byteLength + n);
  out.set(prefix, 0);
  if (typeof body === 'string') out.write(body, prefix.byteLength, 'utf8');
  else out.set(body, prefix.byteLength);
  return out;
}

function decodeLegacy(p: Uint8Array): HttpPayload {
  const b = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  const a = b.indexOf(0, 1);
  const c = a < 0 ? -1 : b.indexOf(0, a + 1);
  if (c < 0) throw new Error('unreadable stored request (legacy layout)');
  const pairs = JSON.parse(b.toString('utf8', a + 1, c)) as Array<[string, string]>;
  return { path: b.toString('utf8', 1, a), headers: pairs, addEventId: false, body: p.subarray(c + 1) };
}

/** Reads the part before the body; returns where the body starts. */
function decodePrefix(b: Buffer): { path: string; headers: Array<[string, string]>; addEventId: boolean; end: number } {
  let off = 2;
  const str = () => {
    const n = b.readUInt16BE(off);
    const s = b.toString('utf8', off + 2, off + 2 + n);
    off += 2 + n;
    return s;
  };
  const path = str();
  const count = b.readUInt16BE(off);
  off += 2;
  const headers: Array<[string, string]> = [];
  for (let i = 0; i < count; i++) {
    const k = str();
    headers.push([k, str()]);
  }
  if (off > b.byteLength) throw new Error('unreadable stored request (truncated)');
  return { path, headers, addEventId: (b[1]! & FLAG_ADD_EVENT_ID) !== 0, end: off };
}

/**
 * A decoder that remembers the last prefix it read: the events of one handler
 * usually share it, and comparing the bytes costs less than reading the
 * strings again (the headers list is then shared, never changed).
 */
export function payloadDecoder(): (p: Uint8Array) => HttpPayload {
  let last: Buffer | null = null;
  let lastDecoded: { path: string; headers: Array<[string, string]>; addEventId: boolean; end: number } | null = null;
  return (p) => {
    if (p.byteLength === 0) throw new Error('unreadable stored request (empty)');
    if (p[0] === LEGACY) return decodeLegacy(p);
    if (p[0] !== FORMAT) throw new Error(`unreadable stored request (format ${p[0]})`);
    const b = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
    if (last !== null && lastDecoded !== null && b.byteLength >= last.byteLength && b.compare(last, 0, last.byteLength, 0, last.byteLength) === 0) {
      return { path: lastDecoded.path, headers: lastDecoded.headers, addEventId: lastDecoded.addEventId, body: p.subarray(lastDecoded.end) };
    }
    const d = decodePrefix(b);
    last = Buffer.from(b.subarray(0, d.end));
    lastDecoded = d;
    return { path: d.path, headers: d.headers, addEventId: d.addEventId, body: p.subarray(d.end) };
  };
}
