// The load generator: its own process, driven by the benchmark runner over
// IPC. It logs in sender/receiver pairs (sender i writes to receiver i's
// bare JID) and idle users, and runs the saturation and paced loads. Every
// loop it runs is bounded by a count or a deadline.
import { login, type Conn } from './xmpp-client.ts';
import { MARK_RE, mark, now, sleep } from './common.ts';

interface Target {
  host: string;
  port: number;
  domain: string;
  password: string;
  register: boolean;
  /** Log in over XMPP over WebSocket at ws://host:port<path> instead of TCP. */
  ws?: { port: number; path: string };
}

type Command =
  /** `ports`: the port each sender and each receiver logs in on (several nodes of a cluster); default the target's. */
  | { cmd: 'pairs'; target: Target; n: number; batch: number; ports?: { s: number[]; r: number[] } }
  | { cmd: 'satStart'; window: number }
  | { cmd: 'count' }
  | { cmd: 'satStop'; drainMs: number }
  | { cmd: 'paced'; rate: number; durationMs: number; drainMs: number }
  | { cmd: 'idle'; target: Target; from: number; count: number; batch: number }
  | { cmd: 'closeIdle' }
  | { cmd: 'closePairs' }
  | { cmd: 'exit' };

const BODY_TEXT = ' Hi! Are we still on for lunch tomorrow at noon? Let me know.';

let senders: Conn[] = [];
let receivers: Conn[] = [];
let idle: Conn[] = [];
let domain = 'localhost';

let seq = 0;
let sent = 0;
let delivered = 0;
let errors = 0;

// Saturation state.
let saturating = false;
let inFlight: Int32Array = new Int32Array(0);

// Paced state: times indexed by seq - pacedBase.
let pacedBase = -1;
let pacedSend: Float64Array = new Float64Array(0);
let pacedRecv: Float64Array = new Float64Array(0);

function stanza(pair: number): string {
  const s = seq++;
  const m = mark(pair, s);
  // The id has no marker, so each delivered stanza holds exactly one.
  return `<message to='r${pair}@${domain}' type='chat' id='m${s}'><body>${m}${BODY_TEXT}</body></message>`;
}

function onDelivered(pair: number, s: number, t: number): void {
  delivered++;
  if (pacedBase >= 0) {
    const i = s - pacedBase;
    if (i >= 0 && i < pacedRecv.length && pacedRecv[i] === 0) pacedRecv[i] = t;
  }
  if (pair < inFlight.length && inFlight[pair]! > 0) inFlight[pair]!--;
}

function refill(pair: number, window: number): void {
  const need = window - inFlight[pair]!;
  if (need <= 0) return;
  const out: string[] = [];
  for (let k = 0; k < need; k++) out.push(stanza(pair));
  inFlight[pair]! += need;
  sent += need;
  senders[pair]!.writeAll(out);
}

let satWindow = 0;

function receiverText(pair: number): (text: string) => void {
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
    while ((m = MARK_RE.exec(scan)) !== null) onDelivered(Number(m[1]), Number(m[2]), t);
    if (scan.includes("type='error'") || scan.includes('type="error"')) errors++;
    if (saturating) refill(pair, satWindow);
  };
}

async function inBatches<T>(count: number, batch: number, make: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < count; i += batch) {
    const part = await Promise.all(Array.from({ length: Math.min(batch, count - i) }, (_, k) => make(i + k)));
    out.push(...part);
  }
  return out;
}

async function pairs(target: Target, n: number, batch: number, ports?: { s: number[]; r: number[] }): Promise<void> {
  domain = target.domain;
  const common = { host: target.host, port: target.port, domain: target.domain, password: target.password, register: target.register, ws: target.ws };
  receivers = await inBatches(n, batch, (i) => login({ ...common, port: ports?.r[i] ?? common.port, user: `r${i}`, resource: 'r', presence: true }));
  senders = await inBatches(n, batch, (i) => login({ ...common, port: ports?.s[i] ?? common.port, user: `s${i}`, resource: 's', presence: true }));
  inFlight = new Int32Array(n);
  receivers.forEach((c, i) => {
    c.onText = receiverText(i);
    c.drain();
  });
  senders.forEach((c) => {
    c.onText = (text) => {
      if (text.includes("type='error'") || text.includes('type="error"')) errors++;
    };
    c.drain();
  });
  // Presence broadcasts and roster pushes settle before any load starts.
  await sleep(300);
}

function satStart(window: number): void {
  satWindow = window;
  saturating = true;
  inFlight.fill(0);
  for (let p = 0; p < senders.length; p++) refill(p, window);
}

async function satStop(drainMs: number): Promise<void> {
  saturating = false;
  const deadline = now() + drainMs;
  while (now() < deadline && inFlight.some((x) => x > 0)) await sleep(20);
}

async function paced(rate: number, durationMs: number, drainMs: number): Promise<{ sendTimes: number[]; latencies: number[]; seqs: number[]; lost: number; achievedRate: number }> {
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  pacedBase = seq;
  pacedSend = new Float64Array(total);
  pacedRecv = new Float64Array(total);
  const n = senders.length;
  const t0 = now();
  let issued = 0;
  // Each tick sends the messages due by now, round-robin over the pairs, one write per sender.
  while (issued < total) {
    const due = Math.min(total, Math.floor(((now() - t0) * rate) / 1000) + 1);
    if (due > issued) {
      const batches = new Map<number, string[]>();
      const t = now();
      for (; issued < due; issued++) {
        const pair = issued % n;
        pacedSend[seq - pacedBase] = t;
        let b = batches.get(pair);
        if (b === undefined) batches.set(pair, (b = []));
        b.push(stanza(pair));
        sent++;
      }
      for (const [pair, out] of batches) senders[pair]!.writeAll(out);
    }
    if (now() - t0 > durationMs * 2) break;
    // A 1 ms timer, not setImmediate: a spinning generator would take CPU from the server.
    await sleep(1);
  }
  const tEnd = now();
  const deadline = tEnd + drainMs;
  const received = () => {
    let k = 0;
    for (let i = 0; i < total; i++) if (pacedRecv[i] !== 0) k++;
    return k;
  };
  while (now() < deadline && received() < issued) await sleep(20);
  const latencies: number[] = [];
  const seqs: number[] = [];
  const sendTimes: number[] = [];
  let lost = 0;
  for (let i = 0; i < issued; i++) {
    seqs.push(pacedBase + i);
    sendTimes.push(pacedSend[i]!);
    if (pacedRecv[i] === 0) lost++;
    else latencies.push(pacedRecv[i]! - pacedSend[i]!);
  }
  pacedBase = -1;
  return { sendTimes, latencies, seqs, lost, achievedRate: (issued * 1000) / (tEnd - t0) };
}

async function connectIdle(target: Target, from: number, count: number, batch: number): Promise<{ failed: number; reasons: Record<string, number> }> {
  const common = { host: target.host, port: target.port, domain: target.domain, password: target.password, register: target.register, ws: target.ws };
  let failed = 0;
  const reasons = new Map<string, number>();
  const conns = await inBatches(count, batch, (i) =>
    login({ ...common, user: `i${from + i}`, resource: 'idle' }).catch((err: Error) => {
      failed++;
      const why = err.message.replace(/^\S+: /, '');
      reasons.set(why, (reasons.get(why) ?? 0) + 1);
      return null;
    }),
  );
  for (const c of conns) if (c !== null) idle.push(c);
  return { failed, reasons: Object.fromEntries(reasons) };
}

function closeAll(list: Conn[]): void {
  for (const c of list) c.destroy();
}

process.on('message', (m: Command) => {
  const reply = (v: object) => process.send!(v);
  const fail = (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) });
  switch (m.cmd) {
    case 'pairs':
      pairs(m.target, m.n, m.batch, m.ports).then(() => reply({ ok: true }), fail);
      break;
    case 'satStart':
      satStart(m.window);
      reply({ ok: true, t: now() });
      break;
    case 'count':
      reply({ sent, delivered, errors, t: now() });
      break;
    case 'satStop':
      satStop(m.drainMs).then(() => reply({ sent, delivered, errors, inFlight: inFlight.reduce((a, b) => a + b, 0) }), fail);
      break;
    case 'paced':
      paced(m.rate, m.durationMs, m.drainMs).then((r) => reply(r), fail);
      break;
    case 'idle':
      connectIdle(m.target, m.from, m.count, m.batch).then((r) => reply({ ok: true, ...r, open: idle.length }), fail);
      break;
    case 'closeIdle':
      closeAll(idle);
      idle = [];
      reply({ ok: true });
      break;
    case 'closePairs':
      closeAll(senders);
      closeAll(receivers);
      senders = [];
      receivers = [];
      reply({ ok: true });
      break;
    case 'exit':
      closeAll(idle);
      closeAll(senders);
      closeAll(receivers);
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });
