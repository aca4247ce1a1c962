// The sink's HTTP/1.1 request reader (RFC 9112), for the raw-socket sink: a
// measuring instrument, so every request is read in full (request line,
// header fields, a body framed by Content-Length or chunked coding) before it
// is counted, and anything it cannot frame is answered 400 and the
// connection closed. Requests that arrive together (pipelined, or several in
// one TCP segment) are all taken from one chunk, so the sink answers them
// with one write.
//
// It does not validate what it does not need to frame a request (field
// values, the target), as a real webhook receiver behind a proxy would not.

/** Header section bytes at most (request line included) before the request is refused. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Body bytes at most of one request. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface ReadRequest {
  method: string;
  target: string;
  /** The body, decoded from its framing. */
  body: Buffer;
  /** The client asked to close after this request (Connection: close, or HTTP/1.0 without keep-alive). */
  close: boolean;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
const EMPTY = Buffer.alloc(0);

/** A request the reader cannot frame: the connection is answered 400 and closed. */
export class BadRequest extends Error {}

/**
 * Reads requests from one connection's bytes. `push(chunk)` returns the
 * requests completed by it (possibly none; the rest is kept for the next).
 */
export class RequestReader {
  #buf: Buffer = EMPTY;

  /** Bytes waiting for the rest of their request. */
  get pending(): number {
    return this.#buf.byteLength;
  }

  push(chunk: Buffer): ReadRequest[] {
    let buf = this.#buf.byteLength === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: ReadRequest[] = [];
    let off = 0;
    for (;;) {
      const r = readOne(buf, off);
      if (r === null) break;
      out.push(r.req);
      off = r.end;
      if (r.req.close) {
        buf = EMPTY;
        off = 0;
        break;
      }
    }
    // Kept as a copy: the chunk's memory may be a slice of a larger pool.
    this.#buf = off >= buf.byteLength ? EMPTY : Buffer.from(buf.subarray(off));
    return out;
  }
}

function lower(s: string): string {
  return s.toLowerCase();
}

/** One request starting at `off`, or null when its bytes are not all there yet; throws BadRequest. */
function readOne(buf: Buffer, off: number): { req: ReadRequest; end: number } | null {
  // RFC 9112 §2.2: empty lines before the request line are ignored.
  while (off + 1 < buf.byteLength && buf[off] === 0x0d && buf[off + 1] === 0x0a) off += 2;
  if (off >= buf.byteLength) return null;
  const he = buf.indexOf(CRLFCRLF, off);
  if (he < 0) {
    if (buf.byteLength - off > MAX_HEADER_BYTES) throw new BadRequest('header section too large');
    return null;
  }
  if (he - off > MAX_HEADER_BYTES) throw new BadRequest('header section too large');
  const lines = buf.toString('latin1', off, he).split('\r\n');
  const rl = lines[0]!.split(' ');
  if (rl.length !== 3 || rl[0] === '' || rl[1] === '' || !/^HTTP\/1\.[01]$/.test(rl[2]!)) throw new BadRequest(`bad request line ${JSON.stringify(lines[0]!.slice(0, 80))}`);
  const http10 = rl[2] === 'HTTP/1.0';
  let length: number | null = null;
  let chunked = false;
  let connection = '';
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.indexOf(':');
    if (c <= 0) throw new BadRequest(`bad header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, c);
    if (name.includes(' ') || name.includes('\t')) throw new BadRequest('whitespace in a field name');
    const value = line.slice(c + 1).trim();
    switch (lower(name)) {
      case 'content-length': {
        if (!/^\d{1,15}$/.test(value)) throw new BadRequest(`bad content-length ${JSON.stringify(value)}`);
        const n = Number(value);
        if (length !== null && length !== n) throw new BadRequest('conflicting content-length');
        length = n;
        break;
      }
      case 'transfer-encoding':
        // Only chunked is a coding the sink can frame (RFC 9112 §6.1).
        if (lower(value) !== 'chunked') throw new BadRequest(`transfer-encoding ${JSON.stringify(value)} not supported`);
        chunked = true;
        break;
      case 'connection':
        connection = lower(value);
        break;
    }
  }
  // RFC 9112 §6.1: both is a request smuggling attempt; refuse it.
  if (chunked && length !== null) throw new BadRequest('both content-length and transfer-encoding');
  const close = connection.includes('close') || (http10 && !connection.includes('keep-alive'));
  const start = he + 4;
  const meta = { method: rl[0]!, target: rl[1]!, close };
  if (chunked) {
    const r = readChunked(buf, start);
    return r === null ? null : { req: { ...meta, body: r.body }, end: r.end };
  }
  const n = length ?? 0;
  if (n > MAX_BODY_BYTES) throw new BadRequest('body too large');
  if (buf.byteLength - start < n) return null;
  return { req: { ...meta, body: buf.subarray(start, start + n) }, end: start + n };
}

/** A chunked body (RFC 9112 §7.1) from `off`, with its trailer section; null when incomplete. */
function readChunked(buf: Buffer, off: number): { body: Buffer; end: number } | null {
  const parts: Buffer[] = [];
  let total = 0;
  for (;;) {
    const le = buf.indexOf('\r\n', off, 'latin1');
    if (le < 0) return null;
    const sizeText = buf.toString('latin1', off, le).split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new BadRequest(`bad chunk size ${JSON.stringify(sizeText.slice(0, 20))}`);
    const size = parseInt(sizeText, 16);
    off = le + 2;
    if (size === 0) {
      // Trailer fields, up to an empty line.
      for (;;) {
        const te = buf.indexOf('\r\n', off, 'latin1');
        if (te < 0) return null;
        const empty = te === off;
        off = te + 2;
        if (empty) return { body: parts.length === 1 ? parts[0]! : Buffer.concat(parts), end: off };
      }
    }
    total += size;
    if (total > MAX_BODY_BYTES) throw new BadRequest('body too large');
    if (buf.byteLength < off + size + 2) return null;
    if (buf[off + size] !== 0x0d || buf[off + size + 1] !== 0x0a) throw new BadRequest('chunk not followed by CRLF');
    parts.push(buf.subarray(off, off + size));
    off += size + 2;
  }
}
