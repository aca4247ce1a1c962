// A client flooding the server, with a shaper on its listener, does not
// make other users' messages late: delivery latency between three other
// users is measured before and during the flood.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Petrel } from '../helpers/server.ts';
import { RawConnection, drainOrClose, startHostile } from './setup.ts';

const RATE = 100_000;
const USERS = ['u1', 'u2', 'u3'] as const;
const PW = 'pw-flood-3';
/** Each user sends its neighbour one message this often. */
const INTERVAL_MS = 20;
const PHASE_MS = Number(process.env.FLOOD_PHASE_MS ?? 1500);

let server: Petrel;
before(async () => {
  server = await startHostile({
    shaperRate: RATE,
    users: [...USERS.map((u) => [u, PW] as [string, string]), ['mallory', PW], ['sink', PW]],
  });
});
after(async () => {
  await server.dispose();
});

/** Calls `onId` with the id of every message (matching `pattern`) that arrives on `raw`, as it arrives. */
function watchIds(raw: RawConnection, pattern: RegExp, onId: (id: string, now: number) => void): void {
  let carry = '';
  raw.socket.on('data', (chunk: string) => {
    const now = performance.now();
    const text = carry + chunk;
    let last = 0;
    for (const m of text.matchAll(pattern)) {
      onId(m[1]!, now);
      last = m.index + m[0].length;
    }
    carry = text.slice(Math.max(last, text.length - 128));
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Stats {
  n: number;
  p50: number;
  p99: number;
  max: number;
  lost: number;
}

/** Every user sends its neighbour a message each INTERVAL_MS for `ms`; the latency of those that arrive. */
async function measure(conns: RawConnection[], jids: string[], phase: string, ms: number): Promise<Stats> {
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const handlers = conns.map((_, i) => (id: string, now: number) => {
    const t = sentAt.get(id);
    if (t !== undefined && id.startsWith(`${phase}-`)) {
      latencies.push(now - t);
      sentAt.delete(id);
    }
    void i;
  });
  conns.forEach((c, i) => watchIds(c, new RegExp(`id=["'](${phase}-\\d+-\\d+)["']`, 'g'), handlers[i]!));
  let seq = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    conns.forEach((c, i) => {
      const id = `${phase}-${i}-${++seq}`;
      sentAt.set(id, performance.now());
      c.send(`<message to='${jids[(i + 1) % jids.length]}' type='chat' id='${id}'><body>ping ${seq}</body></message>`);
    });
    await new Promise((r) => setTimeout(r, INTERVAL_MS));
  }
  // Stragglers get a second, then count as lost.
  const wait = performance.now() + 1000;
  while (sentAt.size > 0 && performance.now() < wait) await new Promise((r) => setTimeout(r, 20));
  latencies.sort((a, b) => a - b);
  return { n: latencies.length, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1)!, lost: sentAt.size };
}

test('a flooding client on a shaped listener does not raise other users\' delivery latency much', { timeout: 60_000 }, async () => {
  const conns: RawConnection[] = [];
  const jids: string[] = [];
  let flooding = true;
  try {
    for (const u of USERS) {
      const c = await RawConnection.open(server.port);
      conns.push(c);
      jids.push(await c.login(u, PW, 'lat'));
    }
    const sink = await RawConnection.open(server.port);
    conns.push(sink);
    const sinkJid = await sink.login('sink', PW, 'all');
    let sunk = 0;
    watchIds(sink, /id=["'](fl\d+)["']/g, () => sunk++);
    // The sink reads, but keeps no text: megabytes may pass through it.
    sink.socket.on('data', () => {
      sink.data = '';
    });

    const baseline = await measure(conns.slice(0, 3), jids, 'base', PHASE_MS);

    const mallory = await RawConnection.open(server.port);
    conns.push(mallory);
    await mallory.login('mallory', PW, 'flood');
    const body = 'F'.repeat(2000);
    let floodBytes = 0;
    let n = 0;
    const floodStart = performance.now();
    const pump = (async () => {
      while (flooding && !mallory.isClosed) {
        let batch = '';
        for (let i = 0; i < 32; i++) batch += `<message to='${sinkJid}' type='chat' id='fl${++n}'><body>${body}</body></message>`;
        floodBytes += batch.length;
        if (!mallory.socket.write(batch)) await drainOrClose(mallory);
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const during = await measure(conns.slice(0, 3), jids, 'flood', PHASE_MS);
    const floodSeconds = (performance.now() - floodStart) / 1000;
    flooding = false;
    mallory.destroy();
    await pump.catch(() => {});

    const fmt = (s: Stats) => `n=${s.n} p50=${s.p50.toFixed(1)}ms p99=${s.p99.toFixed(1)}ms max=${s.max.toFixed(1)}ms lost=${s.lost}`;
    const report =
      `baseline: ${fmt(baseline)}\nflooding: ${fmt(during)}\n` +
      `flooder queued ${(floodBytes / 1e6).toFixed(1)} MB in ${floodSeconds.toFixed(1)} s; ` +
      `the server passed on ${sunk} of its messages (${((sunk * 2100) / floodSeconds / 1000).toFixed(0)} kB/s, shaper ${RATE / 1000} kB/s)`;
    console.log(report);

    assert.equal(during.lost, 0, report);
    assert.ok(during.p99 < 500, `p99 latency under flood is ${during.p99.toFixed(1)} ms\n${report}`);
    // The shaper held the flooder to about its rate (one second of burst allowed).
    assert.ok(sunk * 2100 < RATE * (floodSeconds + 2), report);
  } finally {
    flooding = false;
    for (const c of conns) c.destroy();
  }
});
