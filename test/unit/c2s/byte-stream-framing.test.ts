// The byte-stream framing: stream headers, stanzas and the stream end out of
// bytes, and a restart that drops what was left of the read it happened in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteStreamFraming } from '../../../src/c2s/byte-stream-framing.ts';
import type { FramingEvents, FramingLimits, StreamHeader } from '../../../src/c2s/framing.ts';
import { framingLimits } from '../../../src/c2s/session.ts';
import { StreamError } from '../../../src/xmpp/errors.ts';
import type { Element } from '../../../src/xmpp/xml.ts';

const HEADER = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
const LIMITS: FramingLimits = framingLimits(65_536, {
  preAuthStanzaSize: 8192, preAuthElements: 16, maxDepth: 64,
});

/** Records every event; `onStanzaDo` runs inside the stanza event, as the session's handling would. */
function recorder(onStanzaDo?: (el: Element, f: ByteStreamFraming) => void) {
  const events: string[] = [];
  let framing!: ByteStreamFraming;
  const sink: FramingEvents = {
    onStreamOpen: (h: StreamHeader) => void events.push(`open ${h.attrs.to}`),
    onStanza: (el: Element) => {
      events.push(`stanza ${el.name}`);
      onStanzaDo?.(el, framing);
    },
    onStreamClose: () => void events.push('close'),
    onStreamError: (c: string) => void events.push(`error ${c}`),
  };
  framing = new ByteStreamFraming(sink, LIMITS);
  return { events, framing };
}

test('a header, stanzas cut anywhere and the stream end come out as events in order', () => {
  const { events, framing } = recorder();
  const text = HEADER + "<message to='a@b'><body>hé</body></message><presence/></stream:stream>";
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += 7) framing.input(bytes.subarray(i, i + 7));
  assert.deepEqual(events, ['open localhost', 'stanza message', 'stanza presence', 'close']);
});

test('a restart inside a read drops the rest of that read; the next read starts the new stream', () => {
  const { events, framing } = recorder((el, f) => {
    if (el.name === 'starttls') f.restart(false);
  });
  framing.input(Buffer.from(HEADER + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth><broken"));
  assert.deepEqual(events, ['open localhost', 'stanza starttls']);
  framing.input(Buffer.from(HEADER + '<iq/>'));
  assert.deepEqual(events, ['open localhost', 'stanza starttls', 'open localhost', 'stanza iq']);
});

test('a restart outside a read drops nothing', () => {
  const { events, framing } = recorder();
  framing.input(Buffer.from(HEADER + '<a/>'));
  framing.restart(true);
  framing.input(Buffer.from(HEADER + '<b/>'));
  assert.deepEqual(events, ['open localhost', 'stanza a', 'open localhost', 'stanza b']);
});

test('the framing says what is wrong with a header and writes the stream\'s own framing', () => {
  const { framing } = recorder();
  assert.equal(framing.headerFault({ name: 'stream:stream', attrs: { 'xmlns:stream': 'http://etherx.jabber.org/streams', xmlns: 'jabber:client' } }), null);
  assert.equal(framing.headerFault({ name: 'open', attrs: { xmlns: 'urn:ietf:params:xml:ns:xmpp-framing' } })?.condition, 'invalid-namespace');
  assert.equal(framing.headerFault({ name: 'stream:stream', attrs: { 'xmlns:stream': 'http://etherx.jabber.org/streams', xmlns: 'jabber:server' } })?.condition, 'invalid-namespace');
  assert.match(framing.open('localhost', 'abc'), /^<\?xml version='1.0'\?><stream:stream xmlns='jabber:client' xmlns:stream='http:\/\/etherx.jabber.org\/streams' id='abc' from='localhost' version='1.0' xml:lang='en'>$/);
  assert.equal(framing.features('<x/>'), '<stream:features><x/></stream:features>');
  assert.equal(framing.close(), '</stream:stream>');
  assert.equal(framing.error(new StreamError('conflict')), '<stream:error><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>');
  assert.equal(framing.elementPerWrite, false);
});
