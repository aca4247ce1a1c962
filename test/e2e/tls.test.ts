// TLS on c2s listeners: STARTTLS offered, STARTTLS required, TLS from the
// first byte, and old TLS versions refused.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { makeCert, preparePetrel, tempDir, type Petrel } from './helpers/server.ts';
import { connect } from './helpers/client.ts';
import { NS_SASL, NS_TLS, RawConnection } from './helpers/raw.ts';

// @xmpp/client takes no TLS options, and the certificate is self-signed: this
// file tests the server side of TLS, so the client trusts any certificate.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

/** A client of TLS 1.0 and 1.1 only; the low security level lets it offer them at all, so that the refusal is the server's. */
const OLD_TLS = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' } as const;
/** OpenSSL's words for a protocol_version alert from the server. */
const PROTOCOL_REFUSED = /PROTOCOL_VERSION|protocol version|UNSUPPORTED_PROTOCOL|unsupported protocol/i;

const STARTTLS = 0;
const REQUIRED = 1;
const DIRECT = 2;

describe('TLS', () => {
  let server: Petrel;
  before(async () => {
    const dir = await tempDir();
    // Relative to the config file, as an operator writes them.
    await makeCert(dir);
    server = await preparePetrel(
      {
        listeners: [
          { tls: { mode: 'starttls', certfile: 'cert.pem', keyfile: 'key.pem' } },
          { tls: { mode: 'starttls_required', certfile: 'cert.pem', keyfile: 'key.pem' } },
          { tls: { mode: 'tls', certfile: 'cert.pem', keyfile: 'key.pem' } },
        ],
        users: [['alice', 'tls-secret']],
      },
      dir,
    );
    await server.start();
  });
  after(async () => {
    await server.dispose();
  });

  test('a listener with mode "starttls" offers STARTTLS beside SASL', async () => {
    const raw = await RawConnection.open(server.ports[STARTTLS]!);
    try {
      const features = await raw.openStream();
      assert.match(features, new RegExp(`<starttls xmlns='${NS_TLS}'>`));
      assert.doesNotMatch(features, /<required\/>/);
      assert.match(features, /<mechanisms /);
    } finally {
      raw.destroy();
    }
  });

  test('a client logs in over STARTTLS', async () => {
    const c = await connect({ port: server.ports[STARTTLS]! }, 'alice', 'tls-secret', { mechanism: 'PLAIN' });
    assert.ok(c.xmpp.isSecure());
    assert.equal(c.bare, 'alice@localhost');
    await c.close();
  });

  test('a listener with mode "starttls_required" offers no SASL mechanisms before TLS, and all of them after', async () => {
    const raw = await RawConnection.open(server.ports[REQUIRED]!);
    try {
      const before = await raw.openStream();
      assert.match(before, new RegExp(`<starttls xmlns='${NS_TLS}'><required/></starttls>`));
      assert.doesNotMatch(before, /<mechanisms/);
      raw.send(`<starttls xmlns='${NS_TLS}'/>`);
      await raw.waitFor(`<proceed xmlns='${NS_TLS}'/>`);
      await raw.upgradeTls();
      const after = await raw.openStream();
      assert.doesNotMatch(after, /<starttls/);
      assert.match(after, new RegExp(`<mechanisms xmlns='${NS_SASL}'><mechanism>SCRAM-SHA-256</mechanism>`));
    } finally {
      raw.destroy();
    }
  });

  test('a listener with mode "starttls_required" refuses authentication before TLS', async () => {
    const raw = await RawConnection.open(server.ports[REQUIRED]!);
    try {
      await raw.openStream();
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0tls-secret').toString('base64')}</auth>`);
      const failure = await raw.waitFor('</failure>');
      assert.match(failure, /<encryption-required\/>/);
    } finally {
      raw.destroy();
    }
  });

  test('a client logs in over STARTTLS where it is required', async () => {
    const c = await connect({ port: server.ports[REQUIRED]! }, 'alice', 'tls-secret', { mechanism: 'SCRAM-SHA-256' });
    assert.ok(c.xmpp.isSecure());
    await c.close();
  });

  test('a client logs in with TLS from the first byte (xmpps://)', async () => {
    const c = await connect({ port: server.ports[DIRECT]! }, 'alice', 'tls-secret', { scheme: 'xmpps', mechanism: 'PLAIN' });
    assert.ok(c.xmpp.isSecure());
    assert.equal(c.bare, 'alice@localhost');
    await c.close();
  });

  test('a direct TLS listener does not offer STARTTLS again', async () => {
    const raw = await RawConnection.open(server.ports[DIRECT]!, {});
    try {
      const features = await raw.openStream();
      assert.doesNotMatch(features, /<starttls/);
      assert.match(features, /<mechanisms /);
    } finally {
      raw.destroy();
    }
  });

  test('a client that speaks at most TLS 1.1 is refused', async () => {
    const err = await new Promise<Error & { code?: string }>((resolve, reject) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: server.ports[DIRECT]!,
        servername: 'localhost',
        rejectUnauthorized: false,
        ...OLD_TLS,
      });
      socket.once('secureConnect', () => {
        socket.destroy();
        reject(new Error(`the server accepted ${socket.getProtocol()}`));
      });
      socket.once('error', resolve);
    });
    assert.match(`${err.code} ${err.message}`, PROTOCOL_REFUSED);
  });

  test('a client that speaks at most TLS 1.1 is refused after STARTTLS', async () => {
    const raw = await RawConnection.open(server.ports[STARTTLS]!);
    try {
      await raw.openStream();
      raw.send(`<starttls xmlns='${NS_TLS}'/>`);
      await raw.waitFor(`<proceed xmlns='${NS_TLS}'/>`);
      const err = await raw.upgradeTls(OLD_TLS).then(
        () => {
          throw new Error('the server accepted TLS 1.1');
        },
        (e: Error & { code?: string }) => e,
      );
      assert.match(`${err.code} ${err.message}`, PROTOCOL_REFUSED);
    } finally {
      raw.destroy();
    }
  });

  test('the server is still up after the refused handshake', async () => {
    const c = await connect({ port: server.ports[DIRECT]! }, 'alice', 'tls-secret', { scheme: 'xmpps', mechanism: 'PLAIN' });
    await c.close();
  });
});
