import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Element, serialize, serializedLength } from '../../../src/xmpp/xml.ts';

test('serializedLength is the length serialize() writes, escapes and nesting included', () => {
  const el = new Element('message', { to: "a@b/'c\"", from: 'x&y', type: 'chat' });
  el.c('body').t('<hi> & "there" \u00e9\ud83d\ude00');
  el.c('active', { xmlns: 'http://jabber.org/protocol/chatstates' });
  el.c('x').c('y').c('z').t('deep').c('empty');
  for (const e of [el, new Element('presence'), new Element('iq', { id: '1' }).t('')]) assert.equal(serializedLength(e), serialize(e).length);
});
