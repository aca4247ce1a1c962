// Parses one serialised element (a stored stanza) back into an Element.
// The SAX parser drives a stack of open elements, so nesting depth costs heap,
// never call stack.
import { SaxesParser } from 'saxes';
import { Element } from './xml.ts';

export class ParseElementError extends Error {
  readonly code = 'xml_not_well_formed';
}

/** Parses `xml`, which must hold exactly one element (XML 1.0 §2.1 "document" production, without prolog). */
export function parseElement(xml: string): Element {
  const parser = new SaxesParser({ xmlns: false, position: false });
  const stack: Element[] = [];
  let root: Element | undefined;
  let failure: Error | undefined;

  parser.on('error', (err) => {
    failure ??= err;
  });
  parser.on('opentag', (tag) => {
    const el = new Element(tag.name, tag.attributes);
    const parent = stack[stack.length - 1];
    if (parent !== undefined) parent.children.push(el);
    else root = el;
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

  parser.write(xml);
  if (failure === undefined) parser.close();
  if (failure !== undefined) throw new ParseElementError(`not well-formed XML: ${failure.message}`);
  if (root === undefined) throw new ParseElementError('no element in the input');
  return root;
}
