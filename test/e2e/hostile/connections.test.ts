// Connections as a resource: caps on open c2s connections server-wide and
// per address, a deadline for the whole negotiation before a resource is
// bound, and server pings (mod_ping) that find a dead client so that its
// messages go to offline storage instead of into a connection nobody reads.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import type { Petrel } from '../helpers/server.ts';
import { NS_SASL, RawConnection, closedWith, startHostile, streamErrorCondition } from './setup.ts';

/** A raw connection to the server from a chosen loopback address (all of 127/8 is this machine). */
function openFrom(port: number, localAddress: string): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress }, () => resolve(new RawConnection(socket)));
    socket.once('error', reject);
  });
}

/** Opens a stream: "open" when features come, else the stream error condition the server closed it with. */
async function outcome(raw: RawConnection): Promise<string> {
  raw.send(`<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`);
  try {
    await raw.waitFor('</stream:features>', 5000);
    return 'open';
  } catch {
    return streamErrorCondition(raw.data) ?? `closed without an error: ${raw.data}`;
  }
}

describe('connection limits', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({ general: { max_c2s_connections: 3, max_c2s_connections_per_address: 2 } });
  });
  after(async () => {
    await server.dispose();
  });

  test('past max_c2s_connections_per_address a connection from that address gets policy-violation, while another address still gets in', async () => {
    const open: RawConnection[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const r = await openFrom(server.port, '127.0.0.1');
        open.push(r);
        assert.equal(await outcome(r), 'open');
      }
      const third = await openFrom(server.port, '127.0.0.1');
      open.push(third);
      assert.equal(await outcome(third), 'policy-violation');
      await closedWith(third);
      const other = await openFrom(server.port, '127.0.0.2');
      open.push(other);
      assert.equal(await outcome(other), 'open');
      // Past max_c2s_connections, whatever the address.
      const fourth = await openFrom(server.port, '127.0.0.3');
      open.push(fourth);
      assert.equal(await outcome(fourth), 'resource-constraint');
      await closedWith(fourth);
      // A closed connection gives its place back.
      open[0]!.destroy();
      await open[0]!.closed;
      let again = '';
      for (let i = 0; i < 20 && again !== 'open'; i++) {
        const r = await openFrom(server.port, '127.0.0.1');
        open.push(r);
        again = await outcome(r);
        if (again !== 'open') await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(again, 'open');
    } finally {
      for (const r of open) r.destroy();
    }
  });
});

describe('the negotiation as a whole', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      listener: { state_timeout: 1000, negotiation_timeout: 2500, max_auth_failures: 1000 },
      general: { max_auth_failures_per_ip: 'infinity', max_auth_failures_per_account: 'infinity' },
      users: [['alice', 'pw-alice']],
    });
  });
  after(async () => {
    await server.dispose();
  });

  test('a client that keeps restarting SASL, each step within state_timeout, is closed with connection-timeout once negotiation_timeout has passed', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      const timer = setInterval(() => {
        if (!raw.isClosed) raw.send(`<abort xmlns='${NS_SASL}'/><auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'/>`);
      }, 300);
      try {
        const said = await closedWith(raw, 15_000);
        assert.equal(streamErrorCondition(said), 'connection-timeout');
        assert.match(said, /no resource bound within 2500 ms/);
      } finally {
        clearInterval(timer);
      }
    } finally {
      raw.destroy();
    }
  });

  test('an authenticated client that keeps failing to bind is closed with connection-timeout too', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0pw-alice').toString('base64')}</auth>`);
      await raw.waitFor(/<success/);
      await raw.openStream();
      // A resource too long to be one gets bad-request, and the stream goes on.
      const long = 'r'.repeat(3000);
      const timer = setInterval(() => {
        if (!raw.isClosed) raw.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${long}</resource></bind></iq>`);
      }, 300);
      try {
        const said = await closedWith(raw, 15_000);
        assert.match(said, /bad-request/);
        assert.equal(streamErrorCondition(said), 'connection-timeout');
      } finally {
        clearInterval(timer);
      }
    } finally {
      raw.destroy();
    }
  });
});

describe('server pings (mod_ping send_pings)', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      ping: { send_pings: true, ping_interval: 1, ping_req_timeout: 1, timeout_action: 'kill' },
      users: [['alice', 'pw-alice'], ['bob', 'pw-bob']],
    });
  });
  after(async () => {
    await server.dispose();
  });

  const PING = /<iq[^>]*type=['"]get['"][^>]*>\s*<ping xmlns=['"]urn:xmpp:ping['"]\/><\/iq>/;

  test('a client that stops answering pings is disconnected, and a message sent to it afterwards is kept offline and delivered at its next login', async () => {
    const bob = await RawConnection.open(server.port);
    const alice = await RawConnection.open(server.port);
    try {
      await bob.login('bob', 'pw-bob', 'phone');
      bob.send('<presence/>');
      // Bob's client reads but never answers: a dead path as the server sees it.
      await bob.waitFor(PING, 10_000);
      await closedWith(bob, 10_000);
      await server.waitForLog((l) => l.what === 'c2s_dead_connection' && String(l.jid).startsWith('bob@localhost/'));
      await alice.login('alice', 'pw-alice', 'desk');
      alice.send("<message to='bob@localhost' id='after-ping' type='chat'><body>are you there?</body></message>");
      await server.waitForLog((l) => l.what === 'ping_timeout');
      // Bob comes back: the message was kept.
      let got = '';
      for (let i = 0; i < 20 && got === ''; i++) {
        const again = await RawConnection.open(server.port);
        try {
          await again.login('bob', 'pw-bob', 'phone2');
          again.send('<presence/>');
          got = await again.waitFor(/<message[^>]*id=['"]after-ping['"][\s\S]*?<\/message>/, 2000).catch(() => '');
        } finally {
          again.destroy();
        }
      }
      assert.match(got, /are you there\?/);
      assert.match(got, /<delay xmlns=['"]urn:xmpp:delay['"]/);
    } finally {
      bob.destroy();
      alice.destroy();
    }
  });

  test('a client that answers the pings stays connected', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.login('alice', 'pw-alice', 'answers');
      for (let i = 0; i < 3; i++) {
        const ping = await raw.waitFor(PING, 10_000);
        const id = /id=['"]([^'"]+)['"]/.exec(ping)![1]!;
        raw.send(`<iq type='result' id='${id}' to='localhost'/>`);
      }
      assert.equal(raw.isClosed, false);
      raw.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await raw.waitFor(/id=["']alive["']/, 5000);
    } finally {
      raw.destroy();
    }
  });
});
