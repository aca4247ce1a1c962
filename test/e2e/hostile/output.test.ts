// What the server writes is bounded, not only what it reads, and what others
// send cannot get a reading client dropped as a slow reader:
// - escaping can make a stanza six times longer on output than it was on
//   input (an apostrophe in an attribute is written `&apos;`); a stanza from
//   another user longer than max_output_buffer once serialised comes back to
//   its sender with resource-constraint instead of being written;
// - while a client's output waits, others' stanzas may fill half of
//   max_output_buffer and one sender a quarter; past that they come back to
//   their sender, and the client, which reads, stays connected and still
//   gets a third user's messages;
// - a user whose offline store holds far more than max_output_buffer logs in
//   and drains it, every message once, however slowly the client reads.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { RawConnection, drainOrClose, startHostile, stillServes } from './setup.ts';

const PW = { alice: 'pw-alice-out', bob: 'pw-bob-out', carol: 'pw-carol-out' };
const CAP = 65_536;

/** Reads `raw` at a bounded pace: after each chunk the socket rests `ms`, as a client on a slow link would. */
function readSlowly(raw: RawConnection, ms: number): void {
  const socket = raw.socket;
  socket.on('data', () => {
    socket.pause();
    setTimeout(() => socket.resume(), ms).unref();
  });
}

async function ping(raw: RawConnection, id: string): Promise<void> {
  raw.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  await raw.waitFor(new RegExp(`id=["']${id}["']`), 30_000);
}

/** A message whose `x` attribute, all apostrophes, is written six times longer than it was read. */
function expanding(to: string, id: string, apostrophes: number): string {
  return `<message to='${to}' type='chat' id='${id}'><body>hi</body><data xmlns='urn:example:blob' x="${"'".repeat(apostrophes)}"/></message>`;
}

describe('output bounds', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      listener: { max_output_buffer: CAP },
      offlineMax: 100_000,
      offline: { max_bytes: 1_073_741_824 },
      users: [['alice', PW.alice], ['bob', PW.bob], ['carol', PW.carol]],
    });
  });
  after(async () => {
    await server.dispose();
  });

  test("a message that escaping makes longer than max_output_buffer comes back to its sender with resource-constraint and is not written", { timeout: 60_000 }, async () => {
    const bob = await RawConnection.open(server.port);
    const alice = await RawConnection.open(server.port);
    try {
      await bob.login('bob', PW.bob, 'reader');
      await alice.login('alice', PW.alice, 'writer');
      // 20 000 characters read, 120 000 to write.
      alice.send(expanding('bob@localhost/reader', 'huge', 20_000));
      const bounce = await alice.waitFor(/<message[^>]*type=["']error["'][^]*?<\/message>/, 10_000);
      assert.match(bounce, /id=["']huge["']/);
      assert.match(bounce, /<resource-constraint/);
      alice.send("<message to='bob@localhost/reader' type='chat' id='small'><body>still there?</body></message>");
      await bob.waitFor(/id=["']small["']/);
      assert.doesNotMatch(bob.data, /id=["']huge["']/);
      await ping(bob, 'bob-alive');
    } finally {
      alice.destroy();
      bob.destroy();
    }
  });

  test("a client that reads slowly is not dropped for another user's flood of expanding messages, and a third user's messages still reach it", { timeout: 120_000 }, async () => {
    const bob = await RawConnection.open(server.port);
    const alice = await RawConnection.open(server.port);
    const carol = await RawConnection.open(server.port);
    try {
      await bob.login('bob', PW.bob, 'slow');
      await alice.login('alice', PW.alice, 'flood');
      await carol.login('carol', PW.carol, 'friend');
      const drops = () => server.logs.filter((l) => l.what === 'c2s_slow_reader');
      // Bob reads, but far slower than alice's messages grow on output.
      readSlowly(bob, 40);
      const stanza = (i: number) => expanding('bob@localhost/slow', `f${i}`, 2000);
      let sent = 0;
      let carolSent = 0;
      const deadline = performance.now() + 8000;
      while (performance.now() < deadline && drops().length === 0) {
        let batch = '';
        for (let i = 0; i < 32; i++) batch += stanza(++sent);
        if (!alice.socket.write(batch)) await drainOrClose(alice);
        if (sent % 640 === 0) carol.send(`<message to='bob@localhost/slow' type='chat' id='carol${++carolSent}'><body>hello from carol</body></message>`);
        await new Promise((r) => setImmediate(r));
      }
      await ping(alice, 'alice-sync');
      await ping(carol, 'carol-sync');
      // Bob, who reads, is still connected, and answers.
      await ping(bob, 'bob-alive');
      assert.deepEqual(drops(), [], 'nobody was dropped as a slow reader');
      assert.match(alice.data, /<resource-constraint/, "alice's flood came back to her");
      assert.ok(carolSent > 0);
      // Carol's were written in the order they came, before bob's answer to his ping.
      for (let i = 1; i <= carolSent; i++) assert.match(bob.data, new RegExp(`id=["']carol${i}["']`));
      assert.doesNotMatch(carol.data, /<resource-constraint/, "carol's messages were never refused");
    } finally {
      alice.destroy();
      carol.destroy();
      bob.destroy();
    }
  });

  test('a user whose offline store holds many times max_output_buffer logs in and drains it, every message once', { timeout: 180_000 }, async () => {
    const COUNT = 1500;
    const alice = await RawConnection.open(server.port);
    try {
      await alice.login('alice', PW.alice, 'offline-writer');
      const body = 'o'.repeat(10_000);
      for (let i = 1; i <= COUNT; i++) {
        if (!alice.socket.write(`<message to='carol@localhost' type='chat' id='off${i}'><body>${body}</body></message>`)) await drainOrClose(alice);
      }
      await ping(alice, 'stored');
    } finally {
      alice.destroy();
    }
    // The messages reach the store through its own queue; give it a moment to take the last.
    await new Promise((r) => setTimeout(r, 500));
    const carol = await RawConnection.open(server.port);
    try {
      await carol.login('carol', PW.carol, 'back');
      readSlowly(carol, 20);
      carol.send('<presence/>');
      // A client that also talks while it drains: its own answers must not push it over the cap.
      let n = 0;
      const t0 = performance.now();
      while (!carol.data.includes(`id='off${COUNT}'`) && !carol.data.includes(`id="off${COUNT}"`)) {
        assert.ok(!carol.isClosed, `carol was disconnected after ${carol.data.length} characters`);
        assert.ok(performance.now() - t0 < 150_000, 'the offline messages did not all arrive');
        await ping(carol, `talk${++n}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const ids = [...carol.data.matchAll(/<message[^>]*\bid=["'](off\d+)["']/g)].map((m) => m[1]!);
      assert.equal(ids.length, COUNT, 'each stored message arrived exactly once');
      assert.equal(new Set(ids).size, COUNT);
    } finally {
      carol.destroy();
    }
    assert.deepEqual(server.logs.filter((l) => l.what === 'c2s_slow_reader' && String(l.jid).startsWith('carol@')), []);
    // Nothing is left: the next login gets no offline message.
    const again = await RawConnection.open(server.port);
    try {
      await again.login('carol', PW.carol, 'again');
      again.send('<presence/>');
      await ping(again, 'after');
      await new Promise((r) => setTimeout(r, 300));
      assert.doesNotMatch(again.data, /id=["']off\d+["']/);
    } finally {
      again.destroy();
    }
    await stillServes(server, 'bob', PW.bob);
  });
});
