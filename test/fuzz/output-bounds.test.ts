// Output is bounded whatever a stanza holds: the bounded serialiser gives
// the whole text or nothing, never builds much past its bound, and the
// piecewise serialiser writes the same text in pieces of bounded size.
// Trees are random, with attribute values and text full of characters that
// escaping makes longer (quotes, apostrophes, ampersands, angle brackets).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Element, escapeAttr, escapeText, serialize, serializeBounded, serializePieces, type Node } from '../../src/xmpp/xml.ts';
import { fc, params } from './lib.ts';

const expanding = fc.string({ unit: fc.constantFrom('"', "'", '&', '<', '>', 'a', 'é', '𝐀'), maxLength: 300 });
const name = fc.constantFrom('message', 'body', 'x', 'item', 'group', 'data');

const tree: fc.Memo<Element> = fc.memo((depth) =>
  fc
    .record({
      name,
      attrs: fc.dictionary(fc.constantFrom('a', 'b', 'id', 'name', 'to'), expanding, { maxKeys: 3 }),
      children: depth <= 1 ? fc.array(expanding, { maxLength: 3 }) : fc.array(fc.oneof(expanding, tree(depth - 1)), { maxLength: 4 }),
    })
    .map(({ name, attrs, children }) => new Element(name, attrs, children as Node[])),
);

/** The longest single node's serialised text: a start tag with its attributes, or one text child. */
function largestNode(el: Element): number {
  let max = 0;
  const stack: Element[] = [el];
  while (stack.length > 0) {
    const e = stack.pop()!;
    let tag = e.name.length + 3;
    for (const k in e.attrs) tag += k.length + 4 + escapeAttr(e.attrs[k]!).length;
    max = Math.max(max, tag);
    for (const c of e.children) {
      if (typeof c === 'string') max = Math.max(max, escapeText(c).length);
      else stack.push(c);
    }
  }
  return max;
}

test('the bounded serialiser returns the whole text when it fits and null when it does not', () => {
  fc.assert(
    fc.property(tree(4), fc.integer({ min: 0, max: 4000 }), (el, max) => {
      const whole = serialize(el);
      const bounded = serializeBounded(el, max);
      if (whole.length <= max) assert.equal(bounded, whole);
      else assert.equal(bounded, null);
    }),
    params(200),
  );
});

test('the piecewise serialiser writes the same text, each piece at most one node past its size', () => {
  fc.assert(
    fc.property(tree(4), fc.integer({ min: 1, max: 2000 }), (el, piece) => {
      const pieces: string[] = [];
      serializePieces(el, piece, (s) => pieces.push(s));
      assert.equal(pieces.join(''), serialize(el));
      const slack = largestNode(el) + el.name.length + 3;
      for (const p of pieces) assert.ok(p.length > 0 && p.length < piece + slack, `a piece of ${p.length} for pieces of ${piece}`);
    }),
    params(200),
  );
});

test('a stanza whose attribute is all apostrophes is refused by the bound it passes on input, however long', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 50_000 }), (n) => {
      const el = new Element('message', { to: 'bob@localhost' }, [new Element('data', { x: "'".repeat(n) })]);
      // Read, the attribute is n characters; written, 6n.
      const bound = n * 2;
      assert.equal(serializeBounded(el, bound), null);
      assert.ok(serializeBounded(el, 6 * n + 100) !== null);
    }),
    params(5),
  );
});
