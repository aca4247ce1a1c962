// Authentication under attack: failures per connection and per address,
// forged and replayed SCRAM proofs, and stanzas sent before authentication
// or before binding.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { ScramClient } from '../helpers/scram.ts';
import { NS_BIND, NS_SASL, RawConnection, closedWith, startHostile, stillServes, streamErrorCondition } from './setup.ts';

const PW = 'pw-alice-3';

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

function plain(user: string, password: string): string {
  return `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${b64(`\0${user}\0${password}`)}</auth>`;
}

const CHALLENGE = /<challenge[^>]*>([^<]*)<\/challenge>/;
const FAILURE = /<failure xmlns=['"]urn:ietf:params:xml:ns:xmpp-sasl['"]>(?:<([a-z-]+)\/>)/;

/** The SASL failure condition of the next <failure/>. */
async function saslFailure(raw: RawConnection): Promise<string> {
  const text = await raw.waitFor(/<\/failure>/);
  return FAILURE.exec(text)?.[1] ?? `(no condition in ${text})`;
}

/** Runs SCRAM-SHA-256 up to the server-first-message; returns it. */
async function scramFirst(raw: RawConnection, scram: ScramClient, clientFirst = scram.first()): Promise<string> {
  raw.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${b64(clientFirst)}</auth>`);
  const text = await raw.waitFor(CHALLENGE);
  return Buffer.from(CHALLENGE.exec(text)![1]!, 'base64').toString('utf8');
}

describe('per connection and per message', () => {
  let server: Petrel;
  before(async () => {
    // The per-address limit is off here so that these tests cannot ban each other.
    server = await startHostile({ general: { max_auth_failures_per_ip: 'infinity' }, users: [['alice', PW], ['bob', 'pw-bob-3']] });
  });
  after(async () => {
    await server.dispose();
  });

  test('three failed SASL attempts on one connection close it with policy-violation', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      for (let i = 1; i <= 2; i++) {
        raw.send(plain('alice', 'wrong' + i));
        assert.equal(await saslFailure(raw), 'not-authorized');
        assert.equal(raw.isClosed, false, `still open after failure ${i}`);
      }
      raw.send(plain('alice', 'wrong3'));
      assert.equal(await saslFailure(raw), 'not-authorized');
      const said = await closedWith(raw);
      assert.equal(streamErrorCondition(said), 'policy-violation');
    } finally {
      raw.destroy();
    }
  });

  test('a SCRAM client-final-message with a forged proof is refused with not-authorized', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      const scram = new ScramClient('sha256', 'alice', PW);
      const serverFirst = await scramFirst(raw, scram);
      const final = scram.final(serverFirst);
      const forged = final.replace(/p=([^,]+)$/, (_m, p: string) => 'p=' + Buffer.from(Buffer.from(p, 'base64').map((b) => b ^ 0x5a)).toString('base64'));
      assert.notEqual(forged, final);
      raw.send(`<response xmlns='${NS_SASL}'>${b64(forged)}</response>`);
      assert.equal(await saslFailure(raw), 'not-authorized');
      assert.doesNotMatch(raw.data, /<success/);
    } finally {
      raw.destroy();
    }
  });

  test('a SCRAM client-final-message replayed on another connection is refused with not-authorized', async () => {
    // A complete, valid exchange on one connection...
    const first = await RawConnection.open(server.port);
    const scram = new ScramClient('sha256', 'alice', PW);
    const clientFirst = scram.first();
    let recorded: string;
    try {
      await first.openStream();
      recorded = scram.final(await scramFirst(first, scram, clientFirst));
      first.send(`<response xmlns='${NS_SASL}'>${b64(recorded)}</response>`);
      await first.waitFor(/<success/);
    } finally {
      first.destroy();
    }
    // ...replayed word for word: the server's nonce differs, so the old proof is worthless.
    const second = await RawConnection.open(server.port);
    try {
      await second.openStream();
      const serverFirst = await scramFirst(second, scram, clientFirst);
      assert.ok(!recorded.includes(/r=([^,]+)/.exec(serverFirst)![1]!), 'the server chose a fresh nonce');
      second.send(`<response xmlns='${NS_SASL}'>${b64(recorded)}</response>`);
      assert.equal(await saslFailure(second), 'not-authorized');
      assert.doesNotMatch(second.data, /<success/);
    } finally {
      second.destroy();
    }
  });

  test('a SCRAM client-final-message with a nonce other than the one the server chose is refused', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      const scram = new ScramClient('sha256', 'alice', PW);
      const serverFirst = await scramFirst(raw, scram);
      const final = scram.final(serverFirst).replace(/,r=([^,]+)/, (_m, r: string) => `,r=${r}x`);
      raw.send(`<response xmlns='${NS_SASL}'>${b64(final)}</response>`);
      assert.equal(await saslFailure(raw), 'not-authorized');
    } finally {
      raw.destroy();
    }
  });

  test('a message sent before authentication ends the stream with not-authorized and reaches nobody', async () => {
    const bob = await RawConnection.open(server.port);
    try {
      await bob.login('bob', 'pw-bob-3', 'watch');
      const raw = await RawConnection.open(server.port);
      try {
        await raw.openStream();
        raw.send("<message to='bob@localhost/watch' id='early' type='chat'><body>before auth</body></message>");
        assert.equal(streamErrorCondition(await closedWith(raw)), 'not-authorized');
      } finally {
        raw.destroy();
      }
      // A later message from a real session arrives, the early one never does.
      const alice = await RawConnection.open(server.port);
      try {
        await alice.login('alice', PW, 'late');
        alice.send("<message to='bob@localhost/watch' id='late' type='chat'><body>after</body></message>");
        await bob.waitFor(/id=["']late["']/);
        assert.doesNotMatch(bob.data, /id=["']early["']/);
      } finally {
        alice.destroy();
      }
    } finally {
      bob.destroy();
    }
  });

  test('a message sent after authentication but before binding ends the stream with not-authorized and reaches nobody', async () => {
    const bob = await RawConnection.open(server.port);
    try {
      await bob.login('bob', 'pw-bob-3', 'watch2');
      const raw = await RawConnection.open(server.port);
      try {
        await raw.openStream();
        raw.send(plain('alice', PW));
        await raw.waitFor(/<success/);
        await raw.openStream();
        raw.send("<message to='bob@localhost/watch2' id='unbound' type='chat'><body>before bind</body></message>");
        raw.send(`<iq type='set' id='bind-late'><bind xmlns='${NS_BIND}'/></iq>`);
        const said = await closedWith(raw);
        assert.equal(streamErrorCondition(said), 'not-authorized');
        assert.doesNotMatch(said, /bind-late/, 'nothing after the refused stanza is handled');
      } finally {
        raw.destroy();
      }
      const alice = await RawConnection.open(server.port);
      try {
        await alice.login('alice', PW, 'late2');
        alice.send("<message to='bob@localhost/watch2' id='late2' type='chat'><body>after</body></message>");
        await bob.waitFor(/id=["']late2["']/);
        assert.doesNotMatch(bob.data, /id=["']unbound["']/);
      } finally {
        alice.destroy();
      }
    } finally {
      bob.destroy();
    }
  });
});

describe('per client address', () => {
  let server: Petrel;
  const BAN_MS = 1500;
  before(async () => {
    server = await startHostile({ general: { max_auth_failures_per_ip: 4, auth_ban_duration: BAN_MS }, users: [['alice', PW]] });
  });
  after(async () => {
    await server.dispose();
  });

  test('an address with too many failed logins is banned, refused before SASL, and let back in after the ban', async () => {
    // Three failures close the first connection; the fourth, on a new connection, bans the address.
    const one = await RawConnection.open(server.port);
    await one.openStream();
    for (let i = 0; i < 3; i++) {
      one.send(plain('alice', 'guess' + i));
      await saslFailure(one);
    }
    await closedWith(one);
    const two = await RawConnection.open(server.port);
    await two.openStream();
    two.send(plain('alice', 'guess3'));
    assert.equal(await saslFailure(two), 'not-authorized');
    const said = await closedWith(two);
    assert.equal(streamErrorCondition(said), 'policy-violation');
    await server.waitForLog((l) => l.what === 'c2s_address_banned');

    // While banned, even the right password gets no chance: the stream ends before any feature is offered.
    const banned = await RawConnection.open(server.port);
    const refused = await closedWith(banned);
    assert.equal(streamErrorCondition(refused), 'policy-violation');
    assert.match(refused, /too many failed logins from this address/);
    assert.doesNotMatch(refused, /<stream:features>|<mechanism>/);

    await new Promise((r) => setTimeout(r, BAN_MS + 100));
    await stillServes(server, 'alice', PW);
  });
});
