import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Acc } from '../../../../src/hooks/catalogue.ts';
import { parseJid, type JID } from '../../../../src/xmpp/jid.ts';
import { Element } from '../../../../src/xmpp/xml.ts';
import * as defaults from '../../../../src/modules/mod_event_pusher/http/defaults.ts';
import * as json from '../../../../src/modules/mod_event_pusher/http/json.ts';
import { formEncode } from '../../../../src/modules/mod_event_pusher/http/form.ts';
import type { CallbackModule, PrepareArgs, ShouldMakeReqArgs } from '../../../../src/modules/mod_event_pusher/http/callback.ts';

const opts = { pool_name: 'http_pool', path: '', callback_module: 'mod_event_pusher_http_defaults' };

function message(attrs: Record<string, string>, body?: string): Element {
  const el = new Element('message', attrs);
  if (body !== undefined) el.c('body').t(body);
  return el;
}

function acc(from: JID, to: JID, el: Element): Acc {
  return { ref: 'ref-1', timestamp: Date.UTC(2025, 0, 2, 3, 4, 5, 6), hostType: from.domain, lserver: from.domain, element: el, from, to };
}

function should(dir: 'in' | 'out', el: Element, mod: CallbackModule = defaults.defaults): boolean {
  const from = parseJid('alice@localhost/res');
  const to = parseJid('bob@localhost');
  const a: ShouldMakeReqArgs = { acc: acc(from, to, el), dir, packet: el, from, to, opts };
  return mod.shouldMakeReq(a) as boolean;
}

function prepare(fromS: string, toS: string, body: string, dir: 'in' | 'out' = 'in', el?: Element): PrepareArgs {
  const from = parseJid(fromS);
  const to = parseJid(toS);
  const packet = el ?? message({ type: 'chat', to: toS, id: 'm1' }, body);
  return { acc: acc(from, to, packet), dir, host: from.domain, message: body, sender: from.local, receiver: to.local, receiverHost: to.domain, opts };
}

test('the default pushes a chat message with a body that a user sent', () => {
  assert.equal(should('in', message({ type: 'chat' }, 'hi')), true);
});

test('the default does not push the out direction', () => {
  assert.equal(should('out', message({ type: 'chat' }, 'hi')), false);
});

test('the default does not push groupchat, headline or normal messages', () => {
  assert.equal(should('in', message({ type: 'groupchat' }, 'hi')), false);
  assert.equal(should('in', message({ type: 'headline' }, 'hi')), false);
  assert.equal(should('in', message({ type: 'normal' }, 'hi')), false);
  assert.equal(should('in', message({}, 'hi')), false);
});

test('a chat message with an empty body or none is not pushed', () => {
  assert.equal(should('in', message({ type: 'chat' }, '')), false);
  assert.equal(should('in', message({ type: 'chat' })), false);
});

test('the default body is author, server, receiver, message in that order', () => {
  assert.equal(defaults.prepareBody(prepare('alice@localhost/r', 'bob@localhost', 'Hi, Bob!')), 'author=alice&server=localhost&receiver=bob&message=Hi%2C+Bob%21');
});

test('names are the prepared JID parts, so they are lower case', () => {
  const body = defaults.prepareBody(prepare('Alice@LocalHost/Res', 'BOB@localhost', 'x'));
  assert.equal(body, 'author=alice&server=localhost&receiver=bob&message=x');
});

test('a message with & and = decodes back to itself', () => {
  const body = defaults.prepareBody(prepare('alice@localhost', 'bob@localhost', 'Hi Test!&escape=Hello'));
  assert.equal(body, 'author=alice&server=localhost&receiver=bob&message=Hi+Test%21%26escape%3DHello');
  const back = new URLSearchParams(body);
  assert.deepEqual([...back], [['author', 'alice'], ['server', 'localhost'], ['receiver', 'bob'], ['message', 'Hi Test!&escape=Hello']]);
});

test('non-ASCII text is percent-encoded UTF-8 and round-trips', () => {
  const text = 'Zażółć gęślą jaźń — 日本語 🎉';
  const body = defaults.prepareBody(prepare('alice@localhost', 'bob@localhost', text));
  assert.match(body, /^author=alice&server=localhost&receiver=bob&message=Za%C5%BC%C3%B3%C5%82%C4%87\+/);
  assert.equal(new URLSearchParams(body).get('message'), text);
});

test('form encoding keeps only letters, digits, "-", "." and "_" as they are, like cow_qs', () => {
  assert.equal(formEncode('aZ09-._'), 'aZ09-._');
  assert.equal(formEncode('~*\'()!'), '%7E%2A%27%28%29%21');
  assert.equal(formEncode('a b+c'), 'a+b%2Bc');
  assert.equal(formEncode('\n'), '%0A');
});

test('the default headers are the form content type', () => {
  assert.deepEqual(defaults.prepareHeaders(prepare('a@localhost', 'b@localhost', 'x')), [['content-type', 'application/x-www-form-urlencoded']]);
});

test('the JSON module pushes every chat type in both directions when the body is not empty', () => {
  for (const type of ['chat', 'groupchat', 'headline', 'normal']) {
    assert.equal(should('in', message({ type }, 'x'), json.json), true);
    assert.equal(should('out', message({ type }, 'x'), json.json), true);
  }
  assert.equal(should('in', message({ type: 'chat' }, ''), json.json), false);
});

test('the JSON body carries the form fields, direction, JIDs, type, stanza id and an ISO timestamp', () => {
  const el = message({ type: 'chat', id: 'abc' }, 'Hi');
  const body = JSON.parse(json.prepareBody(prepare('Alice@LocalHost/Phone', 'bob@localhost', 'Hi', 'out', el)));
  assert.deepEqual(body, {
    type: 'chat_message',
    timestamp: '2025-01-02T03:04:05.006Z',
    data: {
      author: 'alice', server: 'localhost', receiver: 'bob', message: 'Hi', direction: 'out',
      from: 'alice@localhost/Phone', to: 'bob@localhost', message_type: 'chat', stanza_id: 'abc',
    },
  });
  assert.deepEqual(json.prepareHeaders(prepare('a@localhost', 'b@localhost', 'x')), [['content-type', 'application/json']]);
});
