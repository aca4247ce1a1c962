// A small, fast XML element type for stanzas. Attributes are a plain object,
// children are elements or text. Serialisation escapes per XML 1.0 §2.4 / §3.3.3.

export type Node = Element | string;

export class Element {
  name: string;
  attrs: Record<string, string>;
  children: Node[];

  constructor(name: string, attrs?: Record<string, string | undefined>, children?: Node[]) {
    this.name = name;
    this.attrs = {};
    if (attrs) for (const k in attrs) { const v = attrs[k]; if (v !== undefined) this.attrs[k] = v; }
    this.children = children ?? [];
  }

  /** Appends a child and returns it (for building nested trees). */
  c(name: string, attrs?: Record<string, string | undefined>): Element {
    const el = new Element(name, attrs);
    this.children.push(el);
    return el;
  }

  /** Appends text and returns this element. */
  t(text: string): this {
    this.children.push(text);
    return this;
  }

  append(node: Node): this {
    this.children.push(node);
    return this;
  }

  /** The first child element with this local name (and namespace, when given). */
  getChild(name: string, xmlns?: string): Element | undefined {
    for (const c of this.children) {
      if (typeof c !== 'string' && c.name === name && (xmlns === undefined || c.attrs.xmlns === xmlns)) return c;
    }
    return undefined;
  }

  getChildren(name?: string, xmlns?: string): Element[] {
    const out: Element[] = [];
    for (const c of this.children) {
      if (typeof c !== 'string' && (name === undefined || c.name === name) && (xmlns === undefined || c.attrs.xmlns === xmlns)) out.push(c);
    }
    return out;
  }

  /** The first child element in a namespace, whatever its name. */
  getChildByNs(xmlns: string): Element | undefined {
    for (const c of this.children) if (typeof c !== 'string' && c.attrs.xmlns === xmlns) return c;
    return undefined;
  }

  firstElement(): Element | undefined {
    for (const c of this.children) if (typeof c !== 'string') return c;
    return undefined;
  }

  text(): string {
    let s = '';
    for (const c of this.children) if (typeof c === 'string') s += c;
    return s;
  }

  getChildText(name: string, xmlns?: string): string | undefined {
    return this.getChild(name, xmlns)?.text();
  }

  clone(): Element {
    const el = new Element(this.name, this.attrs);
    el.children = this.children.map((c) => (typeof c === 'string' ? c : c.clone()));
    return el;
  }

  toString(): string {
    return serialize(this);
  }
}

const textRe = /[&<>]/g;
const attrRe = /[&<>"']/g;
const entities: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const replace = (ch: string) => entities[ch]!;

export function escapeText(s: string): string {
  return textRe.test(s) ? (textRe.lastIndex = 0, s.replace(textRe, replace)) : s;
}

export function escapeAttr(s: string): string {
  return attrRe.test(s) ? (attrRe.lastIndex = 0, s.replace(attrRe, replace)) : s;
}

export function startTag(name: string, attrs: Record<string, string>, selfClose = false): string {
  let s = '<' + name;
  for (const k in attrs) s += ' ' + k + '="' + escapeAttr(attrs[k]!) + '"';
  return s + (selfClose ? '/>' : '>');
}

/** Iterative serialiser: a deep tree cannot overflow the call stack. */
export function serialize(root: Element): string {
  let out = '';
  serializeInto(root, Infinity, (s) => {
    out = s;
  });
  return out;
}

/**
 * The length serialize() gives `root`,
 * counted without building the text: a walk over the tree, O(its size),
 * for a caller that keeps the size of what it holds (the stream
 * management buffer).
 */
export function serializedLength(root: Element): number {
  let n = 0;
  const stack: Element[] = [root];
  while (stack.length > 0) {
    const el = stack.pop()!;
    // <name attrs/> or <name attrs></name>
    n += 1 + el.name.length;
    const attrs = el.attrs;
    for (const k in attrs) n += 4 + k.length + escapeAttr(attrs[k]!).length;
    if (el.children.length === 0) {
      n += 2;
      continue;
    }
    n += 1 + 3 + el.name.length;
    for (const c of el.children) {
      if (typeof c === 'string') n += escapeText(c).length;
      else stack.push(c);
    }
  }
  return n;
}

/**
 * The serialised form of `root`, or null as soon as it is longer than `max`
 * code units: escaping can make output several times longer than the input
 * it came from (an apostrophe in an attribute becomes `&apos;`), so a bound
 * on what was read is no bound on what would be written. At most `max` plus
 * one node's worth is built before it gives up.
 */
export function serializeBounded(root: Element, max: number): string | null {
  let out: string | null = '';
  const complete = serializeInto(root, max, (s, done) => {
    out = done ? s : null;
  });
  return complete ? out : null;
}

/**
 * Serialises `root` as successive pieces handed to `emit`, each about
 * `piece` code units (one node's text can make a piece longer), so that a
 * large result is never built as one string.
 */
export function serializePieces(root: Element, piece: number, emit: (s: string) => void): void {
  serializeInto(root, Infinity, (s) => {
    if (s !== '') emit(s);
  }, piece);
}

/**
 * The serialiser behind the three above. Without `piece`, `sink` gets the
 * whole output once (done = true), or a prefix once it passed `max` (done =
 * false, and the result is false). With `piece`, `sink` gets each piece.
 */
function serializeInto(root: Element, max: number, sink: (s: string, done: boolean) => void, piece = Infinity): boolean {
  let out = '';
  const stack: Array<Node | { close: string }> = [root];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (typeof item === 'string') out += escapeText(item);
    else if (!(item instanceof Element)) out += item.close;
    else if (item.children.length === 0) out += startTag(item.name, item.attrs, true);
    else {
      out += startTag(item.name, item.attrs);
      stack.push({ close: '</' + item.name + '>' });
      for (let i = item.children.length - 1; i >= 0; i--) stack.push(item.children[i]!);
    }
    if (out.length > max) {
      sink(out, false);
      return false;
    }
    if (out.length >= piece) {
      sink(out, false);
      out = '';
    }
  }
  sink(out, true);
  return true;
}
