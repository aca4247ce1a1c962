import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseElement, ParseElementError } from '../../../src/xmpp/parse-element.ts';
import { Element } from '../../../src/xmpp/xml.ts';

test('a stanza is parsed into names, attributes, children and text', () => {
  const el = parseElement('<message xmlns="jabber:client" to="bob@example.com" type="chat"><body>hi</body><x xmlns="urn:x"/></message>');
  assert.equal(el.name, 'message');
  assert.deepEqual(el.attrs, { xmlns: 'jabber:client', to: 'bob@example.com', type: 'chat' });
  assert.equal(el.getChildText('body'), 'hi');
  assert.ok(el.getChild('x', 'urn:x'));
  assert.equal(el.children.length, 2);
});

test('entities in text and attributes are decoded', () => {
  const el = parseElement('<a t="&quot;x&apos; &amp; &lt;y&gt;"><b>1 &lt; 2 &amp;&amp; 3 &gt; 2 &#x263A;</b></a>');
  assert.equal(el.attrs.t, `"x' & <y>`);
  assert.equal(el.getChildText('b'), '1 < 2 && 3 > 2 \u263A');
});

test('CDATA joins the surrounding text', () => {
  const el = parseElement('<body>a<![CDATA[<b>]]>c</body>');
  assert.deepEqual(el.children, ['a<b>c']);
});

test('prefixed names and namespace declarations are kept as written', () => {
  const el = parseElement('<a xmlns:p="urn:p"><p:b p:c="1"/></a>');
  assert.equal(el.attrs['xmlns:p'], 'urn:p');
  assert.equal(el.firstElement()!.name, 'p:b');
  assert.equal(el.firstElement()!.attrs['p:c'], '1');
});

test('a serialised element parses back to the same serialisation', () => {
  const src = new Element('message', { from: 'a@b/c', to: 'd@e', type: 'chat', id: 'x"<&>' });
  src.c('body').t('Hello <world> & "friends" \u00e9\u{1F600}');
  src.c('delay', { xmlns: 'urn:xmpp:delay', from: 'b', stamp: '2024-01-01T00:00:00.000Z' });
  src.c('empty');
  src.t(' tail ');
  assert.equal(parseElement(src.toString()).toString(), src.toString());
});

test('whitespace around the root element is ignored', () => {
  const el = parseElement('  \n<a><b/></a>\n ');
  assert.equal(el.toString(), '<a><b/></a>');
});

test('very deep nesting is parsed without exhausting the stack', () => {
  const depth = 50_000;
  const xml = '<a>'.repeat(depth) + 'x' + '</a>'.repeat(depth);
  let el: Element | undefined = parseElement(xml);
  let n = 0;
  while (el !== undefined && el.name === 'a') {
    n++;
    const next: Element | undefined = el.firstElement();
    if (next === undefined) assert.equal(el.text(), 'x');
    el = next;
  }
  assert.equal(n, depth);
});

for (const bad of ['', 'text', '<a>', '<a></b>', '<a/><b/>', '<a/>tail', '<a x="1" x="2"/>', '<a>&unknown;</a>']) {
  test(`malformed input ${JSON.stringify(bad)} is rejected with ParseElementError`, () => {
    assert.throws(() => parseElement(bad), (err: unknown) => err instanceof ParseElementError && err.code === 'xml_not_well_formed');
  });
}
