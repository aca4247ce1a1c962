// A stanza a user sends costs the server a bounded amount of work, and one
// user's work does not freeze others' traffic: a user with a roster of
// 20 000 contacts stored straight into the store sends presence in a loop,
// and another user long JIDs that need Unicode preparation, while a pair of
// users exchanges messages. Every message of the pair arrives and the
// server accepts new logins during and after. The pair's latency is
// printed for reading (bench/amplification.ts measures it properly); it is
// not judged here.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Petrel } from '../helpers/server.ts';
import { RawConnection, drainOrClose, startHostile, stillServes } from './setup.ts';

const PW = { mallory: 'pw-mallory-amp', trudy: 'pw-trudy-amp', alice: 'pw-alice-amp', bob: 'pw-bob-amp' };
const CONTACTS = 20_000;

let server: Petrel;
before(async () => {
  server = await startHostile({ users: Object.entries(PW) as Array<[string, string]> });
  const db = new DatabaseSync(join(server.dir, 'data', 'petrel.sqlite'));
  try {
    db.exec('PRAGMA busy_timeout = 5000');
    const ins = db.prepare(`INSERT INTO roster (user, domain, contact, name, subscription, ask, pending_in, groups) VALUES ('mallory', 'localhost', ?, NULL, 'both', NULL, 0, '[]')`);
    db.exec('BEGIN');
    for (let i = 0; i < CONTACTS; i++) ins.run(`contact${i}@localhost`);
    db.exec('COMMIT');
  } finally {
    db.close();
  }
});
after(async () => {
  await server.dispose();
});

function pct(v: number[], q: number): number {
  const s = v.slice().sort((a, b) => a - b);
  return Math.round((s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? NaN) * 10) / 10;
}

test("a presence loop over a huge stored roster and a flood of long JIDs do not stop another pair's messages, and the server keeps accepting logins", { timeout: 120_000 }, async () => {
  const mallory = await RawConnection.open(server.port);
  const trudy = await RawConnection.open(server.port);
  const alice = await RawConnection.open(server.port);
  const bob = await RawConnection.open(server.port);
  let stop = false;
  try {
    await mallory.login('mallory', PW.mallory, 'loop');
    await trudy.login('trudy', PW.trudy, 'jids');
    await alice.login('alice', PW.alice, 'a');
    await bob.login('bob', PW.bob, 'b');
    const attacks = [
      (async () => {
        while (!stop && !mallory.isClosed) {
          if (!mallory.socket.write("<presence/><presence type='unavailable'/>".repeat(16))) await drainOrClose(mallory);
          await new Promise((r) => setImmediate(r));
        }
      })(),
      (async () => {
        const part = 'Ｌﬁ'.repeat(340);
        let i = 0;
        while (!stop && !trudy.isClosed) {
          let batch = '';
          for (let k = 0; k < 16; k++) batch += `<message to='${part}${i++}@localhost/${part}' type='chat'><body>x</body></message>`;
          if (!trudy.socket.write(batch)) await drainOrClose(trudy);
          await new Promise((r) => setImmediate(r));
        }
      })(),
    ];
    await new Promise((r) => setTimeout(r, 500));
    const latencies: number[] = [];
    for (let i = 1; i <= 100; i++) {
      const t0 = performance.now();
      alice.send(`<message to='bob@localhost/b' type='chat' id='m${i}'><body>ping ${i}</body></message>`);
      await bob.waitFor(new RegExp(`id=["']m${i}["']`), 30_000);
      latencies.push(performance.now() - t0);
    }
    // A new login during the attack.
    await stillServes(server, 'alice', PW.alice);
    console.log(`pair latency under attack, ms: p50 ${pct(latencies, 0.5)}, p99 ${pct(latencies, 0.99)}, max ${pct(latencies, 1)}`);
    stop = true;
    // Their reading may be held (that is the point): closing ends their writers.
    mallory.destroy();
    trudy.destroy();
    await Promise.all(attacks);
    assert.equal(latencies.length, 100);
  } finally {
    stop = true;
    for (const c of [mallory, trudy, alice, bob]) c.destroy();
  }
  await stillServes(server, 'bob', PW.bob);
});
