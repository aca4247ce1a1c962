// Parses one serialised element (a stored stanza) back into an Element,
// whole (parseElement) or fed in pieces (ElementParser, for input long enough
// that parsing it in one go would hold the event loop). The SAX parser drives
// a stack of open elements, so nesting depth costs heap, never call stack.
import { SaxesParser } from 'saxes';
import { Element } from './xml.ts';

export class ParseElementError extends Error {
  readonly code = 'xml_not_well_formed';
}

/** One element, from its text in as many pieces as it comes (split anywhere). */
export class ElementParser {
  readonly #parser = new SaxesParser({ xmlns: false, position: false });
  readonly #stack: Element[] = [];
  #root: Element | undefined;
  #failure: Error | undefined;

  constructor() {
    const parser = this.#parser;
    const stack = this.#stack;
    parser.on('error', (err) => {
      this.#failure ??= err;
    });
    parser.on('opentag', (tag) => {
      const el = new Element(tag.name, tag.attributes);
      const parent = stack[stack.length - 1];
      if (parent !== undefined) parent.children.push(el);
      else this.#root = el;
      if (!tag.isSelfClosing) stack.push(el);
    });
    parser.on('closetag', (tag) => {
      if (!tag.isSelfClosing) stack.pop();
    });
    const addText = (text: string) => {
      const parent = stack[stack.length - 1];
      // Whitespace around the root element is allowed and not part of it.
      if (parent === undefined || text === '') return;
      const last = parent.children[parent.children.length - 1];
      if (typeof last === 'string') parent.children[parent.children.length - 1] = last + text;
      else parent.children.push(text);
    };
    parser.on('text', addText);
    parser.on('cdata', addText);
  }

  write(piece: string): void {
    // Once it is known not to be well-formed, the rest is not worth reading.
    if (this.#failure === undefined) this.#parser.write(piece);
  }

  /** The element, or the error parseElement would throw. */
  close(): Element | ParseElementError {
    if (this.#failure === undefined) this.#parser.close();
    if (this.#failure !== undefined) return new ParseElementError(`not well-formed XML: ${this.#failure.message}`);
    return this.#root ?? new ParseElementError('no element in the input');
  }
}

/** Parses `xml`, which must hold exactly one element (XML 1.0 §2.1 "document" production, without prolog). */
export function parseElement(xml: string): Element {
  const p = new ElementParser();
  p.write(xml);
  const r = p.close();
  if (r instanceof ParseElementError) throw r;
  return r;
}
