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

/** The root element name every XMPP stream uses (RFC 6120 §4.8.1). */
const STREAM_ROOT = 'stream:stream';

/**
 * The fields of a saxes 6 parser that tell whether it sits between two
 * stanzas with nothing of its own to remember. They are read, never written.
 */
interface SaxesRest {
  state: number;
  text: string;
  tags: unknown[];
  carriedFromPrevious: string | undefined;
  /** Text read before the current chunk. Once write() returns, that is all the text read. */
  chunkPosition: number;
}

type Sax = SaxesParser<{ xmlns: false; position: false }>;

/**
 * A saxes parser and the stream parser it currently works for. While a
 * stream sits between stanzas it needs no parser of its own (see `#rest`),
 * so idle streams share a few of these instead of holding one each.
 */
class Engine {
  readonly sax: Sax;
  owner: StreamParser | null = null;
  /** Open elements of the owner's current stanza; [0] is the stanza itself. */
  readonly stack: Element[] = [];

  constructor(sax: Sax) {
    this.sax = sax;
  }
}

/** Engines primed with a `stream:stream` root, free to be taken. */
const POOL: Engine[] = [];
const POOL_MAX = 8;

/**
 * saxes's state number for character data (between tags), or -1 when the
 * installed saxes does not have the fields `SaxesRest` reads: then every
 * stream keeps its own parser, as it would without resting.
 */
const S_TEXT: number = (() => {
  const probe = new SaxesParser({ xmlns: false, position: false });
  probe.write('<r>');
  const r = probe as unknown as SaxesRest & { stateTable?: unknown[]; sText?: unknown };
  const state = Array.isArray(r.stateTable) ? r.stateTable.indexOf(r.sText) : -1;
  const ok = state >= 0 && r.state === state && r.text === '' && Array.isArray(r.tags) && r.tags.length === 1 && r.carriedFromPrevious === undefined && r.chunkPosition === 3;
  return ok ? state : -1;
})();

/**
 * How much text a parser has read, between writes. (saxes's `position` is
 * only right while it reports an event: once write() returns, it counts the
 * last chunk twice.)
 */
function readSoFar(sax: Sax): number {
  return S_TEXT >= 0 ? (sax as unknown as SaxesRest).chunkPosition : sax.position;
}

// Not in streaming mode, so it keeps nothing between calls and one decoder
// serves every stream: a sequence cut by a chunk boundary is carried over by
// hand (`#carry`), so that on invalid input the valid text before it can
// still be parsed. A BOM is left to saxes, which skips one at the start.
const DECODER = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export interface StreamParserOptions {
  /**
   * Give the XML parser back whenever a chunk ends between stanzas, and take
   * one (primed with the stream's root element) when the next text comes. It
   * changes nothing that is reported; an idle stream then costs far less
   * memory. On unless false.
   */
  rest?: boolean;
}

export class StreamParser {
  /** The XML parser, or null while resting between stanzas (or once failed). */
  #engine: Engine | null = null;
  /** The start of a UTF-8 sequence the previous chunk ended in the middle of. */
  #carry: Buffer | null = null;
  #events: StreamParserEvents;
  limits: StreamParserLimits;
  #headerSeen = false;
  #canRest: boolean;
  /** The stream's root element name, once the header has been read. */
  #root = STREAM_ROOT;
  /** Text position where the current stanza (with any whitespace before it) starts. */
  #mark = 0;
  /** While resting: text read since `#mark` (keep-alive whitespace, counted until the next stanza starts). */
  #restCount = 0;
  /** While resting: that whitespace has not yet been passed on as text (saxes holds text until the next tag). */
  #restSpace = false;
  #stanzaElements = 0;
  #failed = false;
  /** Prefixes the stream header declares (`xmlns:stream` and any other), with their namespaces; null when none besides `stream`. */
  #headerPrefixes: Record<string, string> | null = null;
  /**
   * A stanza whose end tag was just read. saxes reports a mismatched end tag
   * only after it has reported the close, so a stanza is handed on at the
   * next parser event or at the end of the chunk, once it is known to be good.
   */
  #pending: Element | null = null;

  constructor(events: StreamParserEvents, limits: StreamParserLimits, options?: StreamParserOptions) {
    this.#events = events;
    this.limits = limits;
    this.#canRest = options?.rest !== false && S_TEXT >= 0;
  }

  /**
   * A saxes parser whose events go to its current owner. With a root name it
   * is primed with that element's start tag, as if a stream header had just
   * been read, without telling anyone.
   */
  static #newEngine(root: string | null): Engine {
    const sax: Sax = new SaxesParser({ xmlns: false, position: false });
    const e = new Engine(sax);
    sax.on('xmldecl', (decl) => {
      const p = e.owner;
      if (p === null) return;
      // RFC 6120 §11.6: UTF-8 only; XML 1.0 only.
      if (decl.version !== undefined && decl.version !== '1.0') p.#fail('not-well-formed', 'only XML 1.0 is accepted');
      else if (decl.encoding !== undefined && decl.encoding.toLowerCase() !== 'utf-8') p.#fail('unsupported-encoding', 'only UTF-8 is accepted');
    });
    sax.on('doctype', () => {
      if (e.owner !== null) e.owner.#fail('restricted-xml', 'a DTD is not allowed in XMPP');
    });
    sax.on('comment', () => {
      if (e.owner !== null) e.owner.#fail('restricted-xml', 'comments are not allowed in XMPP');
    });
    sax.on('processinginstruction', () => {
      if (e.owner !== null) e.owner.#fail('restricted-xml', 'processing instructions are not allowed in XMPP');
    });
    sax.on('opentag', (tag) => {
      if (e.owner !== null) e.owner.#open(tag);
    });
    sax.on('closetag', (tag) => {
      if (e.owner !== null) e.owner.#close(tag);
    });
    sax.on('text', (text) => {
      if (e.owner !== null) e.owner.#text(text);
    });
    sax.on('cdata', (text) => {
      if (e.owner !== null) e.owner.#text(text);
    });
    sax.on('error', (err) => {
      if (e.owner !== null) e.owner.#saxError(err.message);
    });
    if (root !== null) sax.write(`<${root}>`);
    return e;
  }

  get failed(): boolean {
    return this.#failed;
  }

  /** True while the stream holds no XML parser of its own: before any data, between stanzas, after a failure. */
  get resting(): boolean {
    return this.#engine === null;
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
      text = DECODER.decode(data.subarray(0, end));
    } catch {
      // What comes before the bad bytes is parsed (so the outcome does not
      // depend on where chunks were cut); then the stream fails.
      const ok = validUtf8Prefix(data.subarray(0, end));
      if (ok > 0) this.#feed(DECODER.decode(data.subarray(0, ok)));
      this.#fail('not-well-formed', 'invalid UTF-8');
      return false;
    }
    if (end < data.length) this.#carry = Buffer.from(data.subarray(end));
    this.#feed(text);
    return !this.#failed;
  }

  #feed(text: string): void {
    if (this.#failed || text === '') return;
    const e = this.#engine ?? this.#wake();
    try {
      e.sax.write(text);
    } catch (err) {
      this.#fail('not-well-formed', (err as Error).message);
    }
    // Stanzas are measured when they close (see #close) and, for one still
    // open, after every chunk: an element that never closes is stopped once
    // the limit is passed, with no more than one chunk read beyond it.
    if (this.#pending !== null) this.#flush();
    if (this.#failed) return;
    const max = this.limits.maxStanzaSize;
    if (max > 0 && readSoFar(e.sax) - this.#mark > max) this.#fail('policy-violation', 'stanza too large');
    else if (this.#canRest && this.#headerSeen && e.stack.length === 0) this.#rest();
  }

  /**
   * Gives the XML parser up if nothing in it belongs to this stream any
   * more: it is in character data right under the root, with no character
   * held back for the next chunk and nothing but whitespace read since the
   * last stanza ended.
   */
  #rest(): void {
    const e = this.#engine!;
    const s = e.sax as unknown as SaxesRest;
    if (s.state !== S_TEXT || s.carriedFromPrevious !== undefined || s.tags.length !== 1 || !isWhitespace(s.text)) return;
    this.#restCount = readSoFar(e.sax) - this.#mark;
    this.#restSpace = s.text.length > 0;
    e.owner = null;
    this.#engine = null;
    // One holding whitespace is not reused: the next stream would be handed that text.
    if (!this.#restSpace && this.#root === STREAM_ROOT && POOL.length < POOL_MAX) POOL.push(e);
  }

  /**
   * Takes an XML parser up: a fresh one for the start of the stream, else
   * one primed with the stream's root, where `#rest` left off.
   */
  #wake(): Engine {
    if (!this.#headerSeen) {
      let e = this.#canRest ? POOL.pop() : undefined;
      // Closing a parser resets it to the start of a document. Nobody owns
      // it, so what closing reports (the root left open) goes nowhere.
      if (e !== undefined) e.sax.close();
      e ??= StreamParser.#newEngine(null);
      e.owner = this;
      this.#engine = e;
      return e;
    }
    const e = (this.#root === STREAM_ROOT ? POOL.pop() : undefined) ?? StreamParser.#newEngine(this.#root);
    e.owner = this;
    this.#engine = e;
    // Whitespace read before resting is passed on as text when the next tag
    // starts; one space stands for it, so that still happens.
    if (this.#restSpace) e.sax.write(' ');
    this.#mark = readSoFar(e.sax) - this.#restCount;
    return e;
  }

  #saxError(m: string): void {
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
  }

  #tooBig(): boolean {
    const max = this.limits.maxStanzaSize;
    return max > 0 && this.#engine!.sax.position - this.#mark > max;
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
    this.#pending = null;
    // The XML parser is dropped (the rest of its chunk then goes nowhere).
    if (this.#engine !== null) this.#engine.owner = null;
    this.#engine = null;
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
      // The common name is kept as a constant: a name cut out of the input can hold on to all of it.
      this.#root = tag.name === STREAM_ROOT ? STREAM_ROOT : (' ' + tag.name).slice(1);
      this.#mark = this.#engine!.sax.position;
      const attrs = tag.attributes as Record<string, string>;
      this.#headerPrefixes = declaredPrefixes(attrs);
      this.#events.onHeader({ name: tag.name, attrs });
      return;
    }
    const stack = this.#engine!.stack;
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
    const attrs = tag.attributes as Record<string, string>;
    el.attrs = attrs;
    if (stack.length > 0) stack[stack.length - 1]!.children.push(el);
    stack.push(el);
    const undeclared = undeclaredPrefix(stack, attrs, this.#headerPrefixes);
    if (undeclared !== null) this.#fail('not-well-formed', undeclared);
  }

  #close(_tag: SaxesTagPlain): void {
    if (this.#pending !== null) this.#flush();
    if (this.#failed) return;
    const stack = this.#engine!.stack;
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
      this.#mark = this.#engine!.sax.position;
      this.#pending = el;
    }
  }

  #text(text: string): void {
    // An empty CDATA section adds no text node, so a stanza reads the same after serialisation.
    if (text === '') return;
    if (this.#pending !== null) this.#flush();
    if (this.#failed) return;
    const stack = this.#engine!.stack;
    // Whitespace between stanzas is keep-alive padding (RFC 6120 §4.6.1).
    if (stack.length === 0) {
      if (this.#headerSeen && !isWhitespace(text)) this.#fail('not-well-formed', 'text between stanzas');
      // Keep-alive whitespace does not add up towards the size of the next stanza.
      else if (this.#headerSeen) this.#mark = this.#engine!.sax.position;
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

/**
 * The prefixes `attrs` declares (`xmlns:p='...'`) with their namespaces,
 * or null when it declares none besides `stream` (which only the stream's
 * own elements use, RFC 6120 §4.8.5).
 */
function declaredPrefixes(attrs: Record<string, string>): Record<string, string> | null {
  let out: Record<string, string> | null = null;
  for (const k in attrs) {
    if (k.length > 6 && k.startsWith('xmlns:') && k !== 'xmlns:stream') (out ??= {})[k.slice(6)] = attrs[k]!;
  }
  return out;
}

/** Whether `prefix` is declared on an open element of `stack` (the innermost is last). */
function declaredInStanza(stack: Element[], prefix: string): boolean {
  const key = 'xmlns:' + prefix;
  for (let i = stack.length - 1; i >= 0; i--) if (Object.hasOwn(stack[i]!.attrs, key)) return true;
  return false;
}

/**
 * Namespaces in XML 1.0 §5 ("namespace constraint: prefix declared"): every
 * prefix of an element or attribute name must be bound by a declaration on
 * the element or an ancestor; `xml` is always bound, and `xmlns:p` must not
 * be empty (§3: no unbinding in XML 1.0). The server forwards and stores
 * stanzas, so one whose prefixes are not declared within it would reach
 * another client as XML it cannot parse, and most libraries drop the
 * connection then. A stanza that uses a prefix the stream header declares
 * (other than `stream`) gets that declaration copied onto it, so that it
 * stays well-formed wherever it goes. Returns what is wrong, or null.
 *
 * Only names with a colon cost anything here; most stanzas have none.
 */
function undeclaredPrefix(stack: Element[], attrs: Record<string, string>, header: Record<string, string> | null): string | null {
  const el = stack[stack.length - 1]!;
  const bad = el.name.indexOf(':') === -1 ? null : checkName(el.name, true, stack, attrs, header);
  if (bad !== null) return bad;
  for (const k in attrs) {
    if (k.indexOf(':') === -1) continue;
    const b = checkName(k, false, stack, attrs, header);
    if (b !== null) return b;
  }
  return null;
}

/** One prefixed name of the innermost element of `stack` (see undeclaredPrefix). */
function checkName(name: string, element: boolean, stack: Element[], attrs: Record<string, string>, header: Record<string, string> | null): string | null {
  const what = element ? 'element' : 'attribute';
  const colon = name.indexOf(':');
  const prefix = name.slice(0, colon);
  if (prefix === 'xml') return null;
  if (prefix === 'xmlns') {
    if (element) return `the element <${name}> uses the reserved prefix xmlns`;
    return attrs[name] === '' ? `${name} declares an empty namespace` : null;
  }
  if (colon === 0 || colon === name.length - 1 || name.indexOf(':', colon + 1) !== -1) return `the ${what} name ${JSON.stringify(name)} is not a qualified name`;
  if (declaredInStanza(stack, prefix)) return null;
  // The stream's own prefix: allowed on the stream's elements (stream:error, stream:features) only.
  if (prefix === 'stream' && element && stack.length === 1) return null;
  if (header !== null && Object.hasOwn(header, prefix)) {
    stack[0]!.attrs['xmlns:' + prefix] = header[prefix]!;
    return null;
  }
  return `the namespace prefix "${prefix}" of the ${what} ${JSON.stringify(name)} is not declared`;
}

function isWhitespace(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return false;
  }
  return true;
}
