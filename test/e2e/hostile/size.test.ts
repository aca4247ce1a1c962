// Stanza size: max_stanza_size after authentication, a much smaller
// max_stanza_size_before_auth and max_elements_before_auth before it; an
// element that never closes is stopped once the limit is passed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { NS_SASL, RawConnection, closedWith, startHostile, stillServes, streamErrorCondition } from './setup.ts';

const PW = 'pw-alice-2';
const MAX = 32_768;
const PRE_AUTH = 8192;

let server: Petrel;
before(async () => {
  // max_stanza_size_before_auth and max_elements_before_auth keep their defaults (8192, 16).
  server = await startHostile({ listener: { max_stanza_size: MAX }, users: [['alice', PW]] });
});
after(async () => {
  await server.dispose();
});

/** Writes `chunk` every few milliseconds until the server closes the connection; the bytes written by then. */
async function trickle(raw: RawConnection, chunk: string, maxBytes: number): Promise<number> {
  let sent = 0;
  while (!raw.isClosed && sent < maxBytes) {
    raw.send(chunk);
    sent += Buffer.byteLength(chunk);
    await new Promise((r) => setTimeout(r, 2));
  }
  return sent;
}

test('a stanza over max_stanza_size sent in one piece ends the stream with policy-violation', async () => {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.login('alice', PW, 'big');
    raw.send(`<message to='alice@localhost' type='chat'><body>${'x'.repeat(MAX + 10)}</body></message>`);
    raw.send("<iq type='get' id='after-big' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    const said = await closedWith(raw);
    assert.equal(streamErrorCondition(said), 'policy-violation');
    assert.doesNotMatch(said, /after-big/, 'nothing after the big stanza is handled');
  } finally {
    raw.destroy();
  }
});

test('a stanza just under max_stanza_size is delivered', async () => {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.login('alice', PW, 'fits');
    const body = 'y'.repeat(MAX - 200);
    raw.send(`<message to='alice@localhost/fits' type='chat' id='fits'><body>${body}</body></message>`);
    await raw.waitFor(/id=["']fits["'][^>]*>[^]*?<\/message>/);
  } finally {
    raw.destroy();
  }
});

test('an element that never closes is stopped once max_stanza_size is passed, not when it ends', async () => {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.login('alice', PW, 'endless');
    raw.send("<message to='alice@localhost' type='chat'><body>");
    const sent = await trickle(raw, 'z'.repeat(1024), 10 * MAX);
    await closedWith(raw);
    assert.equal(streamErrorCondition(raw.data), 'policy-violation');
    // Closed within a socket read (64 KiB) of the limit, however much more the client would send.
    assert.ok(sent < MAX + 128 * 1024, `${sent} bytes were accepted before the stream ended`);
  } finally {
    raw.destroy();
  }
});

test('before authentication a stanza over max_stanza_size_before_auth ends the stream with policy-violation', async () => {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.openStream();
    raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${'A'.repeat(PRE_AUTH + 4)}</auth>`);
    const said = await closedWith(raw);
    assert.equal(streamErrorCondition(said), 'policy-violation');
    assert.doesNotMatch(said, /<failure/, 'the oversized auth was never handed to SASL');
  } finally {
    raw.destroy();
  }
});

test('before authentication an element that never closes is stopped at max_stanza_size_before_auth', async () => {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.openStream();
    raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>`);
    const sent = await trickle(raw, 'B'.repeat(512), 20 * PRE_AUTH);
    await closedWith(raw);
    assert.equal(streamErrorCondition(raw.data), 'policy-violation');
    assert.ok(sent < PRE_AUTH + 64 * 1024, `${sent} bytes were accepted before the stream ended`);
  } finally {
    raw.destroy();
  }
});

test('before authentication an oversized stream header ends the stream with policy-violation', async () => {
  const raw = await RawConnection.open(server.port);
  try {
    raw.send(`<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' junk='${'j'.repeat(PRE_AUTH)}'>`);
    const said = await closedWith(raw);
    assert.equal(streamErrorCondition(said), 'policy-violation');
    assert.doesNotMatch(said, /<stream:features>/);
  } finally {
    raw.destroy();
  }
});

test('before authentication a small stanza with more than max_elements_before_auth elements ends the stream', async () => {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.openStream();
    raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${'<x/>'.repeat(20)}</auth>`);
    const said = await closedWith(raw);
    assert.equal(streamErrorCondition(said), 'policy-violation');
    assert.match(said, /too many elements/);
  } finally {
    raw.destroy();
  }
});

test('after authentication the larger limit applies: a 16 KiB stanza is fine', async () => {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.login('alice', PW, 'mid');
    raw.send(`<message to='alice@localhost/mid' type='chat' id='mid'><body>${'m'.repeat(16 * 1024)}</body></message>`);
    await raw.waitFor(/id=["']mid["']/);
  } finally {
    raw.destroy();
  }
  await stillServes(server, 'alice', PW);
});
