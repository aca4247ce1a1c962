// What one user's stanzas cost everyone else: the message latency of a
// sender/receiver pair, measured alone and while another user runs an
// attack that makes the server work much per stanza it sends:
//   presence  initial presence and unavailable again and again, with a
//             roster of --roster contacts written straight into the store
//             (the server reads at most mod_roster's max_items of them);
//   bind      new connections binding a resource of 100 000 characters;
//   jid       messages addressed to JIDs of 3000 characters that need
//             Unicode preparation (NFKC, case folding).
// Prints one JSON line: p50 / p99 / max latency (ms) of each phase. Timing
// is reported, never judged: run it on a quiet machine for figures.
//
//   node bench/amplification.ts [--seconds=5] [--roster=20000] [--attacks=presence,bind,jid]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, now, percentiles, sleep, type Percentiles } from './common.ts';
import { registerUsers } from './register.ts';
import { startPetrel } from './servers.ts';
import { login, type Conn } from './xmpp-client.ts';
import { SQLITE_FILE } from '../src/storage/index.ts';
import { migrateSqlite } from '../src/storage/migrations.ts';
import { closeSqliteDatabase, openSqliteDatabase } from '../src/storage/sqlite.ts';
import { ROSTER_MIGRATIONS } from '../src/modules/mod_roster/store.ts';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    roster: { type: 'string', default: '20000' },
    attacks: { type: 'string', default: 'presence,bind,jid' },
  },
});
const SECONDS = Number(flags.seconds);
const ROSTER = Number(flags.roster);
const ATTACKS = flags.attacks!.split(',').filter((a) => a !== '');
const PASSWORD = 'bench-password';
const DOMAIN = 'localhost';

/** Gives s1 (the attacker) a roster of `n` contacts subscribed to its presence. */
function writeRoster(dataDir: string, n: number): void {
  const db = openSqliteDatabase(join(dataDir, SQLITE_FILE));
  try {
    migrateSqlite(db, ROSTER_MIGRATIONS.component, ROSTER_MIGRATIONS.internal);
    const ins = db.prepare(`INSERT INTO roster (user, domain, contact, name, subscription, ask, pending_in, groups) VALUES ('s1', ?, ?, NULL, 'both', NULL, 0, '[]')`);
    db.exec('BEGIN');
    for (let i = 0; i < n; i++) ins.run(DOMAIN, `contact${i}@${DOMAIN}`);
    db.exec('COMMIT');
  } finally {
    closeSqliteDatabase(db);
  }
}

/** Latency of s0 → r0 messages, one every 5 ms, for `ms`. */
async function measure(sender: Conn, receiver: Conn, ms: number, phase: string): Promise<Percentiles> {
  const sentAt = new Map<number, number>();
  const samples: number[] = [];
  const re = new RegExp(`lat${phase}q(\\d+)x`, 'g');
  receiver.onText = (text) => {
    const t = now();
    for (const m of text.matchAll(re)) {
      const at = sentAt.get(Number(m[1]));
      if (at !== undefined) samples.push(t - at);
    }
  };
  const end = now() + ms;
  let seq = 0;
  while (now() < end) {
    seq++;
    sentAt.set(seq, now());
    sender.write(`<message to='r0@${DOMAIN}/bench' type='chat'><body>lat${phase}q${seq}x</body></message>`);
    await sleep(5);
  }
  await sleep(500);
  receiver.onText = null;
  return percentiles(samples);
}

/** Runs `attack` until `stop` resolves. */
async function run(attack: string, port: number, stop: { done: boolean }): Promise<void> {
  if (attack === 'presence') {
    const c = await login({ host: '127.0.0.1', port, domain: DOMAIN, user: 's1', password: PASSWORD, resource: 'attack' });
    c.onText = () => {};
    while (!stop.done) {
      if (!c.socket!.write("<presence/><presence type='unavailable'/>".repeat(8))) await new Promise((r) => c.socket!.once('drain', r));
      await sleep(1);
    }
    c.destroy();
  } else if (attack === 'bind') {
    const resource = 'R'.repeat(100_000);
    while (!stop.done) {
      const c = await login({ host: '127.0.0.1', port, domain: DOMAIN, user: 's1', password: PASSWORD, resource: 'b' }).catch(() => null);
      if (c === null) continue;
      c.onText = () => {};
      for (let i = 0; i < 20 && !stop.done; i++) {
        c.write(`<iq type='set' id='b${i}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`);
        await sleep(2);
      }
      c.destroy();
    }
  } else if (attack === 'jid') {
    const c = await login({ host: '127.0.0.1', port, domain: DOMAIN, user: 's1', password: PASSWORD, resource: 'jid' });
    c.onText = () => {};
    // Full-width letters and ligatures: every one changes under NFKC.
    const part = 'Ｌﬁ'.repeat(340);
    let i = 0;
    while (!stop.done) {
      let batch = '';
      for (let k = 0; k < 16; k++) batch += `<message to='${part}${i++}@${DOMAIN}/${part}' type='chat'><body>x</body></message>`;
      if (!c.socket!.write(batch)) await new Promise((r) => c.socket!.once('drain', r));
      await sleep(1);
    }
    c.destroy();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'petrel-amplification-'));
const dataDir = join(dir, 'data');
try {
  await registerUsers({ dataDir, domain: DOMAIN, pairs: 2, idle: 0, password: PASSWORD, iterations: 4096 });
  writeRoster(dataDir, ROSTER);
  const port = await freePort();
  const server = await startPetrel({ dir, name: 'petrel', port, dataDir, push: null });
  try {
    const sender = await login({ host: '127.0.0.1', port, domain: DOMAIN, user: 's0', password: PASSWORD, resource: 'bench' });
    const receiver = await login({ host: '127.0.0.1', port, domain: DOMAIN, user: 'r0', password: PASSWORD, resource: 'bench', presence: true });
    receiver.drain();
    await sleep(300);
    const out: Record<string, Percentiles> = { none: await measure(sender, receiver, SECONDS * 1000, 'none') };
    for (const attack of ATTACKS) {
      const stop = { done: false };
      const running = run(attack, port, stop);
      await sleep(300);
      out[attack] = await measure(sender, receiver, SECONDS * 1000, attack);
      stop.done = true;
      await running;
      await sleep(500);
    }
    const r = (p: Percentiles) => ({ n: p.n, p50: p.p50, p99: p.p99, max: p.max });
    console.log(JSON.stringify({ roster: ROSTER, seconds: SECONDS, latency_ms: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, r(v)])) }));
    sender.destroy();
    receiver.destroy();
  } catch (err) {
    console.error(readFileSync(server.log, 'utf8').split('\n').slice(-15).join('\n').slice(0, 4000));
    throw err;
  } finally {
    await server.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
