// Per-account limits: [general] max_user_sessions (the oldest session is
// replaced) and mod_offline's max_messages and max_bytes (the next message
// bounces).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { RawConnection, closedWith, startHostile, streamErrorCondition } from './setup.ts';

const ALICE = 'pw-alice-7';
const BOB = 'pw-bob-7';
const CAROL = 'pw-carol-7';
/** Carol's store holds two of the messages below, not three. */
const OFFLINE_MAX_BYTES = 6000;

let server: Petrel;
before(async () => {
  server = await startHostile({ general: { max_user_sessions: 2 }, offlineMax: 3, offline: { max_bytes: OFFLINE_MAX_BYTES }, users: [['alice', ALICE], ['bob', BOB], ['carol', CAROL]] });
});
after(async () => {
  await server.dispose();
});

test('a session past max_user_sessions replaces the oldest, which ends with conflict', async () => {
  const conns: RawConnection[] = [];
  try {
    for (const r of ['one', 'two']) {
      const c = await RawConnection.open(server.port);
      conns.push(c);
      await c.login('alice', ALICE, r);
    }
    const third = await RawConnection.open(server.port);
    conns.push(third);
    await third.login('alice', ALICE, 'three');
    const said = await closedWith(conns[0]!);
    assert.equal(streamErrorCondition(said), 'conflict');
    for (const c of conns.slice(1)) {
      c.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await c.waitFor(/id=["']alive["']/);
    }
  } finally {
    for (const c of conns) c.destroy();
  }
});

test('past max_messages a message to an offline user bounces with resource-constraint; the stored ones are delivered', async () => {
  const alice = await RawConnection.open(server.port);
  try {
    await alice.login('alice', ALICE, 'sender');
    for (let i = 1; i <= 4; i++) alice.send(`<message to='bob@localhost' type='chat' id='off${i}'><body>offline ${i}</body></message>`);
    const bounce = await alice.waitFor(/<message[^>]*id=["']off4["'][^]*?<\/message>/);
    assert.match(bounce, /type=["']error["']/);
    assert.match(bounce, /<resource-constraint /);
    assert.doesNotMatch(alice.data, /id=["']off[123]["'][^>]*type=["']error["']/);
  } finally {
    alice.destroy();
  }
  const bob = await RawConnection.open(server.port);
  try {
    await bob.login('bob', BOB, 'back');
    bob.send('<presence/>');
    for (let i = 1; i <= 3; i++) await bob.waitFor(new RegExp(`id=["']off${i}["']`));
    assert.doesNotMatch(bob.data, /offline 4/);
  } finally {
    bob.destroy();
  }
});

test('past max_bytes, counted as stored (escaped), a message to an offline user bounces with resource-constraint before max_messages is reached; the stored ones are delivered', async () => {
  const alice = await RawConnection.open(server.port);
  // 500 '>' are 2,000 characters once stored as '&gt;': two such messages fit in 6,000, a third does not.
  const body = '>'.repeat(500);
  try {
    await alice.login('alice', ALICE, 'bytes');
    for (let i = 1; i <= 3; i++) alice.send(`<message to='carol@localhost' type='chat' id='big${i}'><body>${body.replace(/>/g, '&gt;')}</body></message>`);
    const bounce = await alice.waitFor(/<message[^>]*id=["']big3["'][^]*?<\/message>/);
    assert.match(bounce, /type=["']error["']/);
    assert.match(bounce, /<resource-constraint /);
    assert.doesNotMatch(alice.data, /id=["']big[12]["'][^>]*type=["']error["']/);
  } finally {
    alice.destroy();
  }
  const carol = await RawConnection.open(server.port);
  try {
    await carol.login('carol', CAROL, 'back');
    carol.send('<presence/>');
    for (let i = 1; i <= 2; i++) await carol.waitFor(new RegExp(`id=["']big${i}["']`));
    carol.send("<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    await carol.waitFor(/id=["']after["']/);
    assert.doesNotMatch(carol.data, /id=["']big3["']/);
  } finally {
    carol.destroy();
  }
});

