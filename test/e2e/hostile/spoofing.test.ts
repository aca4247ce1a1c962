// Addresses a client may not use: a forged 'from' ends the stream with
// invalid-from (RFC 6120 §8.1.2.1 leaves the choice between that stream
// error and rewriting; Petrel refuses), a malformed 'to' is answered with
// jid-malformed and the session goes on.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { RawConnection, closedWith, startHostile, streamErrorCondition } from './setup.ts';

const ALICE = 'pw-alice-8';
const BOB = 'pw-bob-8';

let server: Petrel;
before(async () => {
  server = await startHostile({ users: [['alice', ALICE], ['bob', BOB]] });
});
after(async () => {
  await server.dispose();
});

for (const [what, from] of [
  ['another user', 'bob@localhost/watch'],
  ["another user's bare JID", 'bob@localhost'],
  ['the server', 'localhost'],
  ['another resource of the same user', 'alice@localhost/other'],
  ['a malformed address', 'alice@@localhost'],
] as const) {
  test(`a stanza whose from names ${what} ends the stream with invalid-from and is not delivered`, async () => {
    const bob = await RawConnection.open(server.port);
    const alice = await RawConnection.open(server.port);
    try {
      await bob.login('bob', BOB, 'watch');
      await alice.login('alice', ALICE, 'spoofer');
      alice.send(`<message from='${from}' to='bob@localhost/watch' type='chat' id='forged'><body>trust me</body></message>`);
      assert.equal(streamErrorCondition(await closedWith(alice)), 'invalid-from');
      // bob gets a later message but never the forged one.
      const carol = await RawConnection.open(server.port);
      try {
        await carol.login('alice', ALICE, 'honest');
        carol.send("<message to='bob@localhost/watch' type='chat' id='honest'><body>hi</body></message>");
        await bob.waitFor(/id=["']honest["']/);
        assert.doesNotMatch(bob.data, /id=["']forged["']/);
      } finally {
        carol.destroy();
      }
    } finally {
      alice.destroy();
      bob.destroy();
    }
  });
}

test("a from equal to the sender's own full or bare JID is accepted", async () => {
  const alice = await RawConnection.open(server.port);
  try {
    const jid = await alice.login('alice', ALICE, 'self');
    alice.send(`<message from='${jid}' to='${jid}' type='chat' id='own-full'><body>1</body></message>`);
    await alice.waitFor(/id=["']own-full["']/);
    alice.send(`<message from='alice@localhost' to='${jid}' type='chat' id='own-bare'><body>2</body></message>`);
    await alice.waitFor(/id=["']own-bare["']/);
  } finally {
    alice.destroy();
  }
});

for (const to of ['@localhost', 'bob@', 'bob@localhost/', 'a@b@c', `${'x'.repeat(2000)}@localhost`, 'bob@local host']) {
  test(`a malformed to (${to.length > 40 ? to.slice(0, 20) + '…' : JSON.stringify(to)}) is answered with jid-malformed and the session survives`, async () => {
    const alice = await RawConnection.open(server.port);
    try {
      await alice.login('alice', ALICE, 'typo');
      alice.send(`<message to='${to}' type='chat' id='bad-to'><body>x</body></message>`);
      const reply = await alice.waitFor(/<message[^>]*id=["']bad-to["'][^]*?<\/message>/);
      assert.match(reply, /type=["']error["']/);
      assert.match(reply, /<jid-malformed /);
      alice.send("<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await alice.waitFor(/id=["']after["']/);
      assert.equal(alice.isClosed, false);
    } finally {
      alice.destroy();
    }
  });
}
