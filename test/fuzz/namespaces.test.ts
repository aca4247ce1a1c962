// Namespace well-formedness (Namespaces in XML 1.0 §5): whatever prefixes a
// client puts on element and attribute names, at whatever depth, declared
// there, on an ancestor, on the stream header or nowhere, the stream parser
// either ends the stream with not-well-formed or hands on stanzas that a
// namespace-aware XML parser reads on their own, as another client would
// once the server forwards or stores them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SaxesParser } from 'saxes';
import { StreamParser } from '../../src/xmpp/stream-parser.ts';
import { serialize, type Element } from '../../src/xmpp/xml.ts';
import { fc, params } from './lib.ts';

const PREFIXES = ['a', 'b', 'stream', 'xml', 'xmlns', 'x1'] as const;

interface Node {
  prefix: string | null;
  /** Prefixes declared on this element. */
  declares: string[];
  /** Prefixed attributes. */
  attrPrefixes: string[];
  children: Node[];
}

const node: fc.Memo<Node> = fc.memo((depth) =>
  fc.record({
    prefix: fc.option(fc.constantFrom(...PREFIXES), { nil: null }),
    declares: fc.uniqueArray(fc.constantFrom('a', 'b', 'x1'), { maxLength: 2 }),
    attrPrefixes: fc.uniqueArray(fc.constantFrom(...PREFIXES), { maxLength: 2 }),
    children: depth <= 1 ? fc.constant([]) : fc.array(node(depth - 1), { maxLength: 3 }),
  }),
);

function xml(n: Node, top: boolean): string {
  const name = (n.prefix === null ? '' : n.prefix + ':') + (top ? 'message' : 'x');
  let s = '<' + name;
  for (const d of n.declares) s += ` xmlns:${d}='urn:test:${d}'`;
  for (const p of n.attrPrefixes) s += p === 'xmlns' ? ` xmlns:q='urn:q'` : ` ${p}:at='v'`;
  s += '>';
  for (const c of n.children) s += xml(c, false);
  return s + '</' + name + '>';
}

/** Errors a namespace-aware parser finds in `doc` read as a document of its own. */
function nsErrors(doc: string): string[] {
  const errs: string[] = [];
  const p = new SaxesParser({ xmlns: true });
  p.on('error', (e) => errs.push(e.message));
  p.write(doc).close();
  return errs;
}

test('a stanza the parser hands on is namespace-well-formed on its own; one that is not ends the stream with not-well-formed', () => {
  fc.assert(
    fc.property(node(4), fc.boolean(), (n, headerDeclaresA) => {
      const header = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'${headerDeclaresA ? " xmlns:a='urn:header:a'" : ''} version='1.0'>`;
      const stanzas: Element[] = [];
      const errors: string[] = [];
      const parser = new StreamParser(
        { onHeader() {}, onStanza: (el) => stanzas.push(el), onEnd() {}, onError: (c) => errors.push(c) },
        { maxStanzaSize: 0, maxDepth: 64 },
      );
      parser.write(Buffer.from(header + xml(n, true)));
      for (const el of stanzas) {
        // The stream's own elements (stream:error, ...) are answered by the server, never forwarded.
        if (el.name.startsWith('stream:')) continue;
        const out = serialize(el);
        assert.deepEqual(nsErrors(out), [], `handed on, yet not namespace-well-formed: ${out}`);
      }
      if (stanzas.length === 0) assert.deepEqual(errors, ['not-well-formed']);
      else assert.deepEqual(errors, []);
    }),
    params(400),
  );
});
