// XMPP stream parser: bytes in, a stream header, stanzas and a stream end out.
// Built on saxes (a conforming, non-validating XML parser). XMPP restricts
// XML (RFC 6120 §11.1): no DTD, comments, processing instructions or
// entity definitions; each is reported as `restricted-xml`. Anything not
// well-formed is reported as `not-well-formed`. The tree is built without
// recursion, so deep nesting cannot overflow the stack; size and depth limits
// end a stanza as soon as they are passed, not when it closes.
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import { Element } from './xml.ts';

export interface StreamHeader {
  name: string;
  attrs: Record<string, string>;
}

export interface StreamParserEvents {
  onHeader(header: StreamHeader): void;
  onStanza(el: Element): void;
  onEnd(): void;
  /** `condition` is an RFC 6120 §4.9.3 stream error condition. */
  onError(condition: 'not-well-formed' | 'restricted-xml' | 'policy-violation' | 'unsupported-encoding', text: string): void;
}

export interface StreamParserLimits {
  /**
   * Size of one stanza (0 = no limit), counted in UTF-16 code units of the
   * decoded text, which is its byte count when the stanza is ASCII. The
   * text before the first stanza (the stream header) counts as a stanza,
   * and so does whitespace between stanzas.
   */
  maxStanzaSize: number;
  /** Element nesting below the stream root. */
  maxDepth: number;
  /** Elements in one stanza, the stanza itself included (0 or absent = no limit). */
  maxElements?: number;
}

export class StreamParser {
  #sax: SaxesParser<{ xmlns: false; position: false }>;
  // Not in streaming mode: a sequence cut by a chunk boundary is carried over
  // by hand (#carry), so that on invalid input the valid text before it can
  // still be parsed. A BOM is left to saxes, which skips one at the start.
  #decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  /** The start of a UTF-8 sequence the previous chunk ended in the middle of. */
  #carry: Buffer | null = null;
  #events: StreamParserEvents;
  limits: StreamParserLimits;
  /** Open elements of the current stanza; [0] is the stanza itself. */
  #stack: Element[] = [];
  #headerSeen = false;
  /** Text position where the current stanza (with any whitespace before it) starts. */
  #mark = 0;
  #stanzaElements = 0;
  #failed = false;
  /**
   * A stanza whose end tag was just read. saxes reports a mismatched end tag
   * only after it has reported the close, so a stanza is handed on at the
   * next parser event or at the end of the chunk, once it is known to be good.
   */
  #pending: Element | null = null;

  constructor(events: StreamParserEvents, limits: StreamParserLimits) {
    this.#events = events;
    this.limits = limits;
    const sax = new SaxesParser({ xmlns: false, position: false });
    this.#sax = sax;
    sax.on('xmldecl', (decl) => {
      // RFC 6120 §11.6: UTF-8 only; XML 1.0 only.
      if (decl.version !== undefined && decl.version !== '1.0') this.#fail('not-well-formed', 'only XML 1.0 is accepted');
      else if (decl.encoding !== undefined && decl.encoding.toLowerCase() !== 'utf-8') this.#fail('unsupported-encoding', 'only UTF-8 is accepted');
    });
    sax.on('doctype', () => this.#fail('restricted-xml', 'a DTD is not allowed in XMPP'));
    sax.on('comment', () => this.#fail('restricted-xml', 'comments are not allowed in XMPP'));
    sax.on('processinginstruction', () => this.#fail('restricted-xml', 'processing instructions are not allowed in XMPP'));
    sax.on('opentag', (tag) => this.#open(tag));
    sax.on('closetag', (tag) => this.#close(tag));
    sax.on('text', (text) => this.#text(text));
    sax.on('cdata', (text) => this.#text(text));
    sax.on('error', (err) => {
      const m = err.message;
      // saxes reports a DTD after the root element as misplaced before it
      // could report it as a DTD: still a DTD, so restricted-xml (RFC 6120 §11.1).
      // A mismatched end tag is reported just after the close it belongs to:
      // the stanza that close completed is not well-formed, so it is dropped.
      if (/close tag/i.test(m)) this.#fail('not-well-formed', m, false);
      else if (/doctype/i.test(m)) this.#fail('restricted-xml', 'a DTD is not allowed in XMPP');
      // An XML declaration inside the stream only comes with a new stream
      // header, which is not allowed inside an open stream (RFC 6120 §4.2).
      else if (/XML declaration/i.test(m) && this.#headerSeen) this.#fail('policy-violation', 'unexpected stream header');
      else this.#fail('not-well-formed', m);
    });
  }

  get failed(): boolean {
    return this.#failed;
  }

  /** Feeds bytes; events fire synchronously. Returns false once the stream has failed. */
  write(chunk: Uint8Array): boolean {
    if (this.#failed) return false;
    let data: Uint8Array = chunk;
    if (this.#carry !== null) {
      data = Buffer.concat([this.#carry, chunk]);
      this.#carry = null;
    }
    const end = data.length - incompleteTail(data);
    let text: string;
    try {
      text = this.#decoder.decode(data.subarray(0, end));
    } catch {
      // What comes before the bad bytes is parsed (so the outcome does not
      // depend on where chunks were cut); then the stream fails.
      const ok = validUtf8Prefix(data.subarray(0, end));
      if (ok > 0) this.#feed(this.#decoder.decode(data.subarray(0, ok)));
      this.#fail('not-well-formed', 'invalid UTF-8');
      return false;
    }
    if (end < data.length) this.#carry = Buffer.from(data.subarray(end));
    this.#feed(text);
    return !this.#failed;
  }

  #feed(text: string): void {
    if (this.#failed) return;
    try {
      this.#sax.write(text);
    } catch (err) {
      this.#fail('not-well-formed', (err as Error).message);
    }
    // Stanzas are measured when they close (see #close) and, for one still
    // open, after every chunk: an element that never closes is stopped once
    // the limit is passed, with no more than one chunk read beyond it.
    if (this.#pending !== null) this.#flush();
    if (!this.#failed && this.#tooBig()) this.#fail('policy-violation', 'stanza too large');
  }

  #tooBig(): boolean {
    const max = this.limits.maxStanzaSize;
    return max > 0 && this.#sax.position - this.#mark > max;
  }

  #flush(): void {
    const el = this.#pending!;
    this.#pending = null;
    this.#events.onStanza(el);
  }

  /**
   * Reports the error once. A stanza that closed before the error is handed
   * on first (unless `keepPending` is false), so what is reported does not
   * depend on how the input was cut into chunks.
   */
  #fail(condition: Parameters<StreamParserEvents['onError']>[0], text: string, keepPending = true): void {
    if (this.#failed) return;
    if (keepPending && this.#pending !== null) this.#flush();
    if (this.#failed) return;
    this.#failed = true;
    this.#stack.length = 0;
    this.#pending = null;
    this.#events.onError(condition, text);
  }

  #open(tag: SaxesTagPlain): void {
    if (this.#pending !== null) this.#flush();
    if (this.#failed) return;
    if (!this.#headerSeen) {
      if (this.#tooBig()) {
        this.#fail('policy-violation', 'stream header too large');
        return;
      }
      this.#headerSeen = true;
      this.#mark = this.#sax.position;
      this.#events.onHeader({ name: tag.name, attrs: tag.attributes as Record<string, string> });
      return;
    }
    const stack = this.#stack;
    if (stack.length === 0 && tag.name === 'stream:stream') {
      // A stream header inside an open stream (RFC 6120 §4.2 allows one only after a restart).
      this.#fail('policy-violation', 'unexpected stream header');
      return;
    }
    if (stack.length >= this.limits.maxDepth) {
      this.#fail('policy-violation', 'elements nested too deeply');
      return;
    }
    this.#stanzaElements = stack.length === 0 ? 1 : this.#stanzaElements + 1;
    const maxElements = this.limits.maxElements ?? 0;
    if (maxElements > 0 && this.#stanzaElements > maxElements) {
      this.#fail('policy-violation', 'too many elements in one stanza');
      return;
    }
    const el = new Element(tag.name);
    el.attrs = tag.attributes as Record<string, string>;
    if (stack.length > 0) stack[stack.length - 1]!.children.push(el);
    stack.push(el);
  }

  #close(_tag: SaxesTagPlain): void {
    if (this.#pending !== null) this.#flush();
    if (this.#failed) return;
    const stack = this.#stack;
    if (stack.length === 0) {
      this.#events.onEnd();
      return;
    }
    const el = stack.pop()!;
    if (stack.length === 0) {
      if (this.#tooBig()) {
        this.#fail('policy-violation', 'stanza too large');
        return;
      }
      this.#mark = this.#sax.position;
      this.#pending = el;
    }
  }

  #text(text: string): void {
    // An empty CDATA section adds no text node, so a stanza reads the same after serialisation.
    if (text === '') return;
    if (this.#pending !== null) this.#flush();
    if (this.#failed) return;
    const stack = this.#stack;
    // Whitespace between stanzas is keep-alive padding (RFC 6120 §4.6.1).
    if (stack.length === 0) {
      if (this.#headerSeen && !isWhitespace(text)) this.#fail('not-well-formed', 'text between stanzas');
      // Keep-alive whitespace does not add up towards the size of the next stanza.
      else if (this.#headerSeen) this.#mark = this.#sax.position;
      return;
    }
    const top = stack[stack.length - 1]!;
    const ch = top.children;
    const last = ch.length - 1;
    if (last >= 0 && typeof ch[last] === 'string') ch[last] = (ch[last] as string) + text;
    else ch.push(text);
  }
}

/**
 * How many bytes at the end of `b` begin a multi-byte UTF-8 sequence that
 * the next chunk has to complete (0 when the chunk ends on a boundary).
 */
function incompleteTail(b: Uint8Array): number {
  for (let k = 1; k <= 3 && k <= b.length; k++) {
    const c = b[b.length - k]!;
    if (c < 0x80) return 0;
    if (c >= 0xc0) {
      const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      return need > k ? k : 0;
    }
  }
  return 0;
}

/** The length of the longest prefix of `b` that is well-formed UTF-8 (RFC 3629 §4). */
export function validUtf8Prefix(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) n = 2;
    else if (c >= 0xf0 && c <= 0xf4) n = 3;
    else return i;
    if (i + n >= b.length) return i;
    // The second byte's range rules out overlong forms, surrogates and code points past U+10FFFF.
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    const c1 = b[i + 1]!;
    if (c1 < lo || c1 > hi) return i;
    for (let k = 2; k <= n; k++) {
      const ck = b[i + k]!;
      if (ck < 0x80 || ck > 0xbf) return i;
    }
    i += n + 1;
  }
  return i;
}

function isWhitespace(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return false;
  }
  return true;
}
