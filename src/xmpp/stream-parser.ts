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
  /** Bytes of one stanza (0 = no limit). */
  maxStanzaSize: number;
  /** Element nesting below the stream root. */
  maxDepth: number;
}

export class StreamParser {
  #sax: SaxesParser<{ xmlns: false; position: false }>;
  #decoder = new TextDecoder('utf-8', { fatal: true });
  #events: StreamParserEvents;
  limits: StreamParserLimits;
  /** Open elements of the current stanza; [0] is the stanza itself. */
  #stack: Element[] = [];
  #headerSeen = false;
  #stanzaBytes = 0;
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
    sax.on('error', (err) => this.#fail('not-well-formed', err.message));
  }

  get failed(): boolean {
    return this.#failed;
  }

  /** Feeds bytes; events fire synchronously. Returns false once the stream has failed. */
  write(chunk: Uint8Array): boolean {
    if (this.#failed) return false;
    let text: string;
    try {
      text = this.#decoder.decode(chunk, { stream: true });
    } catch {
      this.#fail('not-well-formed', 'invalid UTF-8');
      return false;
    }
    if (this.#stack.length > 0 || !this.#headerSeen) {
      // Counted per chunk while a stanza (or the header) is open, so an
      // element that never closes is stopped when the limit is reached.
      this.#stanzaBytes += chunk.length;
      if (this.limits.maxStanzaSize > 0 && this.#stanzaBytes > this.limits.maxStanzaSize) {
        this.#fail('policy-violation', 'stanza too large');
        return false;
      }
    }
    try {
      this.#sax.write(text);
    } catch (err) {
      this.#fail('not-well-formed', (err as Error).message);
    }
    if (this.#pending !== null) this.#flush();
    return !this.#failed;
  }

  #flush(): void {
    const el = this.#pending!;
    this.#pending = null;
    this.#events.onStanza(el);
  }

  #fail(condition: Parameters<StreamParserEvents['onError']>[0], text: string): void {
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
      this.#headerSeen = true;
      this.#stanzaBytes = 0;
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
      this.#stanzaBytes = 0;
      this.#pending = el;
    }
  }

  #text(text: string): void {
    if (this.#pending !== null) this.#flush();
    if (this.#failed) return;
    const stack = this.#stack;
    // Whitespace between stanzas is keep-alive padding (RFC 6120 §4.6.1).
    if (stack.length === 0) {
      if (this.#headerSeen && !isWhitespace(text)) this.#fail('not-well-formed', 'text between stanzas');
      return;
    }
    const top = stack[stack.length - 1]!;
    const ch = top.children;
    const last = ch.length - 1;
    if (last >= 0 && typeof ch[last] === 'string') ch[last] = (ch[last] as string) + text;
    else ch.push(text);
  }
}

function isWhitespace(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return false;
  }
  return true;
}
