// Clients that stop reading: once more than max_output_buffer bytes would
// wait for one (others' traffic fills only half of it: past that their
// stanzas come back to them), or nothing could be written to it for
// send_timeout, it is disconnected; the messages still waiting in the
// server, and all sent to it afterwards, go to offline storage and arrive
// when the user comes back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LogLine, Petrel } from '../helpers/server.ts';
import { RawConnection, drainOrClose, startHostile } from './setup.ts';

const ALICE = 'pw-alice-6';
const BOB = 'pw-bob-6';
const BODY = 'q'.repeat(4000);
/**
 * Sends messages with 4 KB bodies from `from` to `to` as fast as the server
 * reads them, until `stop()` is true or `limit` bytes are sent; the number sent.
 */
async function flood(from: RawConnection, to: string, prefix: string, stop: () => boolean, limit: number): Promise<number> {
  let n = 0;
  let bytes = 0;
  while (!stop() && bytes < limit) {
    let batch = '';
    for (let i = 0; i < 16; i++) batch += `<message to='${to}' type='chat' id='${prefix}${++n}'><body>${BODY}</body></message>`;
    bytes += batch.length;
    if (!from.socket.write(batch)) await drainOrClose(from);
  }
  return n;
}

/** Logs in as bob, announces presence, and stops reading from the socket. */
async function stalledBob(server: Petrel, resource: string): Promise<RawConnection> {
  const bob = await RawConnection.open(server.port);
  await bob.login('bob', BOB, resource);
  bob.send('<presence/>');
  await bob.waitFor(/<presence[^>]*\/>|<\/presence>/);
  bob.socket.pause();
  return bob;
}

/**
 * Comes back as bob and counts the offline messages (those with a delay)
 * until `last`, stored after all the others, has arrived.
 */
async function collectOffline(server: Petrel, last: string): Promise<{ delayed: number; ids: Set<string> }> {
  const bob = await RawConnection.open(server.port);
  try {
    await bob.login('bob', BOB, 'back');
    bob.send('<presence/>');
    // Polled rather than matched on every chunk: megabytes arrive here.
    const deadline = performance.now() + 20_000;
    while (!bob.data.includes(`id='${last}'`) && !bob.data.includes(`id="${last}"`)) {
      if (performance.now() > deadline || bob.isClosed) throw new Error(`${last} did not arrive (${bob.data.length} characters received)`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const ids = new Set<string>();
    let delayed = 0;
    for (const m of bob.data.matchAll(/<message[^>]*\bid=["']([^"']+)["'][^]*?<\/message>/g)) {
      if (m[0].includes('urn:xmpp:delay')) {
        delayed++;
        ids.add(m[1]!);
      }
    }
    return { delayed, ids };
  } finally {
    bob.destroy();
  }
}

async function sendAfter(alice: RawConnection, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 1; i <= count; i++) {
    ids.push(`late${i}`);
    alice.send(`<message to='bob@localhost' type='chat' id='late${i}'><body>sent after the disconnect</body></message>`);
  }
  // A round trip through the server: everything above has been routed.
  alice.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
  await alice.waitFor(/id=["']sync["']/);
  return ids;
}

describe('max_output_buffer', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      listener: { max_output_buffer: 65_536, send_timeout: 'infinity' },
      offlineMax: 100_000,
      offline: { max_bytes: 1_073_741_824 },
      users: [['alice', ALICE], ['bob', BOB]],
    });
  });
  after(async () => {
    await server.dispose();
  });

  test("another user's flood to a client that stops reading comes back to the sender; once the client's own output passes the cap it is disconnected, and the messages waiting for it go offline", { timeout: 60_000 }, async () => {
    const bob = await stalledBob(server, 'stalled');
    const alice = await RawConnection.open(server.port);
    let kicked: LogLine | undefined;
    try {
      await alice.login('alice', ALICE, 'flooder');
      const seen = server.waitForLog((l) => l.what === 'c2s_slow_reader', 60_000).then((l) => (kicked = l));
      // Alice fills the connection's buffers; past them her messages come back.
      const sent = await flood(alice, 'bob@localhost', 'f', () => alice.data.includes('<resource-constraint'), 96 * 1024 * 1024);
      assert.match(alice.data, /<resource-constraint/);
      assert.equal(kicked, undefined, "bob is not disconnected for alice's traffic");
      // Bob's own requests, whose answers he does not read, take him past the cap.
      let pings = 0;
      while (kicked === undefined && pings < 200_000) {
        let batch = '';
        for (let i = 0; i < 100; i++) batch += `<iq type='get' id='p${++pings}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`;
        if (!bob.socket.write(batch)) await drainOrClose(bob);
        await new Promise((r) => setImmediate(r));
      }
      await seen;
      const line = kicked as LogLine | undefined;
      assert.ok(line !== undefined, `no disconnect after ${pings} pings`);
      assert.equal(line.jid, 'bob@localhost/stalled');
      assert.match(String(line.reason), /more than 65536 bytes wait to be sent/);
      // Alice's messages that the system had taken count as delivered; any still waiting were routed again.
      const rerouted = Number(line.rerouted);

      const late = await sendAfter(alice, 5);
      const { delayed, ids } = await collectOffline(server, late.at(-1)!);
      // Everything waiting in the server at the disconnect, and everything sent after it.
      assert.ok(delayed >= rerouted + late.length, `${delayed} offline messages, expected at least ${rerouted} + ${late.length}`);
      for (const id of late) assert.ok(ids.has(id));
      assert.ok(sent > 0);

      // The flooder itself was never disturbed.
      alice.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await alice.waitFor(/id=["']alive["']/);
    } finally {
      alice.destroy();
      bob.destroy();
    }
  });
});

describe('send_timeout', () => {
  let server: Petrel;
  const SEND_TIMEOUT = 1500;
  before(async () => {
    server = await startHostile({
      listener: { max_output_buffer: 256 * 1024 * 1024, send_timeout: SEND_TIMEOUT },
      offlineMax: 100_000,
      offline: { max_bytes: 1_073_741_824 },
      users: [['alice', ALICE], ['bob', BOB]],
    });
  });
  after(async () => {
    await server.dispose();
  });

  test('a client that reads nothing for send_timeout while output waits is disconnected, and its messages go offline', { timeout: 60_000 }, async () => {
    const bob = await stalledBob(server, 'asleep');
    const alice = await RawConnection.open(server.port);
    let kicked: LogLine | undefined;
    try {
      await alice.login('alice', ALICE, 'sender');
      const seen = server.waitForLog((l) => l.what === 'c2s_slow_reader', 60_000).then((l) => (kicked = l));
      // Enough to fill the kernel's buffers of the connection and leave output waiting in the server; then silence.
      await flood(alice, 'bob@localhost', 'g', () => kicked !== undefined, 16 * 1024 * 1024);
      await seen;
      assert.equal(kicked!.jid, 'bob@localhost/asleep');
      assert.match(String(kicked!.reason), new RegExp(`nothing could be sent for ${SEND_TIMEOUT} ms`));
      const rerouted = Number(kicked!.rerouted);
      assert.ok(rerouted > 0);
      const late = await sendAfter(alice, 3);
      const { delayed } = await collectOffline(server, late.at(-1)!);
      assert.ok(delayed >= rerouted + late.length, `${delayed} offline messages, expected at least ${rerouted} + ${late.length}`);
    } finally {
      alice.destroy();
      bob.destroy();
    }
  });
});
