// A webhook that answers 2xx has taken the event, whatever its body does
// afterwards: one that sends its status and headers and then never ends the
// body, and one that streams a body without end, each get the event once,
// and the event leaves the outbox as delivered. Real node:http listeners,
// a real server process.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, isMessage } from '../helpers/client.ts';
import { openStore } from '../delivery/helpers.ts';

const CALL_TIMEOUT = 1500;
const hits = new Map<string, number>();
const sockets = new Set<import('node:net').Socket>();
let waiters: Array<() => void> = [];

const listener = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const path = req.url ?? '/';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    for (const w of waiters.splice(0)) w();
    res.writeHead(200, { 'content-type': 'text/plain' });
    if (path === '/stall') {
      // Status and headers, one byte of body, and then nothing, ever.
      res.write('o');
      return;
    }
    // A body without end: 64 KiB at a time, as fast as the client reads it.
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once('drain', pump);
    };
    res.on('close', () => res.removeAllListeners('drain'));
    pump();
  });
});
listener.on('connection', (s) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});

let server: Petrel;

before(async () => {
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  const port = (listener.address() as AddressInfo).port;
  const handler = (path: string) => `
[[modules.mod_event_pusher.backend.http]]
  pool_name = "hook"
  path = "${path}"
  [modules.mod_event_pusher.backend.http.retry]
    max_attempts = 100
    initial_delay = 20
    max_delay = 50`;
  server = await startPetrel({
    users: [['alice', 'pw'], ['bob', 'pw']],
    extraToml: `
[outgoing_pools.http.hook]
  workers = 4
  call_timeout = ${CALL_TIMEOUT}
  [outgoing_pools.http.hook.connection]
    host = "http://127.0.0.1:${port}"
    request_timeout = 500
${handler('/stall')}
${handler('/endless')}
`,
  });
});

after(async () => {
  await server?.dispose();
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => listener.close(() => r()));
});

const outboxRows = () => {
  const db = openStore(server);
  try {
    return Number((db.prepare('SELECT COUNT(*) AS n FROM event_outbox').get() as { n: number }).n);
  } finally {
    db.close();
  }
};

test('a 2xx whose body never ends, and one whose body is endless, count as delivered at once and are never sent again', async () => {
  const alice = await connect({ port: server.port }, 'alice', 'pw');
  const bob = await connect({ port: server.port }, 'bob', 'pw');
  try {
    const id = await alice.message(bob.jid, 'accepted once');
    await bob.waitFor(isMessage(id));
    await new Promise<void>((resolve) => {
      const check = () => ((hits.get('/stall') ?? 0) >= 1 && (hits.get('/endless') ?? 0) >= 1 ? resolve() : waiters.push(check));
      check();
    });
    // Delivered: the rows leave the outbox (settled as delivered, not rescheduled).
    const t0 = Date.now();
    while (outboxRows() > 0) {
      assert.ok(Date.now() - t0 < 10_000, `the outbox still holds ${outboxRows()} event(s): the answers were not taken as delivered`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Past the call's timeout and a retry's delay, nothing was sent again.
    await new Promise((r) => setTimeout(r, 2 * CALL_TIMEOUT));
    assert.equal(hits.get('/stall'), 1);
    assert.equal(hits.get('/endless'), 1);
    assert.equal(server.logs.filter((l) => l.what === 'event_pusher_http_failed').length, 0, 'no failed attempt was logged');
  } finally {
    await alice.close();
    await bob.close();
  }
});
