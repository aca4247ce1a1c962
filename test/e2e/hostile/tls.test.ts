// TLS: 1.2 or later only, no authentication before TLS where it is
// required (nor from bytes sent before the STARTTLS handshake), and
// handshakes that never finish are cut off (tls.handshake_timeout).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { rm } from 'node:fs/promises';
import { makeCert, tempDir, type Petrel } from '../helpers/server.ts';
import { NS_SASL, NS_TLS, RawConnection, closedWith, startHostile } from './setup.ts';

const PW = 'pw-alice-9';
const HANDSHAKE_TIMEOUT = 700;
/** What an old client offers: at most TLS 1.1, with the security level lowered so it may even try. */
const OLD_CLIENT = { minVersion: 'TLSv1' as const, maxVersion: 'TLSv1.1' as const, ciphers: 'DEFAULT@SECLEVEL=0' };

let certDir: string;
let cert: { certfile: string; keyfile: string };
before(async () => {
  certDir = await tempDir('petrel-hostile-cert-');
  cert = await makeCert(certDir);
});
after(async () => {
  await rm(certDir, { recursive: true, force: true });
});

/** Resolves with the error a TLS handshake over `raw` ends with (or null when it succeeds). */
async function handshakeError(raw: RawConnection, opts: object): Promise<NodeJS.ErrnoException | null> {
  try {
    await raw.upgradeTls(opts);
    return null;
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
}

async function starttls(raw: RawConnection): Promise<void> {
  raw.send(`<starttls xmlns='${NS_TLS}'/>`);
  await raw.waitFor(/<proceed[^>]*\/>/);
}

describe('STARTTLS required', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      listener: { state_timeout: 10_000 },
      tls: { mode: 'starttls_required', certfile: cert.certfile, keyfile: cert.keyfile, handshake_timeout: HANDSHAKE_TIMEOUT },
      users: [['alice', PW]],
    });
  });
  after(async () => {
    await server.dispose();
  });

  test('before TLS no mechanism is offered and even the right password is refused with encryption-required', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      const features = await raw.openStream();
      assert.doesNotMatch(features, /<mechanisms/);
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0alice\0${PW}`).toString('base64')}</auth>`);
      const failure = await raw.waitFor(/<\/failure>/);
      assert.match(failure, /<encryption-required\/>/);
      assert.doesNotMatch(raw.data, /<success/);
    } finally {
      raw.destroy();
    }
  });

  test('an <auth/> sent in the same write as <starttls/> is discarded, never handled as if it had come over TLS', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      const creds = Buffer.from(`\0alice\0${PW}`).toString('base64');
      // RFC 6120 §5.4.3.3: the client must wait for <proceed/>; bytes sent before the handshake are not part of the TLS stream.
      raw.send(`<starttls xmlns='${NS_TLS}'/><auth xmlns='${NS_SASL}' mechanism='PLAIN'>${creds}</auth>`);
      await raw.waitFor(/<proceed[^>]*\/>/);
      await raw.upgradeTls({ minVersion: 'TLSv1.2' });
      const features = await raw.openStream();
      assert.match(features, /<mechanism>PLAIN<\/mechanism>/);
      // SASL over TLS is answered: a wrong password fails, and that failure is the first SASL answer the client sees.
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0wrong').toString('base64')}</auth>`);
      const answer = await raw.waitFor(/<\/failure>/);
      assert.match(answer, /<not-authorized\/>/);
      assert.doesNotMatch(raw.data, /<success/);
      // Log lines come through the server's stdout: wait for the failure's, then nothing before it logged in.
      await server.waitForLog((l) => l.what === 'c2s_auth_failed' && l.condition === 'not-authorized');
      assert.equal(server.logs.filter((l) => l.what === 'c2s_auth_ok').length, 0, 'the discarded <auth/> logged in');
    } finally {
      raw.destroy();
    }
  });

  test('a client that offers at most TLS 1.1 fails the handshake; TLS 1.2 succeeds', async () => {
    const old = await RawConnection.open(server.port);
    try {
      await old.openStream();
      await starttls(old);
      const err = await handshakeError(old, OLD_CLIENT);
      assert.ok(err !== null, 'the TLS 1.1 handshake succeeded');
      // The server's alert, not a refusal by the client's own OpenSSL.
      assert.match(`${err.code} ${err.message}`, /PROTOCOL_VERSION|protocol version|UNSUPPORTED_PROTOCOL/i);
    } finally {
      old.destroy();
    }
    const modern = await RawConnection.open(server.port);
    try {
      await modern.openStream();
      await starttls(modern);
      assert.equal(await handshakeError(modern, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }), null);
      const features = await modern.openStream();
      assert.match(features, /<mechanism>PLAIN<\/mechanism>/);
    } finally {
      modern.destroy();
    }
  });

  test('a client that asks for STARTTLS and then never starts the handshake is dropped after tls.handshake_timeout', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      await starttls(raw);
      const t0 = performance.now();
      await closedWith(raw, 5000);
      const ms = performance.now() - t0;
      assert.ok(ms >= HANDSHAKE_TIMEOUT - 100 && ms < HANDSHAKE_TIMEOUT + 1500, `closed after ${Math.round(ms)} ms`);
      await server.waitForLog((l) => l.what === 'c2s_tls_error' && l.err === 'TLS handshake timed out');
    } finally {
      raw.destroy();
    }
  });
});

describe('direct TLS', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      tls: { mode: 'tls', certfile: cert.certfile, keyfile: cert.keyfile, handshake_timeout: HANDSHAKE_TIMEOUT },
      users: [['alice', PW]],
    });
  });
  after(async () => {
    await server.dispose();
  });

  test('a client that offers at most TLS 1.1 is refused', async () => {
    await assert.rejects(RawConnection.open(server.port, OLD_CLIENT), (err: NodeJS.ErrnoException) => {
      assert.match(`${err.code} ${err.message}`, /PROTOCOL_VERSION|protocol version|UNSUPPORTED_PROTOCOL/i);
      return true;
    });
  });

  test('a TCP connection that never starts the handshake is dropped after tls.handshake_timeout', async () => {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const s = netConnect({ host: '127.0.0.1', port: server.port });
      s.on('error', () => {});
      s.once('close', () => resolve());
      setTimeout(() => {
        s.destroy();
        reject(new Error('still open after 5 s'));
      }, 5000).unref();
    });
    const ms = performance.now() - t0;
    assert.ok(ms < HANDSHAKE_TIMEOUT + 1500, `closed after ${Math.round(ms)} ms`);
  });

  test('a TLS 1.2 client logs in', async () => {
    const raw = await RawConnection.open(server.port, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    try {
      await raw.login('alice', PW, 'tls12');
    } finally {
      raw.destroy();
    }
  });
});
