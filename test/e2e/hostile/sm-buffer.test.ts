// Stream management buffers bounded by bytes, not only by stanzas: a session
// past buffer_max_bytes ends as one past buffer_max does (resource-constraint,
// its unacknowledged messages routed again, none lost), and the sessions kept
// for resumption together hold at most max_resumable_bytes: past it, the one
// holding the most is given up as at resume_timeout (its messages go to
// offline storage, a resumption of it fails with item-not-found).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RawConnection, closedWith, hostileServerFor, streamErrorCondition } from './setup.ts';

const BOB = 'pw-bob-smb';
const CAROL = 'pw-carol-smb';
const DAVE = 'pw-dave-smb';
/** About 4 KB once serialised. */
const BODY = 'x'.repeat(4000);

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('buffer_max_bytes', () => {
  const box = hostileServerFor({
    users: [['bob', BOB], ['carol', CAROL]],
    // buffer_max (100) is far away: only the bytes can end the session.
    extraToml: '[modules.mod_stream_management]\n  buffer_max_bytes = 20000\n  ack = false\n',
  });

  test('a client that never acknowledges more than buffer_max_bytes gets resource-constraint, and none of the messages is lost', { timeout: 30_000 }, async () => {
    const carol = await RawConnection.open(box.server.port);
    await carol.login('carol', CAROL, 'silent');
    carol.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    await carol.waitFor(/<enabled[^>]*\/>/);
    const bob = await RawConnection.open(box.server.port);
    await bob.login('bob', BOB, 'sender');
    // 8 messages of ~4 KB: 32 KB, past 20000 bytes at the sixth, far from 100 stanzas.
    for (let i = 0; i < 8; i++) bob.send(`<message to='carol@localhost/silent' type='chat' id='m${i}'><body>b${i}-${BODY}</body></message>`);
    const text = await closedWith(carol, 10_000);
    assert.equal(streamErrorCondition(text), 'resource-constraint');
    assert.match(text, /bytes of stanzas not acknowledged/);
    assert.ok(box.server.logs.some((l) => l.what === 'sm_buffer_full' && l.jid === 'carol@localhost/silent'));
    // Every message reaches carol's next login: those the first session was
    // given again from offline storage, those after it ended too.
    const later = await RawConnection.open(box.server.port);
    await later.login('carol', CAROL, 'later');
    later.send('<presence/>');
    await later.waitFor('<body>b7-', 10_000);
    for (let i = 0; i < 8; i++) assert.ok(later.data.includes(`<body>b${i}-`), `message ${i} reached carol`);
    later.destroy();
    bob.destroy();
  });
});

describe('max_resumable_bytes', () => {
  const box = hostileServerFor({
    users: [['bob', BOB], ['carol', CAROL], ['dave', DAVE]],
    extraToml: '[modules.mod_stream_management]\n  max_resumable_bytes = 50000\n',
  });

  async function dropResumable(user: string, password: string): Promise<string> {
    const raw = await RawConnection.open(box.server.port);
    await raw.login(user, password, 'kept');
    raw.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    const id = /id=['"]([^'"]+)['"]/.exec(await raw.waitFor(/<enabled[^>]*\/>/))![1]!;
    const before = box.server.logs.filter((l) => l.what === 'c2s_session_detached').length;
    raw.destroy();
    await until(() => box.server.logs.filter((l) => l.what === 'c2s_session_detached').length > before, 'the session was kept');
    return id;
  }

  async function resume(user: string, password: string, id: string): Promise<{ raw: RawConnection; answer: string }> {
    const raw = await RawConnection.open(box.server.port);
    await raw.openStream();
    raw.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`);
    await raw.waitFor('<success');
    await raw.openStream();
    raw.send(`<resume xmlns='urn:xmpp:sm:3' previd='${id}' h='0'/>`);
    return { raw, answer: await raw.waitFor(/<resumed[^>]*\/>|<\/failed>/) };
  }

  test('past max_resumable_bytes held by sessions kept for resumption, the one holding the most is given up and its messages go offline', { timeout: 60_000 }, async () => {
    const carolId = await dropResumable('carol', CAROL);
    const daveId = await dropResumable('dave', DAVE);
    const bob = await RawConnection.open(box.server.port);
    await bob.login('bob', BOB, 'sender');
    // Carol's kept session gets ~32 KB, then dave's ~32 KB: together past 50000 bytes.
    for (let i = 0; i < 8; i++) bob.send(`<message to='carol@localhost/kept' type='chat' id='c${i}'><body>c${i}-${BODY}</body></message>`);
    bob.send("<iq type='get' id='sync1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    await bob.waitFor(/id=["']sync1["']/);
    for (let i = 0; i < 8; i++) bob.send(`<message to='dave@localhost/kept' type='chat' id='d${i}'><body>d${i}-${BODY}</body></message>`);
    bob.send("<iq type='get' id='sync2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    await bob.waitFor(/id=["']sync2["']/);
    await until(() => box.server.logs.some((l) => l.what === 'sm_resumable_bytes_exceeded'), 'a kept session was given up');
    const gaveUp = box.server.logs.filter((l) => l.what === 'sm_resumable_bytes_exceeded');
    assert.equal(gaveUp.length, 1, 'one session was given up');
    assert.equal(gaveUp[0]!.jid, 'carol@localhost/kept', 'the one holding the most');
    assert.ok((gaveUp[0]!.max_resumable_bytes as number) === 50000);

    // Carol's session is gone: her resumption fails, her messages wait offline.
    const c = await resume('carol', CAROL, carolId);
    assert.match(c.answer, /<item-not-found/);
    c.raw.destroy();
    const carol = await RawConnection.open(box.server.port);
    await carol.login('carol', CAROL, 'later');
    carol.send('<presence/>');
    await carol.waitFor('<body>c7-', 10_000);
    for (let i = 0; i < 8; i++) assert.ok(carol.data.includes(`<body>c${i}-`), `message c${i} reached carol`);
    carol.destroy();

    // Dave's session, under the bound on its own, resumes with all it was sent.
    const d = await resume('dave', DAVE, daveId);
    assert.match(d.answer, /<resumed /);
    await d.raw.waitFor('<body>d7-', 10_000);
    for (let i = 0; i < 8; i++) assert.ok(d.raw.data.includes(`<body>d${i}-`), `message d${i} resent to dave`);
    d.raw.destroy();
    bob.destroy();
  });
});
