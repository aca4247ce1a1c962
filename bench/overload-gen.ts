// The load generator of the overload and fairness phases (bench/overload.ts):
// its own process, driven over IPC. Flooders (pairs s<i> → r<i>) offer more
// than the webhook can take, writing only while their socket takes it and
// while fewer than FLOOD_WINDOW of their messages are on their way (a client
// whose socket is not read is held back, as a real one is, and what waits in
// the sockets stays bounded, so the phase drains in bounded time); paced
// pairs send at a steady rate and their send → delivery latency is measured.
// Every loop is bounded by a deadline.
import { login, type Conn } from './xmpp-client.ts';
import { MARK_RE, mark, now, sleep } from './common.ts';

interface Target {
  host: string;
  port: number;
  domain: string;
  password: string;
  register: boolean;
}

type Command =
  | { cmd: 'login'; target: Target; flooders: number[]; paced: number[] }
  | { cmd: 'run'; floodRate: number; pacedRate: number; durationMs: number; drainMs: number }
  | { cmd: 'count' }
  | { cmd: 'reset' }
  | { cmd: 'exit' };

const BODY_TEXT = ' Hi! Are we still on for lunch tomorrow at noon? Let me know.';
/** Output a flooder may have waiting in its socket before it is held back (bytes). */
const HOLD_BACK_BYTES = 64 * 1024;
/** Messages a full-speed flooder writes per turn while its socket takes them. */
const FULL_SPEED_BATCH = 64;
/** Messages of one flooder sent and not yet delivered at most. */
const FLOOD_WINDOW = 1000;
/** Per flooder pair: messages sent and not yet delivered. */
const inFlight = new Map<number, number>();

let domain = 'localhost';
let seq = 0;
const conns: Conn[] = [];
let flooders: Array<{ pair: number; s: Conn }> = [];
let paced: Array<{ pair: number; s: Conn }> = [];
const floodPairs = new Set<number>();

let floodSent = 0;
let floodHeldBack = 0;
let floodDelivered = 0;
let errors = 0;
/** Paced messages: send and receive times by seq. */
const pacedSendAt = new Map<number, number>();
const pacedLatencies: number[] = [];

function stanza(pair: number): string {
  const s = seq++;
  return `<message to='r${pair}@${domain}' type='chat' id='m${s}'><body>${mark(pair, s)}${BODY_TEXT}</body></message>`;
}

function receiverText(): (text: string) => void {
  let rest = '';
  return (chunk: string) => {
    const text = rest + chunk;
    const end = text.lastIndexOf('</message>');
    if (end === -1) {
      rest = text.length > 65536 ? '' : text;
      return;
    }
    const cut = end + 10;
    const scan = text.slice(0, cut);
    rest = text.slice(cut);
    const t = now();
    MARK_RE.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = MARK_RE.exec(scan)) !== null) {
      const pair = Number(m[1]);
      const s = Number(m[2]);
      if (floodPairs.has(pair)) {
        floodDelivered++;
        inFlight.set(pair, (inFlight.get(pair) ?? 1) - 1);
      }
      else {
        const at = pacedSendAt.get(s);
        if (at !== undefined) {
          pacedSendAt.delete(s);
          pacedLatencies.push(t - at);
        }
      }
    }
    if (scan.includes("type='error'") || scan.includes('type="error"')) errors++;
  };
}

async function loginAll(target: Target, fl: number[], pc: number[]): Promise<void> {
  domain = target.domain;
  const common = { host: target.host, port: target.port, domain: target.domain, password: target.password, register: target.register };
  const pairs = [...fl, ...pc];
  const receivers = await Promise.all(pairs.map((p) => login({ ...common, user: `r${p}`, resource: 'r', presence: true })));
  const senders = await Promise.all(pairs.map((p) => login({ ...common, user: `s${p}`, resource: 's', presence: true })));
  receivers.forEach((c) => {
    c.onText = receiverText();
    c.drain();
  });
  senders.forEach((c) => {
    c.onText = (text) => {
      if (text.includes("type='error'") || text.includes('type="error"')) errors++;
    };
    c.drain();
  });
  conns.push(...receivers, ...senders);
  flooders = fl.map((pair, i) => ({ pair, s: senders[i]! }));
  paced = pc.map((pair, i) => ({ pair, s: senders[fl.length + i]! }));
  for (const p of fl) {
    floodPairs.add(p);
    inFlight.set(p, 0);
  }
  await sleep(300);
}

const held = (f: { pair: number; s: Conn }) => (f.s.socket?.writableLength ?? 0) > HOLD_BACK_BYTES || inFlight.get(f.pair)! >= FLOOD_WINDOW;

/** Floods at `floodRate` msg/s in all (Infinity: as fast as the sockets take it) and paces at `pacedRate` for `durationMs`. */
async function run(floodRate: number, pacedRate: number, durationMs: number, drainMs: number) {
  const t0 = now();
  let floodDue = 0;
  let pacedIssued = 0;
  const pacedTotal = Math.round((pacedRate * durationMs) / 1000);
  while (now() - t0 < durationMs) {
    const t = now();
    // The flooders: what is due, round-robin, each held back while its socket is backed up.
    if (flooders.length > 0) {
      if (Number.isFinite(floodRate)) {
        const due = Math.floor(((t - t0) * floodRate) / 1000);
        const batches: string[][] = flooders.map(() => []);
        for (; floodDue < due; floodDue++) {
          const i = floodDue % flooders.length;
          const f = flooders[i]!;
          if (held(f)) {
            floodHeldBack++;
            continue;
          }
          batches[i]!.push(stanza(f.pair));
          inFlight.set(f.pair, inFlight.get(f.pair)! + 1);
          floodSent++;
        }
        batches.forEach((b, i) => b.length > 0 && flooders[i]!.s.writeAll(b));
      } else {
        for (const f of flooders) {
          if (held(f)) continue;
          const b: string[] = [];
          for (let k = 0; k < FULL_SPEED_BATCH; k++) b.push(stanza(f.pair));
          floodSent += b.length;
          inFlight.set(f.pair, inFlight.get(f.pair)! + b.length);
          f.s.writeAll(b);
        }
      }
    }
    // The paced pairs.
    if (paced.length > 0) {
      const due = Math.min(pacedTotal, Math.floor(((t - t0) * pacedRate) / 1000) + 1);
      for (; pacedIssued < due; pacedIssued++) {
        const p = paced[pacedIssued % paced.length]!;
        pacedSendAt.set(seq, t);
        p.s.writeAll([stanza(p.pair)]);
      }
    }
    await sleep(1);
  }
  const tEnd = now();
  const deadline = tEnd + drainMs;
  while (now() < deadline && pacedSendAt.size > 0) await sleep(20);
  return {
    floodSent,
    floodHeldBack,
    floodDelivered,
    floodOfferedPerSec: Number.isFinite(floodRate) ? floodRate : null,
    floodAcceptedPerSec: Math.round((floodSent * 1000) / (tEnd - t0)),
    pacedSent: pacedIssued,
    pacedLost: pacedSendAt.size,
    pacedLatencies,
    errors,
  };
}

process.on('message', (m: Command) => {
  const reply = (v: object) => process.send!(v);
  const fail = (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) });
  switch (m.cmd) {
    case 'login':
      loginAll(m.target, m.flooders, m.paced).then(() => reply({ ok: true }), fail);
      break;
    case 'run':
      run(m.floodRate ?? Infinity, m.pacedRate, m.durationMs, m.drainMs).then(reply, fail);
      break;
    case 'count':
      reply({ floodSent, floodDelivered, errors });
      break;
    case 'reset':
      // After a warm-up: the latencies measured so far are forgotten (the counts of what was sent stay).
      pacedLatencies.length = 0;
      reply({ ok: true });
      break;
    case 'exit':
      for (const c of conns) c.destroy();
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });
