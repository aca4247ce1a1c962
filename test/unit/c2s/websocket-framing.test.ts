// The WebSocket framing (RFC 7395 §3.3): one element per message, <open/>
// and <close/> in the framing namespace, namespaces declared by each element
// the server sends, and every parser limit of the byte stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NS_FRAMING, WebSocketFraming } from '../../../src/c2s/websocket-framing.ts';
import type { FramingEvents, FramingLimits, StreamHeader } from '../../../src/c2s/framing.ts';
import { framingLimits } from '../../../src/c2s/session.ts';
import { StreamError } from '../../../src/xmpp/errors.ts';
import { Element, serialize } from '../../../src/xmpp/xml.ts';

const OPEN = `<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`;
const LIMITS: FramingLimits = framingLimits(65_536, {
  preAuthStanzaSize: 1024, preAuthElements: 16, maxDepth: 8,
});

function recorder() {
  const events: string[] = [];
  const sink: FramingEvents = {
    onStreamOpen: (h: StreamHeader) => void events.push(`open ${h.name} ${h.attrs.to}`),
    onStanza: (el: Element) => void events.push(`stanza ${el.name} ${el.attrs.xmlns}`),
    onStreamClose: () => void events.push('close'),
    onStreamError: (c: string) => void events.push(`error ${c}`),
  };
  const framing = new WebSocketFraming(sink, LIMITS);
  const send = (...messages: string[]) => {
    for (const m of messages) framing.input(Buffer.from(m));
  };
  return { events, framing, send };
}

test('<open/>, stanzas, a restart with a fresh <open/> and <close/> come out as events, one message each', () => {
  const { events, framing, send } = recorder();
  send(OPEN, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>");
  framing.restart(true);
  send(OPEN, "<message xmlns='jabber:client' to='b@localhost'><body>hé</body></message>", `<close xmlns='${NS_FRAMING}'/>`);
  assert.deepEqual(events, [
    'open open localhost',
    'stanza auth urn:ietf:params:xml:ns:xmpp-sasl',
    'open open localhost',
    'stanza message jabber:client',
    'close',
  ]);
});

test('two elements in one message, a cut-off element and text after an element are errors', () => {
  for (const bad of ["<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>", "<presence xmlns='jabber:client'>", "<presence xmlns='jabber:client'/>junk"]) {
    const { events, send } = recorder();
    send(OPEN, bad);
    assert.deepEqual(events, ['open open localhost', 'error not-well-formed'], bad);
  }
});

test('after an error nothing more is reported', () => {
  const { events, send } = recorder();
  send(OPEN, '<a><b></a>', "<presence xmlns='jabber:client'/>");
  assert.deepEqual(events, ['open open localhost', 'error not-well-formed']);
});

test('the byte stream\'s limits apply to each message: size before authentication, depth, restricted XML', () => {
  const cases: Array<[string, string]> = [
    [`<message xmlns='jabber:client'><body>${'x'.repeat(2000)}</body></message>`, 'error policy-violation'],
    [`<message xmlns='jabber:client'>${'<a>'.repeat(10)}${'</a>'.repeat(10)}</message>`, 'error policy-violation'],
    ["<message xmlns='jabber:client'><!-- c --></message>", 'error restricted-xml'],
    ["<?xml version='1.0'?><message xmlns='jabber:client'/>", 'error policy-violation'],
    ["<x:message xmlns='jabber:client'/>", 'error not-well-formed'],
  ];
  for (const [input, outcome] of cases) {
    const { events, send } = recorder();
    send(OPEN, input);
    assert.deepEqual(events, ['open open localhost', outcome], input);
  }
});

test('a message of whitespace only is ignored', () => {
  const { events, send } = recorder();
  send(OPEN, ' \n', "<presence xmlns='jabber:client'/>");
  assert.deepEqual(events, ['open open localhost', 'stanza presence jabber:client']);
});

test('what the server sends declares its namespaces, and a routed element is left unchanged', () => {
  const { framing } = recorder();
  assert.equal(framing.open('localhost', 'abc'), `<open xmlns='${NS_FRAMING}' id='abc' from='localhost' version='1.0' xml:lang='en'/>`);
  assert.equal(framing.close(), `<close xmlns='${NS_FRAMING}'/>`);
  assert.match(framing.features('<bind/>'), /^<stream:features xmlns:stream='http:\/\/etherx.jabber.org\/streams'><bind\/><\/stream:features>$/);
  assert.match(framing.error(new StreamError('conflict')), /^<stream:error xmlns:stream='http:\/\/etherx.jabber.org\/streams'><conflict /);
  const el = new Element('message', { to: 'a@b' });
  el.children.push('hi');
  const before = serialize(el);
  assert.match(framing.stanza(el), /^<message xmlns='jabber:client' to=.a@b.>hi<\/message>$/);
  assert.equal(serialize(el), before);
  const own = new Element('iq', { xmlns: 'jabber:client', type: 'result' });
  assert.equal(framing.stanza(own), serialize(own));
  assert.equal(framing.headerFault({ name: 'open', attrs: { xmlns: NS_FRAMING } }), null);
  assert.equal(framing.headerFault({ name: 'message', attrs: { xmlns: 'jabber:client' } })?.condition, 'invalid-namespace');
});
