// A user sending far faster than everyone else is a heavy sender: each of
// its sessions is given a quarter of the input budget
// (listen.c2s.heavy_sender_factor), which an operator sees in
// petrel_c2s_heavy_sender_windows_total; the sessions of one account are
// counted together. Nothing it sent is lost, reordered or left unpushed; a
// sender alone is never heavy. Every
// message is pushed to a real webhook through the durable outbox, so each
// one waits for its commit before it is routed, as in production.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, type Petrel } from '../helpers/server.ts';
import { Webhook, poolToml } from '../delivery/helpers.ts';
import { RawConnection, drainOrClose, startHostile, type TomlValue } from './setup.ts';

const PW = 'pw-heavy-7';
const USERS = ['flooder', 'light', 'sink', 'peer'].map((u) => [u, PW] as [string, string]);
const hook = new Webhook();
let server: Petrel;
let metricsPort: number;

function pushing(listener: Record<string, TomlValue> = {}, metrics?: number): Promise<Petrel> {
  return startHostile({
    ...(metrics === undefined ? {} : { metricsPort: metrics }),
    listener,
    users: USERS,
    extraToml: `${poolToml('http_pool', hook.port, { timeout: 10_000 })}
[modules.mod_event_pusher]
  [modules.mod_event_pusher.backend.http]
    pool_name = "http_pool"
    path = "/events"
`,
  });
}

/** The pushes of messages whose body starts with `body`. */
function pushed(body: string): number {
  return hook.on('/events').filter((r) => r.body.includes(`message=${body}`)).length;
}

before(async () => {
  await hook.up();
  metricsPort = await freePort();
  server = await pushing({}, metricsPort);
});
after(async () => {
  await server?.dispose();
  await hook.down().catch(() => {});
});

async function heavyWindows(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('petrel_c2s_heavy_sender_windows_total '));
  assert.ok(line !== undefined, 'petrel_c2s_heavy_sender_windows_total is exported');
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** The ids of the messages `raw` receives whose id starts with `prefix`, in arrival order; the text itself is not kept. */
function collectIds(raw: RawConnection, prefix: string): number[] {
  const ids: number[] = [];
  const re = new RegExp(`id=["']${prefix}(\\d+)["']`, 'g');
  let carry = '';
  raw.socket.on('data', (chunk: string) => {
    const text = carry + chunk;
    let last = 0;
    for (const m of text.matchAll(re)) {
      ids.push(Number(m[1]));
      last = m.index + m[0].length;
    }
    carry = text.slice(Math.max(last, text.length - 64));
    raw.data = '';
  });
  return ids;
}

/** Writes 32 messages at a time to `to` for `ms` or until `max` are sent, as fast as the socket takes them; the number sent. */
async function flood(raw: RawConnection, to: string, prefix: string, ms: number, max: number): Promise<number> {
  const body = prefix + 'F'.repeat(300);
  let n = 0;
  const end = performance.now() + ms;
  while (performance.now() < end && n < max && !raw.isClosed) {
    let batch = '';
    for (let i = 0; i < 32; i++) batch += `<message to='${to}' type='chat' id='${prefix}${++n}'><body>${body}</body></message>`;
    if (!raw.socket.write(batch)) await drainOrClose(raw);
    else await new Promise((r) => setImmediate(r));
  }
  return n;
}

/** Sends `to` a short message every 20 ms until stopped; stop() resolves with the number sent. */
function pace(raw: RawConnection, to: string, prefix: string): { stop(): Promise<number> } {
  let sending = true;
  let n = 0;
  const loop = (async () => {
    while (sending) {
      raw.send(`<message to='${to}' type='chat' id='${prefix}${++n}'><body>paced ${n}</body></message>`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      sending = false;
      await loop;
      return n;
    },
  };
}

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** flooder floods sink alone for a second on `port`; every message must arrive, in order, and be pushed. */
async function floodAlone(port: number, prefix: string, max: number): Promise<void> {
  const flooder = await RawConnection.open(port);
  const sink = await RawConnection.open(port);
  try {
    await flooder.login('flooder', PW, prefix);
    const sinkJid = await sink.login('sink', PW, prefix);
    const got = collectIds(sink, prefix);
    const sent = await flood(flooder, sinkJid, prefix, 1000, max);
    await until('every flooded message', () => got.length === sent);
    assert.deepEqual(got, upTo(sent));
    await until('every push', () => pushed(`${prefix}F`) === sent);
  } finally {
    flooder.destroy();
    sink.destroy();
  }
}

test('a sender alone is never a heavy sender, however fast it sends', { timeout: 60_000 }, async () => {
  const before = await heavyWindows();
  await floodAlone(server.port, 'solo', 4000);
  assert.equal(await heavyWindows(), before);
});

test('a client sending far more than another is a heavy sender; every message of both arrives, in order', { timeout: 60_000 }, async () => {
  const flooder = await RawConnection.open(server.port);
  const sink = await RawConnection.open(server.port);
  const light = await RawConnection.open(server.port);
  const peer = await RawConnection.open(server.port);
  try {
    await flooder.login('flooder', PW, 'flood');
    const sinkJid = await sink.login('sink', PW, 'flood');
    await light.login('light', PW, 'paced');
    const peerJid = await peer.login('peer', PW, 'paced');
    const flooded = collectIds(sink, 'fl');
    const paced = collectIds(peer, 'p');
    const before = await heavyWindows();
    // The other user: a short message every 20 ms, meanwhile.
    const pacer = pace(light, peerJid, 'p');
    const sent = await flood(flooder, sinkJid, 'fl', 1500, 8000);
    const p = await pacer.stop();
    await until('every flooded and paced message', () => flooded.length === sent && paced.length === p);
    assert.deepEqual(flooded, upTo(sent));
    assert.deepEqual(paced, upTo(p));
    await until('every push', () => pushed('flF') === sent && pushed('paced+') === p);
    const windows = (await heavyWindows()) - before;
    assert.ok(windows > 0, `the flooder was never a heavy sender (${sent} messages of 300 bytes beside ${p} short ones)`);
  } finally {
    for (const c of [flooder, sink, light, peer]) c.destroy();
  }
});

test('one user flooding over four connections is one heavy sender beside another user, though each connection sends no more than the others; every message arrives, in order', { timeout: 60_000 }, async () => {
  const conns = await Promise.all(Array.from({ length: 4 }, () => RawConnection.open(server.port)));
  const sink = await RawConnection.open(server.port);
  const light = await RawConnection.open(server.port);
  const peer = await RawConnection.open(server.port);
  try {
    for (let i = 0; i < conns.length; i++) await conns[i]!.login('flooder', PW, `spread${i}`);
    const sinkJid = await sink.login('sink', PW, 'spread');
    await light.login('light', PW, 'spread');
    const peerJid = await peer.login('peer', PW, 'spread');
    // Each connection's messages have their own prefix, so their order is checked apart.
    const got = conns.map((_, i) => collectIds(sink, `s${i}x`));
    const paced = collectIds(peer, 'q');
    const before = await heavyWindows();
    const pacer = pace(light, peerJid, 'q');
    const sent = await Promise.all(conns.map((c, i) => flood(c, sinkJid, `s${i}x`, 1500, 2000)));
    const q = await pacer.stop();
    await until('every flooded and paced message', () => got.every((g, i) => g.length === sent[i]) && paced.length === q);
    for (let i = 0; i < conns.length; i++) assert.deepEqual(got[i], upTo(sent[i]!), `connection ${i}`);
    assert.deepEqual(paced, upTo(q));
    const windows = (await heavyWindows()) - before;
    assert.ok(windows > 0, `the four connections were never counted as one heavy sender (${sent.join(', ')} messages of 300 bytes beside ${q} short ones)`);
  } finally {
    for (const c of [...conns, sink, light, peer]) c.destroy();
  }
});

test('a listener with the smallest input budget (input_slice = 512, routing_backlog = 1) still delivers and pushes every message, in order', { timeout: 60_000 }, async () => {
  const small = await pushing({ input_slice: 512, routing_backlog: 1 });
  try {
    // With a backlog of one, each message waits for its own commit before the next is read.
    await floodAlone(small.port, 'tiny', 1000);
  } finally {
    await small.dispose();
  }
});
