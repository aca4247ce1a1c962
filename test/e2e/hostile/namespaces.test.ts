// Namespaces in XML (RFC 6120 §11.2 requires namespace-well-formed XML): a
// stanza whose prefixes are not declared would reach its recipient as XML
// the recipient's library cannot parse (most then drop the connection), so
// the sender's stream ends with not-well-formed and nothing is forwarded or
// stored. A prefix the sender's stream header declares is declared again on
// the stanza, so the recipient can still read it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { connect, isMessage, settle, type TestClient } from '../helpers/client.ts';
import { RawConnection, closedWith, startHostile, streamErrorCondition, NS_SASL } from './setup.ts';

let server: Petrel;
let bob: TestClient;
let carol: TestClient;
before(async () => {
  server = await startHostile({ users: [['alice', 'pw-alice'], ['bob', 'pw-bob'], ['carol', 'pw-carol']] });
  bob = await connect(server, 'bob', 'pw-bob', { resource: 'phone' });
  carol = await connect(server, 'carol', 'pw-carol', { resource: 'desk' });
});
after(async () => {
  await bob?.close();
  await carol?.close();
  await server?.dispose();
});

describe('prefixes that are not declared', () => {
  for (const [what, stanza] of [
    ['an element', "<message to='bob@localhost/phone' id='ns1' type='chat'><body>hi</body><evil:x/></message>"],
    ['an attribute', "<message to='bob@localhost/phone' id='ns2' type='chat' evil:at='1'><body>hi</body></message>"],
    ['the stanza itself', "<jc:message to='bob@localhost/phone' id='ns3' type='chat'><body>hi</body></jc:message>"],
    ['an empty declaration', "<message to='bob@localhost/phone' id='ns4' type='chat'><x xmlns:e=''/></message>"],
  ] as const) {
    test(`a message with an undeclared prefix on ${what} ends the sender's stream with not-well-formed and never reaches the recipient`, async () => {
      const raw = await RawConnection.open(server.port);
      try {
        await raw.login('alice', 'pw-alice', 'r' + Math.random().toString(36).slice(2, 8));
        raw.send(stanza);
        assert.equal(streamErrorCondition(await closedWith(raw)), 'not-well-formed');
      } finally {
        raw.destroy();
      }
      // Everything routed to bob before now has arrived: the bad message is not among it, and his connection is intact.
      await settle(carol, bob);
      assert.equal(bob.queue.some((el) => el.name === 'message' && el.attrs.id?.startsWith('ns')), false);
      assert.equal(bob.errors.length, 0);
    });
  }

  test('a message to an offline user with an undeclared prefix is not stored for later', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.login('alice', 'pw-alice', 'off');
      raw.send("<message to='carol-offline@localhost' id='ns5'><body>x</body><evil:x/></message><message to='bob@localhost' id='after'><body>y</body></message>");
      assert.equal(streamErrorCondition(await closedWith(raw)), 'not-well-formed');
    } finally {
      raw.destroy();
    }
    await settle(carol, bob);
    assert.equal(bob.queue.some((el) => el.attrs.id === 'after'), false, 'nothing after the bad stanza is processed');
  });
});

describe('prefixes that are declared', () => {
  test('a prefix declared inside the stanza is forwarded as it is, and the recipient reads it', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.login('alice', 'pw-alice', 'ok1');
      raw.send("<message to='bob@localhost/phone' id='ok1' type='chat' xmlns:ex='urn:example:1'><body>hi</body><ex:thing ex:flag='yes'/></message>");
      const got = await bob.waitFor(isMessage('ok1'));
      // The recipient's library resolves the prefix to its namespace.
      const thing = got.getChild('thing', 'urn:example:1');
      assert.ok(thing !== undefined);
      assert.equal(thing.attrs['ex:flag'], 'yes');
    } finally {
      raw.destroy();
    }
  });

  test("a prefix declared on the sender's stream header is declared on the forwarded stanza", async () => {
    const raw = await RawConnection.open(server.port);
    try {
      // A stream header of its own, declaring ex; then SASL PLAIN and bind by hand.
      const header = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:ex='urn:example:2' version='1.0'>";
      raw.send(header);
      await raw.waitFor(/<\/stream:features>/);
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0pw-alice').toString('base64')}</auth>`);
      await raw.waitFor(/<success/);
      raw.send(header);
      await raw.waitFor(/<bind/);
      raw.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>hdr</resource></bind></iq>");
      await raw.waitFor(/id=["']b1["']/);
      raw.send("<message to='bob@localhost/phone' id='ok2' type='chat'><body>hi</body><ex:thing/></message>");
      const got = await bob.waitFor(isMessage('ok2'));
      assert.equal(got.attrs['xmlns:ex'], 'urn:example:2');
      assert.ok(got.getChild('thing', 'urn:example:2') !== undefined);
      assert.equal(bob.errors.length, 0);
    } finally {
      raw.destroy();
    }
  });
});

describe("a client's stream error (RFC 6120 §4.9)", () => {
  const cases = [
    ['after binding, with the stream prefix', true, "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bye</text></stream:error>", 'policy-violation'],
    ['before authentication', false, "<stream:error><reset xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>", 'reset'],
    ['with a prefix of its own for the stream namespace', true, "<e:error xmlns:e='http://etherx.jabber.org/streams'><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></e:error>", 'system-shutdown'],
  ] as const;
  for (const [when, bound, xml, condition] of cases) {
    test(`a stream error the client sends ${when} is logged with its condition and the server closes the stream without an error of its own`, async () => {
      const raw = await RawConnection.open(server.port);
      try {
        if (bound) await raw.login('alice', 'pw-alice', 'se' + Math.random().toString(36).slice(2, 8));
        else await raw.openStream();
        const before = raw.data.length;
        raw.send(xml);
        const said = (await closedWith(raw)).slice(before);
        assert.equal(streamErrorCondition(said), undefined, `the server answered with a stream error: ${said}`);
        assert.match(said, /<\/stream:stream>/);
        const line = await server.waitForLog((l) => l.what === 'c2s_stream_error_received' && l.condition === condition);
        if (bound) assert.match(String(line.jid), /^alice@localhost\//);
      } finally {
        raw.destroy();
      }
    });
  }

  test('an error element in another namespace is not taken for a stream error', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.login('alice', 'pw-alice', 'se-other');
      raw.send("<x:error xmlns:x='urn:example:not-streams'><reset xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></x:error>");
      assert.equal(streamErrorCondition(await closedWith(raw)), 'unsupported-stanza-type');
    } finally {
      raw.destroy();
    }
  });
});
