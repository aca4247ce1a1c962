// Stream errors (RFC 6120 §4.9) provoked over raw sockets. After each, the
// server closes that stream and keeps serving everybody else.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from './helpers/server.ts';
import { connect } from './helpers/client.ts';
import { NS_CLIENT, NS_STREAM, RawConnection, streamErrorCondition, streamHeader } from './helpers/raw.ts';

const MAX_STANZA_SIZE = 2048;

let server: Petrel;

before(async () => {
  server = await startPetrel({ listeners: [{ max_stanza_size: MAX_STANZA_SIZE }], users: [['alice', 'pw-alice']] });
});

after(async () => {
  await server.dispose();
});

/**
 * Sends `input` on a new connection (after `setup`, if any) and returns the
 * stream error condition the server closed the stream with.
 */
async function provoke(input: string, setup?: (raw: RawConnection) => Promise<unknown>): Promise<string | undefined> {
  const raw = await RawConnection.open(server.port);
  try {
    if (setup !== undefined) await setup(raw);
    raw.send(input);
    const text = await raw.untilClosed();
    // RFC 6120 §4.9.1.1: the error, then the closing stream tag.
    assert.match(text, /<\/stream:error><\/stream:stream>$/);
    return streamErrorCondition(text);
  } finally {
    raw.destroy();
  }
}

/** Someone else can still log in and get an answer. */
async function stillServes(): Promise<void> {
  const c = await connect(server, 'alice', 'pw-alice');
  await c.close();
}

const open = () => streamHeader();
const features = (raw: RawConnection) => raw.openStream();

test('mismatched tags end the stream with not-well-formed', async () => {
  assert.equal(await provoke('<message><body>hi</message>', features), 'not-well-formed');
  await stillServes();
});

test('a DOCTYPE ends the stream with restricted-xml', async () => {
  assert.equal(await provoke(`<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x "y">]>${open().slice("<?xml version='1.0'?>".length)}`), 'restricted-xml');
  await stillServes();
});

test('a comment ends the stream with restricted-xml', async () => {
  assert.equal(await provoke('<!-- a comment -->', features), 'restricted-xml');
  await stillServes();
});

test('a processing instruction ends the stream with restricted-xml', async () => {
  assert.equal(await provoke("<?php echo 'hi'; ?>", features), 'restricted-xml');
  await stillServes();
});

test(
  'a stanza larger than max_stanza_size ends the stream with policy-violation',
  async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.login('alice', 'pw-alice', 'big');
      // A ping right behind it: an answer means the big stanza was accepted.
      raw.send(`<message to='alice@localhost' type='chat'><body>${'x'.repeat(MAX_STANZA_SIZE + 100)}</body></message>`);
      raw.send("<iq type='get' id='after-big' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      // Wait for the close itself: the stream ends before any answer could come.
      const outcome = await raw.untilClosed();
      assert.doesNotMatch(outcome, /id=["']after-big["']/, 'the server accepted a stanza larger than max_stanza_size');
      assert.match(outcome, /<\/stream:error><\/stream:stream>$/);
      assert.equal(streamErrorCondition(outcome), 'policy-violation');
    } finally {
      raw.destroy();
    }
    await stillServes();
  },
);

test('a stanza just under max_stanza_size is accepted', async () => {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.login('alice', 'pw-alice', 'fits');
    const body = 'y'.repeat(MAX_STANZA_SIZE - 200);
    raw.send(`<message to='alice@localhost/fits' id='fits1' type='chat'><body>${body}</body></message>`);
    const echoed = await raw.waitFor('</message>');
    assert.match(echoed, new RegExp(`<body>${body}</body>`));
  } finally {
    raw.destroy();
  }
});

test('a message before authentication ends the stream with not-authorized', async () => {
  assert.equal(await provoke("<message to='alice@localhost' type='chat'><body>hi</body></message>", features), 'not-authorized');
  await stillServes();
});

test('a stream to a domain the server does not serve ends with host-unknown', async () => {
  assert.equal(await provoke(streamHeader('nosuch.example')), 'host-unknown');
  await stillServes();
});

test('a stream in the wrong content namespace ends with invalid-namespace', async () => {
  assert.equal(await provoke(streamHeader('localhost', `xmlns='jabber:server' xmlns:stream='${NS_STREAM}' version='1.0'`)), 'invalid-namespace');
  await stillServes();
});

test('a stream element in the wrong namespace ends with invalid-namespace', async () => {
  assert.equal(await provoke(streamHeader('localhost', `xmlns='${NS_CLIENT}' xmlns:stream='urn:example:not-streams' version='1.0'`)), 'invalid-namespace');
  await stillServes();
});
