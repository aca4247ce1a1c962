// Time limits: state_timeout until a resource is bound (MongooseIM's
// meaning: each negotiation step), none once bound.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { NS_SASL, RawConnection, closedWith, startHostile, streamErrorCondition } from './setup.ts';

const PW = 'pw-alice-5';
const STATE_TIMEOUT = 800;

let server: Petrel;
before(async () => {
  server = await startHostile({ listener: { state_timeout: STATE_TIMEOUT }, users: [['alice', PW]] });
});
after(async () => {
  await server.dispose();
});

/** How long the server took to close `raw` from now, and what it said. */
async function timeClose(raw: RawConnection): Promise<{ ms: number; said: string }> {
  const t0 = performance.now();
  const said = await closedWith(raw, 5000);
  return { ms: performance.now() - t0, said };
}

// Independent connections, each mostly waiting: run side by side.
describe('state_timeout', { concurrency: true }, () => {
  test('a connection that never speaks is closed with connection-timeout', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      const { ms, said } = await timeClose(raw);
      assert.equal(streamErrorCondition(said), 'connection-timeout');
      assert.ok(ms >= STATE_TIMEOUT - 100 && ms < STATE_TIMEOUT + 1500, `closed after ${Math.round(ms)} ms`);
    } finally {
      raw.destroy();
    }
  });

  test('a connection that opens the stream and then goes silent is closed with connection-timeout', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      const { said } = await timeClose(raw);
      assert.equal(streamErrorCondition(said), 'connection-timeout');
    } finally {
      raw.destroy();
    }
  });

  test('whitespace keep-alives do not keep an unauthenticated connection open', async () => {
    const raw = await RawConnection.open(server.port);
    const ticker = setInterval(() => {
      if (!raw.isClosed) raw.send(' ');
    }, 100);
    try {
      await raw.openStream();
      const { ms, said } = await timeClose(raw);
      assert.equal(streamErrorCondition(said), 'connection-timeout');
      assert.ok(ms < STATE_TIMEOUT + 1500, `closed after ${Math.round(ms)} ms`);
    } finally {
      clearInterval(ticker);
      raw.destroy();
    }
  });

  test('a client that authenticates but never binds a resource is closed with connection-timeout', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0alice\0${PW}`).toString('base64')}</auth>`);
      await raw.waitFor(/<success/);
      await raw.openStream();
      const { said } = await timeClose(raw);
      assert.equal(streamErrorCondition(said), 'connection-timeout');
    } finally {
      raw.destroy();
    }
  });

  test('each negotiation step gets its own state_timeout, so a slow but live client logs in', async () => {
    const raw = await RawConnection.open(server.port);
    const pause = () => new Promise((r) => setTimeout(r, STATE_TIMEOUT * 0.6));
    try {
      await pause();
      await raw.openStream();
      await pause();
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0alice\0${PW}`).toString('base64')}</auth>`);
      await raw.waitFor(/<success/);
      await pause();
      await raw.openStream();
      await pause();
      raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
      await raw.waitFor(/<jid>/);
      assert.equal(raw.isClosed, false);
    } finally {
      raw.destroy();
    }
  });

  test('an authenticated, bound connection that stays idle is not closed', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.login('alice', PW, 'idle');
      await new Promise((r) => setTimeout(r, STATE_TIMEOUT * 3));
      assert.equal(raw.isClosed, false, 'the idle connection is still open');
      raw.send("<iq type='get' id='still-here' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await raw.waitFor(/id=["']still-here["']/);
    } finally {
      raw.destroy();
    }
  });
});
