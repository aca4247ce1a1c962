// The counters of the limits, read as an operator reads them: from the
// Prometheus endpoint of a running server, after real clients hit the limits.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, type Petrel } from '../helpers/server.ts';
import { NS_SASL, RawConnection, closedWith, startHostile } from './setup.ts';

let server: Petrel;
let metricsPort: number;
before(async () => {
  metricsPort = await freePort();
  server = await startHostile({
    metricsPort,
    general: { max_c2s_connections_per_address: 2, max_auth_failures_per_ip: 'infinity' },
    users: [['alice', 'pw-alice']],
  });
});
after(async () => {
  await server.dispose();
});

/** The value of one series in the Prometheus text, 0 when absent. */
async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('stream errors from clients, refused connections and failed logins are counted, each under its reason', async () => {
  assert.equal(await metric('petrel_c2s_connections_refused_total', 'reason="address_limit"'), 0);
  const a = await RawConnection.open(server.port);
  const b = await RawConnection.open(server.port);
  try {
    await a.openStream();
    await b.openStream();
    // A third connection from the same address is refused.
    const c = await RawConnection.open(server.port);
    await closedWith(c);
    // A wrong password, then two <auth/> in one write: the first is replaced unanswered.
    const plain = (pw: string) => `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0alice\0${pw}`).toString('base64')}</auth>`;
    a.send(plain('wrong'));
    await a.waitFor('</failure>');
    a.send(plain('wrong-again') + plain('pw-alice'));
    await a.waitFor(/<success/);
    // A stream error from the client.
    b.send("<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>");
    await closedWith(b);
  } finally {
    a.destroy();
    b.destroy();
  }
  assert.equal(await metric('petrel_c2s_connections_refused_total', 'reason="address_limit"'), 1);
  assert.equal(await metric('petrel_c2s_auth_failures_total', 'reason="failure"'), 1);
  assert.equal(await metric('petrel_c2s_auth_failures_total', 'reason="superseded"'), 1);
  assert.equal(await metric('petrel_c2s_stream_errors_received_total', 'condition="system-shutdown"'), 1);
});
