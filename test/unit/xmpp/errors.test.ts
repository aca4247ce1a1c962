import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StanzaError, StreamError, errorReply, receivedStreamError } from '../../../src/xmpp/errors.ts';
import { parseElement } from '../../../src/xmpp/parse-element.ts';
import { Element } from '../../../src/xmpp/xml.ts';

const STREAMS = 'urn:ietf:params:xml:ns:xmpp-streams';
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

test('a stream error without text serialises to the condition alone', () => {
  const e = new StreamError('host-unknown');
  assert.equal(e.condition, 'host-unknown');
  assert.equal(e.text, undefined);
  assert.equal(e.toXml(), `<stream:error><host-unknown xmlns="${STREAMS}"/></stream:error>`);
  assert.ok(e instanceof Error);
});

test('a stream error with text escapes it inside a text element', () => {
  const e = new StreamError('policy-violation', 'too <many> & fast');
  assert.equal(
    e.toXml(),
    `<stream:error><policy-violation xmlns="${STREAMS}"/><text xmlns="${STREAMS}" xml:lang="en">too &lt;many&gt; &amp; fast</text></stream:error>`,
  );
  assert.match(e.message, /policy-violation/);
});

test('a stanza error takes the usual type of its condition when none is given', () => {
  assert.equal(new StanzaError('bad-request').type, 'modify');
  assert.equal(new StanzaError('service-unavailable').type, 'cancel');
  assert.equal(new StanzaError('forbidden').type, 'auth');
  assert.equal(new StanzaError('not-authorized').type, 'auth');
  assert.equal(new StanzaError('resource-constraint').type, 'wait');
  assert.equal(new StanzaError('jid-malformed').type, 'modify');
  assert.equal(new StanzaError('item-not-found').type, 'cancel');
});

test('a stanza error keeps an explicit type and text', () => {
  const e = new StanzaError('policy-violation', 'wait', 'slow down');
  assert.equal(e.type, 'wait');
  assert.equal(e.text, 'slow down');
  assert.equal(
    e.toElement().toString(),
    `<error type="wait"><policy-violation xmlns="${STANZAS}"/><text xmlns="${STANZAS}" xml:lang="en">slow down</text></error>`,
  );
});

test('a stanza error element without text has only the condition', () => {
  assert.equal(new StanzaError('item-not-found').toElement().toString(), `<error type="cancel"><item-not-found xmlns="${STANZAS}"/></error>`);
});

test('an error reply swaps from and to, keeps name, id and payload, and appends the error', () => {
  const iq = new Element('iq', { type: 'get', id: 'q1', from: 'a@x/r', to: 'x', 'xml:lang': 'en' });
  iq.c('query', { xmlns: 'jabber:iq:version' });
  const reply = errorReply(iq, new StanzaError('feature-not-implemented'));
  assert.equal(reply.name, 'iq');
  assert.deepEqual(reply.attrs, { type: 'error', id: 'q1', from: 'x', to: 'a@x/r', 'xml:lang': 'en' });
  assert.equal(reply.children.length, 2);
  assert.equal(reply.getChild('query', 'jabber:iq:version')?.name, 'query');
  const err = reply.getChild('error')!;
  assert.equal(err.attrs.type, 'cancel');
  assert.ok(err.getChild('feature-not-implemented', STANZAS));
  // The original stanza is untouched and its children are copies.
  assert.equal(iq.attrs.type, 'get');
  assert.equal(iq.children.length, 1);
  assert.notEqual(reply.children[0], iq.children[0]);
});

test('an error reply to a stanza without from or to leaves the missing address out', () => {
  const stanza = new Element('message', { to: 'b@x', id: 'm1' });
  stanza.c('body').t('hi');
  const reply = errorReply(stanza, new StanzaError('service-unavailable'));
  assert.equal(reply.attrs.from, 'b@x');
  assert.equal('to' in reply.attrs, false);
  assert.equal(reply.toString(), `<message id="m1" from="b@x" type="error"><body>hi</body><error type="cancel"><service-unavailable xmlns="${STANZAS}"/></error></message>`);
});

test('a stream error is recognised by its namespace whatever its prefix, and anything else is not one', () => {
  const STREAMS = "xmlns='urn:ietf:params:xml:ns:xmpp-streams'";
  const el = (xml: string) => parseElement(xml);
  assert.deepEqual(receivedStreamError(el(`<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict ${STREAMS}/><text ${STREAMS}>x</text></stream:error>`)), { condition: 'conflict', text: 'x' });
  assert.deepEqual(receivedStreamError(el(`<e:error xmlns:e='http://etherx.jabber.org/streams'><reset ${STREAMS}/></e:error>`)), { condition: 'reset' });
  assert.deepEqual(receivedStreamError(el(`<error xmlns='http://etherx.jabber.org/streams'/>`)), { condition: 'undefined-condition' });
  assert.equal(receivedStreamError(el(`<x:error xmlns:x='urn:other'><reset ${STREAMS}/></x:error>`)), null);
  assert.equal(receivedStreamError(el(`<error xmlns='jabber:client'/>`)), null);
  assert.equal(receivedStreamError(el(`<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>`)), null);
});
