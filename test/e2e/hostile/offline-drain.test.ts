// Handing over a large offline store never holds the server's event loop:
// an attacker fills a victim's store with messages that are expensive to
// read back (bodies of escaped `<`, each written `&lt;`, close to
// max_stanza_size), and while the victim drains them, another user's
// requests are still answered. Asserted by order, never by time: a message
// the innocent user sends the victim after its ping result reaches the
// victim's connection before the last offline message does, which cannot
// happen if the whole drain runs in one turn of the event loop; and the
// victim receives every stored message once, in order.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { RawConnection, drainOrClose, startHostile, stillServes } from './setup.ts';

const PW = { mallory: 'pw-mallory-drain', victim: 'pw-victim-drain', bob: 'pw-bob-drain' };
/** Stored messages: enough that handing them over takes many turns. */
const COUNT = 40;
/** 63 000 escaped `<`: 252 000 characters of body, within the default max_stanza_size (262 144). */
const BODY = '&lt;'.repeat(63_000);

/**
 * The ids of the messages `raw` receives, in order, found chunk by chunk (the
 * whole text grows to megabytes: scanning it again at each chunk would cost
 * the test more than the server). `wait(n)` resolves once n have arrived.
 */
function messageIds(raw: RawConnection): { ids: string[]; wait(n: number, timeoutMs: number): Promise<void> } {
  const ids: string[] = [];
  const waiters: Array<() => void> = [];
  let carry = '';
  const re = /<message\b[^>]*?\bid=["']([^"']+)["']/g;
  raw.socket.on('data', (chunk: string) => {
    const text = carry + chunk;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      // A match wholly inside the carried tail was counted with the previous chunk.
      if (m.index + m[0].length > carry.length) ids.push(m[1]!);
    }
    // Enough to hold the start of a message tag cut by the chunk's end.
    carry = text.slice(-400);
    for (const w of waiters.slice()) w();
  });
  return {
    ids,
    wait(n, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${ids.length} messages within ${timeoutMs} ms, expected ${n}`));
        }, timeoutMs);
        const check = () => {
          if (ids.length < n) return;
          done();
          resolve();
        };
        const done = () => {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check) >>> 0, 1);
        };
        waiters.push(check);
        check();
      });
    },
  };
}

describe('offline drain', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      users: [['mallory', PW.mallory], ['victim', PW.victim], ['bob', PW.bob]],
      // Room for all of them (10 MB), past the default max_bytes: the drain itself is what is tested.
      offline: { max_bytes: 16_777_216 },
    });
  });
  after(async () => {
    await server.dispose();
  });

  test("a victim draining a store of messages costly to parse does not stall another user's requests; each message arrives once, in order", { timeout: 170_000 }, async () => {
    const mallory = await RawConnection.open(server.port);
    try {
      await mallory.login('mallory', PW.mallory, 'attack');
      for (let i = 1; i <= COUNT; i++) {
        if (!mallory.socket.write(`<message to='victim@localhost' type='chat' id='off${i}'><body>${BODY}</body></message>`)) await drainOrClose(mallory);
      }
      // Answered once the messages before it were routed: each is then queued for the store, ahead of any hand-over.
      mallory.send("<iq type='get' id='stored' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await mallory.waitFor(/id=["']stored["']/, 120_000);
      assert.doesNotMatch(mallory.data, /<message[^>]*type=["']error["']/, 'every message was stored');
    } finally {
      mallory.destroy();
    }

    // Logged in before, so that its login is not part of what it waits for.
    const bob = await RawConnection.open(server.port);
    const victim = await RawConnection.open(server.port);
    try {
      await bob.login('bob', PW.bob, 'innocent');
      await victim.login('victim', PW.victim, 'back');
      const got = messageIds(victim);
      victim.send('<presence/>');
      // The hand-over has begun: the server is draining the store.
      await got.wait(1, 60_000);
      bob.send("<iq type='get' id='innocent' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await bob.waitFor(/<iq[^>]*id=["']innocent["']/, 60_000);
      const atResult = got.ids.length;
      // Written to the victim's connection after the ping result: it arrives among the offline
      // messages only if the server answered while the drain was still going on.
      bob.send("<message to='victim@localhost/back' type='chat' id='marker'><body>still here</body></message>");
      await got.wait(COUNT + 1, 120_000);

      const offline = got.ids.filter((id) => id !== 'marker');
      assert.deepEqual(offline, Array.from({ length: COUNT }, (_, i) => `off${i + 1}`), 'every offline message arrived once, in order');
      const marker = got.ids.indexOf('marker');
      assert.ok(marker >= 0 && marker < COUNT,
        `the innocent's message, sent after its ping result, arrived after ${marker} of the ${COUNT} offline messages: the drain held the event loop`);
      assert.ok(atResult < COUNT, `the innocent's ping result arrived after all ${COUNT} offline messages`);
      assert.ok(!victim.isClosed, 'the victim stayed connected');
    } finally {
      victim.destroy();
      bob.destroy();
    }
    assert.deepEqual(server.logs.filter((l) => l.what === 'c2s_slow_reader'), []);
    // Nothing is left: the next login gets no offline message.
    const again = await RawConnection.open(server.port);
    try {
      await again.login('victim', PW.victim, 'again');
      again.send('<presence/>');
      again.send("<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await again.waitFor(/id=["']after["']/, 30_000);
      assert.doesNotMatch(again.data, /id=["']off\d+["']/);
    } finally {
      again.destroy();
    }
    await stillServes(server, 'bob', PW.bob);
  });
});
