// Stream management against clients that misbehave: one that stops reading
// with stream management on is dropped like any slow reader, and every
// message it did not acknowledge goes to offline storage exactly once (none
// lost, none doubled by the two mechanisms that route undelivered messages
// again); one that leaves the stream unbound retrying <resume/> does not
// stay for longer than state_timeout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LogLine, Petrel } from '../helpers/server.ts';
import { RawConnection, closedWith, drainOrClose, startHostile, streamErrorCondition } from './setup.ts';

const ALICE = 'pw-alice-sm';
const BOB = 'pw-bob-sm';
const BODY = 'w'.repeat(4000);

describe('stream management and slow readers', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      listener: { max_output_buffer: 65_536, send_timeout: 'infinity', state_timeout: 1500 },
      offlineMax: 100_000,
      offline: { max_bytes: 1_073_741_824 },
      users: [['alice', ALICE], ['bob', BOB]],
      // No cap on the unacknowledged stanzas and no <r/>: the slow-reader limit is what ends the session.
      extraToml: '[modules.mod_stream_management]\n  buffer_max = "infinity"\n  buffer_max_bytes = "infinity"\n  ack = false\n',
    });
  });
  after(async () => {
    await server.dispose();
  });

  test('a slow reader with stream management is dropped and each message it did not acknowledge reaches offline storage once', { timeout: 90_000 }, async () => {
    const bob = await RawConnection.open(server.port);
    await bob.login('bob', BOB, 'stalled');
    bob.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    await bob.waitFor(/<enabled[^>]*\/>/);
    bob.send('<presence/>');
    await bob.waitFor(/<presence[^>]*\/>|<\/presence>/);
    bob.socket.pause();

    const alice = await RawConnection.open(server.port);
    await alice.login('alice', ALICE, 'flooder');
    let kicked: LogLine | undefined;
    const seen = server.waitForLog((l) => l.what === 'c2s_slow_reader', 90_000).then((l) => (kicked = l));
    // Alice fills what bob's connection may hold of others' traffic; past it her messages come back to her.
    let n = 0;
    while (kicked === undefined && n < 20_000 && !alice.data.includes('<resource-constraint')) {
      let batch = '';
      for (let i = 0; i < 16; i++) batch += `<message to='bob@localhost' type='chat' id='s${++n}'><body>${BODY}</body></message>`;
      if (!alice.socket.write(batch)) await drainOrClose(alice);
      await new Promise((r) => setImmediate(r));
    }
    // Bob's own requests, whose answers he does not read, take him past the cap.
    for (let pings = 0; kicked === undefined && pings < 400_000; ) {
      let batch = '';
      for (let i = 0; i < 100; i++) batch += `<iq type='get' id='p${++pings}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`;
      if (!bob.socket.write(batch)) await drainOrClose(bob);
      await new Promise((r) => setImmediate(r));
    }
    await seen;
    assert.equal(kicked!.jid, 'bob@localhost/stalled');
    // A round trip: every message above has been routed, and every bounce has come back.
    alice.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    await alice.waitFor(/id=["']sync["']/);
    const bounced = new Set<string>();
    for (const m of alice.data.matchAll(/<message[^>]*\bid=["'](s\d+)["'][^>]*>/g)) if (/type=["']error["']/.test(m[0])) bounced.add(m[1]!);
    alice.destroy();
    bob.destroy();

    const back = await RawConnection.open(server.port);
    try {
      await back.login('bob', BOB, 'back');
      back.send('<presence/>');
      let lastKept = n;
      while (bounced.has(`s${lastKept}`)) lastKept--;
      const last = `s${lastKept}`;
      const deadline = performance.now() + 30_000;
      while (!back.data.includes(`id="${last}"`) && !back.data.includes(`id='${last}'`)) {
        if (performance.now() > deadline || back.isClosed) throw new Error(`${last} did not arrive (${back.data.length} characters received)`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const counts = new Map<string, number>();
      for (const m of back.data.matchAll(/<message[^>]*\bid=["'](s\d+)["']/g)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
      const missing: string[] = [];
      const doubled: string[] = [];
      for (let i = 1; i <= n; i++) {
        const c = counts.get(`s${i}`) ?? 0;
        // A message that came back to alice was never kept for bob: it must not arrive either.
        if (bounced.has(`s${i}`)) {
          if (c > 0) doubled.push(`s${i}`);
          continue;
        }
        if (c === 0) missing.push(`s${i}`);
        if (c > 1) doubled.push(`s${i}`);
      }
      assert.deepEqual({ missing: missing.slice(0, 10), doubled: doubled.slice(0, 10) }, { missing: [], doubled: [] }, `of ${n} messages`);
    } finally {
      back.destroy();
    }
  });

  test('failed <resume/> attempts do not keep an unbound stream past state_timeout', { timeout: 30_000 }, async () => {
    const raw = await RawConnection.open(server.port);
    await raw.openStream();
    raw.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0alice\0${ALICE}`).toString('base64')}</auth>`);
    await raw.waitFor('<success');
    await raw.openStream();
    // Retries every 300 ms, far more often than state_timeout (1500 ms), until the server closes.
    let tries = 0;
    const timer = setInterval(() => {
      if (raw.isClosed) return;
      tries++;
      raw.send(`<resume xmlns='urn:xmpp:sm:3' previd='guess${tries}' h='0'/>`);
    }, 300);
    try {
      const text = await closedWith(raw, 20_000);
      assert.equal(streamErrorCondition(text), 'connection-timeout');
      assert.match(text, /<item-not-found/);
    } finally {
      clearInterval(timer);
    }
  });
});

describe('max_resumable_sessions', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      users: [['alice', ALICE], ['bob', BOB]],
      extraToml: '[modules.mod_stream_management]\n  max_resumable_sessions = 1\n',
    });
  });
  after(async () => {
    await server.dispose();
  });

  /** Logs in, enables resumable stream management, drops the connection; the resumption id. */
  async function dropResumable(user: string, password: string): Promise<string> {
    const raw = await RawConnection.open(server.port);
    await raw.login(user, password, 'kept');
    raw.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    const id = /id=['"]([^'"]+)['"]/.exec(await raw.waitFor(/<enabled[^>]*\/>/))![1]!;
    const before = server.logs.filter((l) => l.what === 'c2s_session_detached').length;
    raw.destroy();
    const deadline = performance.now() + 10_000;
    while (server.logs.filter((l) => l.what === 'c2s_session_detached').length === before) {
      if (performance.now() > deadline) throw new Error('the session was not kept');
      await new Promise((r) => setTimeout(r, 20));
    }
    return id;
  }

  async function resume(user: string, password: string, id: string): Promise<string> {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      raw.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`);
      await raw.waitFor('<success');
      await raw.openStream();
      raw.send(`<resume xmlns='urn:xmpp:sm:3' previd='${id}' h='0'/>`);
      return await raw.waitFor(/<resumed[^>]*\/>|<\/failed>/);
    } finally {
      raw.destroy();
    }
  }

  test('past max_resumable_sessions sessions kept without a connection, the one kept longest ends and can no longer be resumed', { timeout: 30_000 }, async () => {
    const first = await dropResumable('alice', ALICE);
    const second = await dropResumable('bob', BOB);
    assert.match(await resume('alice', ALICE, first), /<item-not-found/);
    assert.match(await resume('bob', BOB, second), /<resumed /);
  });
});
