// Restricted and broken XML (RFC 6120 §11): DTDs and entities are refused
// unexpanded, anything not well-formed ends the stream, deep nesting cannot
// overflow the stack, and a stream header inside an open stream is refused.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { RawConnection, closedWith, startHostile, stillServes, streamErrorCondition, streamHeader } from './setup.ts';

const PW = 'pw-alice-1';
const HEADER_ATTRS = "to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'";

let server: Petrel;
before(async () => {
  server = await startHostile({ users: [['alice', PW]] });
});
after(async () => {
  await server.dispose();
});

/** Opens a connection, sends `bytes` (after logging in when `login`), and returns what the server said before closing. */
async function provoke(bytes: string | Buffer, o: { login?: boolean; header?: boolean } = {}): Promise<string> {
  const raw = await RawConnection.open(server.port);
  try {
    if (o.login) await raw.login('alice', PW, 'x' + Math.random().toString(36).slice(2, 8));
    else if (o.header) await raw.openStream();
    raw.socket.write(bytes);
    return await closedWith(raw);
  } finally {
    raw.destroy();
  }
}

describe('DTDs and entities', () => {
  test('a DTD with an external entity naming /etc/passwd ends the stream with restricted-xml and nothing is read', async () => {
    const xxe = `<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><stream:stream ${HEADER_ATTRS}>&xxe;`;
    const said = await provoke(xxe);
    assert.equal(streamErrorCondition(said), 'restricted-xml');
    assert.doesNotMatch(said, /root:|nologin|\/bin\//);
    assert.match(said, /<\/stream:stream>$/);
  });

  test('an entity expansion bomb ends the stream with restricted-xml at once', async () => {
    let dtd = '<!ENTITY l0 "lollollollollollollollollollol">';
    for (let i = 1; i <= 9; i++) dtd += `<!ENTITY l${i} "${`&l${i - 1};`.repeat(10)}">`;
    const started = performance.now();
    const said = await provoke(`<?xml version='1.0'?><!DOCTYPE lolz [${dtd}]><stream:stream ${HEADER_ATTRS}><message>&l9;</message>`);
    assert.equal(streamErrorCondition(said), 'restricted-xml');
    assert.ok(performance.now() - started < 2000);
    assert.doesNotMatch(said, /lollol/);
  });

  test('a DTD inside an established stream ends it with restricted-xml', async () => {
    const said = await provoke(`<!DOCTYPE foo [<!ENTITY a "b">]><message to='alice@localhost'>&a;</message>`, { login: true });
    assert.equal(streamErrorCondition(said), 'restricted-xml');
  });

  test('a reference to an undeclared entity is not well-formed', async () => {
    assert.equal(streamErrorCondition(await provoke(`<message to='alice@localhost'><body>&xxe;</body></message>`, { login: true })), 'not-well-formed');
  });

  test('a comment ends the stream with restricted-xml', async () => {
    assert.equal(streamErrorCondition(await provoke('<!-- hello -->', { login: true })), 'restricted-xml');
  });

  test('a processing instruction ends the stream with restricted-xml', async () => {
    assert.equal(streamErrorCondition(await provoke('<?evil run="me"?>', { header: true })), 'restricted-xml');
  });
});

describe('XML declaration', () => {
  test('an XML 1.1 declaration ends the stream before anything else happens', async () => {
    const said = await provoke(`<?xml version='1.1'?><stream:stream ${HEADER_ATTRS}>`);
    assert.equal(streamErrorCondition(said), 'not-well-formed');
    assert.doesNotMatch(said, /<stream:features>/);
  });

  test('an encoding other than UTF-8 ends the stream with unsupported-encoding', async () => {
    const said = await provoke(`<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream ${HEADER_ATTRS}>`);
    assert.equal(streamErrorCondition(said), 'unsupported-encoding');
    assert.doesNotMatch(said, /<stream:features>/);
  });
});

describe('not well-formed input', () => {
  const cases: Array<[string, string | Buffer]> = [
    ['mismatched end tags', "<message to='alice@localhost'><body>hi</message></body>"],
    ['a NUL character', "<message to='alice@localhost'><body>a\u0000b</body></message>"],
    ['a control character', "<message to='alice@localhost'><body>a\u0001b</body></message>"],
    ['invalid UTF-8', Buffer.concat([Buffer.from("<message to='alice@localhost'><body>"), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('</body></message>')])],
    ['an overlong UTF-8 encoding', Buffer.concat([Buffer.from("<message to='alice@localhost'><body>"), Buffer.from([0xc0, 0xbc]), Buffer.from('</body></message>')])],
    ['text between stanzas', "hello<message to='alice@localhost'/>"],
    ['an attribute without quotes', '<message to=alice@localhost/>'],
  ];
  for (const [what, bytes] of cases) {
    test(`${what} ends the stream with not-well-formed`, async () => {
      assert.equal(streamErrorCondition(await provoke(bytes, { login: true })), 'not-well-formed');
    });
  }

  test('the server still serves other clients after all of it', async () => {
    await stillServes(server, 'alice', PW);
  });
});

describe('nesting and stream headers', () => {
  test('100,000 nested elements end the stream with policy-violation and the server stays up', async () => {
    const said = await provoke("<message to='alice@localhost'>" + '<a>'.repeat(100_000), { login: true });
    assert.equal(streamErrorCondition(said), 'policy-violation');
    assert.ok(server.running, 'the server process is still running');
    await stillServes(server, 'alice', PW);
  });

  test('a second stream header inside an established stream ends it with policy-violation', async () => {
    const said = await provoke(streamHeader(), { login: true });
    assert.equal(streamErrorCondition(said), 'policy-violation');
  });

  test('a second stream header without an XML declaration is refused the same way', async () => {
    const said = await provoke(`<stream:stream ${HEADER_ATTRS}>`, { login: true });
    assert.equal(streamErrorCondition(said), 'policy-violation');
  });
});
