// Micro-benchmarks of the pieces on the message path, each as operations per
// second: stream parsing, JID preparation, form encoding, hook dispatch,
// serialisation, the per-push extras (webhook id, response-time metrics), and
// the benchmark sink's request reader. The outgoing HTTP pool has its own,
// asynchronous one: bench/micro-http.ts.
// `node bench/micro.ts [--ms=600] [--only=NAME]` or `npm run bench -- --micro`.
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Counter, Registry } from 'prom-client';
import { StreamParser } from '../src/xmpp/stream-parser.ts';
import { Element, serialize } from '../src/xmpp/xml.ts';
import { parseJid } from '../src/xmpp/jid.ts';
import { Hooks, STOP } from '../src/hooks/hooks.ts';
import { formBody } from '../src/modules/mod_event_pusher/http/form.ts';
import { RequestReader } from './http-responder.ts';
import { newWebhookId } from '../src/modules/mod_event_pusher/http/webhook-id.ts';
import { httpBackendMetrics } from '../src/modules/mod_event_pusher/http/metrics.ts';
import type { Acc } from '../src/hooks/catalogue.ts';
import { encodePayload, encodePrefix, payloadDecoder } from '../src/modules/mod_event_pusher/http/payload.ts';
import { packBatch, unpackBatch } from '../src/storage/outbox/packed.ts';
import { metricCounter } from '../src/modules/mod_event_pusher/delivery/thread.ts';
import { deliveryMetrics } from '../src/modules/mod_event_pusher/delivery/metrics.ts';
import { GroupCommit, takeFair } from '../src/storage/outbox/group-commit.ts';
import { OutboxTables } from '../src/storage/outbox/sqlite-tables.ts';
import { SenderRates, newSenderMeter } from '../src/c2s/sender-rates.ts';
import type { NewOutboxRow, SettleOp } from '../src/storage/outbox/types.ts';

const { values } = parseArgs({ args: process.argv.slice(2), options: { ms: { type: 'string' }, only: { type: 'string' } } });
const RUN_MS = Number(values.ms ?? 600);

interface Result {
  name: string;
  opsPerSec: number;
  nsPerOp: number;
}
const results: Result[] = [];

/** Runs `fn(n)` (which performs n operations) in growing batches: a warm-up, then RUN_MS measured. */
function bench(name: string, fn: (n: number) => void): void {
  if (values.only !== undefined && !name.includes(values.only)) return;
  let batch = 1;
  const warmEnd = performance.now() + RUN_MS / 3;
  while (performance.now() < warmEnd) {
    fn(batch);
    if (batch < 1 << 20) batch *= 2;
  }
  let ops = 0;
  const t0 = performance.now();
  let t = t0;
  // Bounded by time; each batch is small enough to overshoot by little.
  while (t - t0 < RUN_MS) {
    fn(batch);
    ops += batch;
    t = performance.now();
    if (t - t0 < RUN_MS / 20 && batch < 1 << 20) batch *= 2;
  }
  const secs = (t - t0) / 1000;
  const r = { name, opsPerSec: Math.round(ops / secs), nsPerOp: Math.round((secs * 1e9) / ops) };
  results.push(r);
  process.stdout.write(`${name.padEnd(52)} ${r.opsPerSec.toLocaleString('en-US').padStart(14)} ops/s ${String(r.nsPerOp).padStart(8)} ns/op\n`);
}

let sink = 0;

// --- XML stream parsing ---------------------------------------------------------

const HEADER = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
const MESSAGE = "<message to='bob@localhost' type='chat' id='m1234'><body>Hi! Are we still on for lunch tomorrow at noon? Let me know.</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>";
const PRESENCE = "<presence><show>away</show><status>In a meeting</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>";
const IQ = "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>";

function parserBench(name: string, stanza: string, perChunk: number): void {
  const chunk = Buffer.from(stanza.repeat(perChunk));
  const p = new StreamParser(
    { onHeader() {}, onStanza: () => void sink++, onEnd() {}, onError: (c, t) => { throw new Error(`${c}: ${t}`); } },
    { maxStanzaSize: 0, maxDepth: 64 },
  );
  p.write(Buffer.from(HEADER));
  bench(name, (n) => {
    for (let i = 0; i < n; i += perChunk) p.write(chunk);
  });
}

parserBench('parse <message> (1 stanza per chunk)', MESSAGE, 1);
parserBench('parse <message> (16 stanzas per chunk)', MESSAGE, 16);
parserBench('parse <presence> with caps', PRESENCE, 1);
parserBench('parse roster <iq>', IQ, 1);

// --- JID -----------------------------------------------------------------------

bench('parseJid, cache hit', (n) => {
  for (let i = 0; i < n; i++) sink += parseJid('alice@localhost/phone').full.length;
});
{
  // Distinct strings, more than the cache holds, so every call prepares all parts.
  const many: string[] = [];
  for (let i = 0; i < 200_000; i++) many.push(`user${i}@Example.COM/res${i}`);
  let k = 0;
  bench('parseJid, cache miss (nodeprep+nameprep+resourceprep)', (n) => {
    for (let i = 0; i < n; i++) {
      sink += parseJid(many[k]!).full.length;
      if (++k === many.length) k = 0;
    }
  });
  const ascii: string[] = [];
  for (let i = 0; i < 200_000; i++) ascii.push(`u${i}@localhost`);
  bench('parseJid, cache miss, bare ASCII', (n) => {
    for (let i = 0; i < n; i++) {
      sink += parseJid(ascii[k % ascii.length]!).full.length;
      k++;
    }
  });
  // As the router sees them: attribute values sliced out of the parser's chunk,
  // a new string object for every stanza even when the address is the same.
  const sliceAll = (chunk: string) => {
    const out: string[] = [];
    for (let i = 0, at = 0; i < 20_000; i++) {
      out.push(chunk.slice(at, at + many[i]!.length));
      at += many[i]!.length + 1;
    }
    return out;
  };
  const sliced = sliceAll(Buffer.from(many.slice(0, 20_000).join(' ')).toString('latin1'));
  const again = sliceAll(Buffer.from(many.slice(0, 20_000).join(' ')).toString('latin1'));
  // Cached from `sliced` (twice, in case the first pass fills the cache and clears it), looked up with `again`.
  for (let pass = 0; pass < 2; pass++) for (let i = 0; i < 1024; i++) sink += parseJid(sliced[i]!).full.length;
  bench('parseJid, cache hit, another slice of a cached address', (n) => {
    for (let i = 0; i < n; i++) sink += parseJid(again[i & 1023]!).full.length;
  });
  bench('parseJid, cache miss, sliced from a chunk', (n) => {
    for (let i = 0; i < n; i++) {
      sink += parseJid(sliced[k % sliced.length]!).full.length;
      k++;
    }
  });
  const unicode: string[] = [];
  for (let i = 0; i < 200_000; i++) unicode.push(`J\u00DCrgen${i}@Example.COM/T\u00E9l\u00E9phone`);
  bench('parseJid, cache miss, non-ASCII localpart and resource', (n) => {
    for (let i = 0; i < n; i++) {
      sink += parseJid(unicode[k % unicode.length]!).full.length;
      k++;
    }
  });
}

// --- form encoding ------------------------------------------------------------------

const FORM: Array<[string, string]> = [
  ['author', 'alice'],
  ['server', 'localhost'],
  ['receiver', 'bob'],
  ['message', 'Hi! Are we still on for lunch tomorrow at noon? Let me know.'],
];
const FORM_ASCII: Array<[string, string]> = [
  ['author', 'alice'],
  ['server', 'localhost'],
  ['receiver', 'bob'],
  ['message', 'hello'],
];
bench('form: URLSearchParams (typical body)', (n) => {
  for (let i = 0; i < n; i++) sink += new URLSearchParams(FORM).toString().length;
});
bench('form: formBody (typical body)', (n) => {
  for (let i = 0; i < n; i++) sink += formBody(FORM).length;
});
bench('form: URLSearchParams (plain ASCII fields)', (n) => {
  for (let i = 0; i < n; i++) sink += new URLSearchParams(FORM_ASCII).toString().length;
});
bench('form: formBody (plain ASCII fields)', (n) => {
  for (let i = 0; i < n; i++) sink += formBody(FORM_ASCII).length;
});

// --- the sink's request reader (bench/http-responder.ts) ---------------------------

const REQ_BODY = 'author=s1&server=localhost&receiver=r1&message=bx0q1x+Hi%21+Are+we+still+on+for+lunch+tomorrow+at+noon%3F+Let+me+know.';
const ONE_REQ = Buffer.from(`POST /webservice/notifications HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-type: application/x-www-form-urlencoded\r\nwebhook-id: msg_2x1bTzQlqYQyT8aE0dRk4g\r\ncontent-length: ${REQ_BODY.length}\r\n\r\n${REQ_BODY}`, 'latin1');
const EIGHT_REQ = Buffer.concat(Array(8).fill(ONE_REQ));
const reader = new RequestReader();
if (reader.push(EIGHT_REQ).length !== 8 || reader.pending !== 0) throw new Error('the request reader does not read the sample requests');
bench('sink: read 1 request from a chunk', (n) => {
  for (let i = 0; i < n; i++) sink += reader.push(ONE_REQ).length;
});
bench('sink: read 8 pipelined requests from a chunk (per request)', (n) => {
  for (let i = 0; i < n; i += 8) sink += reader.push(EIGHT_REQ).length;
});

// --- hooks --------------------------------------------------------------------------

{
  const hooks = new Hooks(() => {});
  const from = parseJid('alice@localhost/phone');
  const to = parseJid('bob@localhost');
  const packet = new Element('message', { to: 'bob@localhost', type: 'chat' });
  const acc: Acc = { ref: 'r', timestamp: 0, hostType: 'localhost', lserver: 'localhost', element: packet, from, to };
  const params = { acc, from, to, packet };
  bench('hooks.run, no handlers', (n) => {
    for (let i = 0; i < n; i++) if (hooks.run('user_send_message', 'localhost', params)) sink++;
  });
  for (let k = 0; k < 3; k++) hooks.add({ hook: 'user_send_message', host: k === 1 ? 'localhost' : '*', priority: 50 + k, owner: 'm' + k, handler: () => void sink++ });
  bench('hooks.run, 3 handlers', (n) => {
    for (let i = 0; i < n; i++) if (hooks.run('user_send_message', 'localhost', params)) sink++;
  });
  hooks.add({ hook: 'filter_local_packet', host: '*', priority: 10, owner: 's', handler: () => STOP });
  bench('hooks.run, first handler stops', (n) => {
    for (let i = 0; i < n; i++) if (!hooks.run('filter_local_packet', 'localhost', params)) sink++;
  });
}

// --- serialisation -----------------------------------------------------------------------

{
  const msg = new Element('message', { from: 'alice@localhost/phone', to: 'bob@localhost', type: 'chat', id: 'm1234' });
  msg.c('body').t('Hi! Are we still on for lunch tomorrow at noon? Let me know.');
  msg.c('active', { xmlns: 'http://jabber.org/protocol/chatstates' });
  bench('serialize <message> with body', (n) => {
    for (let i = 0; i < n; i++) sink += serialize(msg).length;
  });
  const esc = new Element('message', { from: 'alice@localhost/phone', to: 'bob@localhost', type: 'chat', id: 'm1234' });
  esc.c('body').t('a < b && c > "d" — it\'s <escaped>');
  bench('serialize <message> needing escapes', (n) => {
    for (let i = 0; i < n; i++) sink += serialize(esc).length;
  });
}

// --- per-push extras ------------------------------------------------------------------

bench('newWebhookId (process prefix and a counter)', (n) => {
  for (let i = 0; i < n; i++) sink += newWebhookId().length;
});
{
  const m = httpBackendMetrics(new Registry()).forHost('localhost');
  bench('response-time metrics observe (histogram + 60 s reservoir)', (n) => {
    for (let i = 0; i < n; i++) m.observe(300 + (i & 1023));
  });
  // batchedInc: added up, one prom-client inc per piece of work (the microtask runs after the bench).
  bench('sent counter inc (batchedInc)', (n) => {
    for (let i = 0; i < n; i++) m.sent.inc();
  });
  const child = new Counter({ name: 'micro_plain_total', help: 'h', labelNames: ['host_type'], registers: [] }).labels('localhost');
  bench('counter inc, prom-client child (labels checked and hashed each time)', (n) => {
    for (let i = 0; i < n; i++) child.inc();
  });
}
bench('AbortSignal.timeout(5000)', (n) => {
  for (let i = 0; i < n; i++) if (!AbortSignal.timeout(5000).aborted) sink++;
});

// --- the outbox's hand-over (mod_event_pusher enqueue → group commit → writer thread) ---

{
  const headers: Array<[string, string]> = [['content-type', 'application/x-www-form-urlencoded']];
  const body = 'author=alice&server=localhost&receiver=bob&message=Hi%21+Are+we+still+on+for+lunch+tomorrow+at+noon%3F';
  const prefix = encodePrefix('/notifications', headers, true);
  // What the push_event handler does per durable event: one buffer, the handler's prefix encoded once.
  bench('outbox payload: encodePayload (cached prefix string + body)', (n) => {
    for (let i = 0; i < n; i++) sink += encodePayload(prefix, body).byteLength;
  });
  // What it did before payloads were opaque: body bytes and the headers' JSON, per event.
  const jsonOpen = JSON.stringify(headers).slice(0, -1) + ',';
  bench('outbox row before: Buffer.from(body) + headers JSON', (n) => {
    for (let i = 0; i < n; i++) sink += Buffer.from(body, 'utf8').byteLength + (jsonOpen + '["webhook-id","msg_luvzQkRshbgnoyMvZ85BdA"]]').length;
  });
  // The whole hand-over of one event to the writer thread, as it is and as it was: build the
  // row, pack a batch of 256 and clone it as postMessage does.
  const batchOf = 256;
  const ids: string[] = [];
  for (let i = 0; i < batchOf; i++) ids.push('msg_' + String(i).padStart(22, 'x'));
  bench('outbox hand-over per event: payload row, packBatch, structuredClone', (n) => {
    for (let done = 0; done < n; done += batchOf) {
      const rs: NewOutboxRow[] = [];
      for (let i = 0; i < batchOf; i++) rs.push({ handler: 'http_pool:/notifications:mod_event_pusher_http_defaults', hostType: 'localhost', eventId: ids[i]!, payload: encodePayload(prefix, body), createdAt: 1, claimed: true });
      const packed = packBatch(rs, []);
      sink += structuredClone(packed, { transfer: [packed.payloads] }).strs.length;
    }
  });
  bench('outbox hand-over per event, before: body + headers JSON row, 5 strings packed, clone', (n) => {
    for (let done = 0; done < n; done += batchOf) {
      const rs: Array<{ h: string; ht: string; id: string; path: string; json: string; body: Uint8Array }> = [];
      for (let i = 0; i < batchOf; i++) {
        rs.push({ h: 'http_pool:/notifications:mod_event_pusher_http_defaults', ht: 'localhost', id: ids[i]!, path: '/notifications', json: jsonOpen + '["webhook-id","' + ids[i] + '"]]', body: Buffer.from(body, 'utf8') });
      }
      const strs: string[] = new Array(batchOf * 5);
      const nums = new Float64Array(batchOf * 4);
      let size = 0;
      for (const r of rs) size += r.body.byteLength;
      const bodies = new ArrayBuffer(size);
      const bytes = new Uint8Array(bodies);
      let off = 0;
      for (let i = 0; i < batchOf; i++) {
        const r = rs[i]!;
        strs[i * 5] = r.h;
        strs[i * 5 + 1] = r.ht;
        strs[i * 5 + 2] = r.id;
        strs[i * 5 + 3] = r.path;
        strs[i * 5 + 4] = r.json;
        bytes.set(r.body, off);
        nums[i * 4 + 2] = off;
        nums[i * 4 + 3] = r.body.byteLength;
        off += r.body.byteLength;
      }
      sink += structuredClone({ strs, nums, bodies, ops: [] }, { transfer: [bodies] }).strs.length;
    }
  });
  const payload = encodePayload(prefix, body);
  const decode = payloadDecoder();
  bench('outbox payload: decode, prefix cached (sender side)', (n) => {
    for (let i = 0; i < n; i++) sink += decode(payload).body.byteLength;
  });
  bench('outbox payload: decode, fresh decoder each time', (n) => {
    for (let i = 0; i < n; i++) sink += payloadDecoder()(payload).body.byteLength;
  });
  const rows: NewOutboxRow[] = [];
  for (let i = 0; i < 512; i++) rows.push({ handler: 'http_pool:/notifications:mod_event_pusher_http_defaults', hostType: 'localhost', eventId: 'msg_' + i, payload, createdAt: 1, claimed: true });
  const ops: SettleOp[] = [];
  for (let i = 0; i < 512; i++) ops.push({ op: 'delivered', id: i });
  bench('outbox packBatch + structuredClone + unpackBatch, per row (512 rows + 512 ops)', (n) => {
    for (let done = 0; done < n; done += 512) sink += unpackBatch(structuredClone(packBatch(rows, ops))).rows.length;
  });
  const q = new GroupCommit<NewOutboxRow, SettleOp>(async (r) => r.map((_, i) => i), (r) => r.payload.byteLength, { maxRows: 512 });
  const noop = () => {};
  bench('outbox GroupCommit.append (sync part: promise + batch bookkeeping)', (n) => {
    for (let i = 0; i < n; i++) q.append(rows[i & 511]!).then(noop, noop);
  });
  // The per-sender share of a batch (outbox_batch_max_rows_per_user = 64): one
  // sender's 512 queued rows with 20 others' rows among them; every batch is
  // taken until the queue is empty.
  const mixed: NewOutboxRow[] = rows.map((r, i) => ({ ...r, owner: i % 25 === 0 ? `u${i % 20}@localhost` : 'flood@localhost' }));
  const ownerOf = (r: NewOutboxRow) => r.owner;
  const size = (r: NewOutboxRow) => r.payload.byteLength;
  const fn = () => {};
  bench('outbox takeFair (per-sender share), per row taken (512 queued, share 64)', (n) => {
    for (let done = 0; done < n; ) {
      const qq = { rows: mixed.slice(), res: mixed.map(() => fn), rej: mixed.map(() => fn) };
      while (qq.rows.length > 64) done += takeFair(qq, ownerOf, 64, 512, 4 << 20, size)?.batch.rows.length ?? qq.rows.splice(0).length;
      done += qq.rows.length;
    }
  });
}

// --- an event's rows in the outbox's writer thread (sqlite-tables.ts) ------------------

{
  // What the writer thread does per event at saturation, in batches of 500
  // on a WAL file: taken into the handler's page as it is written (inserted
  // claimed, deleted once delivered), or past a full page (inserted
  // unclaimed, claimed back later, then deleted). The delivery engine's
  // page (MAX_PAGE) decides which.
  const dir = mkdtempSync(join(tmpdir(), 'petrel-micro-'));
  const db = new DatabaseSync(join(dir, 'outbox.sqlite'));
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = NORMAL');
  const tables = new OutboxTables(db);
  const H = 'http_pool:/notifications:mod_event_pusher_http_defaults';
  const payload = new Uint8Array(300);
  const batch = (claimed: boolean): NewOutboxRow[] =>
    Array.from({ length: 500 }, (_, i) => ({ handler: H, hostType: 'localhost', eventId: 'e' + i, payload, createdAt: 1, claimed }));
  const deleted = (ids: number[]): SettleOp[] => ids.map((id) => ({ op: 'delivered', id }));
  bench('outbox row, taken as written: insert claimed + delete (per row, 500 a batch)', (n) => {
    for (let done = 0; done < n; done += 500) tables.write([], deleted(tables.write(batch(true), [])));
  });
  bench('outbox row, past a full page: insert + claim + delete (per row, 500 a batch)', (n) => {
    for (let done = 0; done < n; done += 500) {
      tables.write(batch(false), []);
      tables.write([], deleted(tables.claim(H, 2, 500, 4 << 20).map((r) => r.id)));
    }
  });
  db.close();
  rmSync(dir, { recursive: true, force: true });
}

// --- the sender thread's reports (delivery/thread.ts) ----------------------------------

{
  // 512 delivered pushes of one handler: each makes two metric calls (attempt, response).
  // Per call, as the records were: five list entries each, cloned, and one counter inc each
  // on the server's thread. Counted (metricCounter): one record per label set per turn.
  const metrics = deliveryMetrics(new Registry());
  const perTurn = 512;
  bench('sender reports per push: a record and an inc per metric call', (n) => {
    for (let done = 0; done < n; done += perTurn) {
      const out: Array<string | number> = [];
      for (let i = 0; i < perTurn; i++) out.push(0, 0, 'localhost', '0', '', 0, 1, 'localhost', '0', '204');
      const got = structuredClone(out);
      for (let i = 0; i < got.length; i += 5) {
        if (got[i + 1] === 0) metrics.attempt(got[i + 2] as string, got[i + 3] as string);
        else metrics.response(got[i + 2] as string, got[i + 3] as string, got[i + 4] as string);
      }
    }
  });
  bench('sender reports per push: counted per turn (metricCounter)', (n) => {
    for (let done = 0; done < n; done += perTurn) {
      const c = metricCounter();
      for (let i = 0; i < perTurn; i++) {
        c.add(0, 'localhost', '0', '');
        c.add(1, 'localhost', '0', '204');
      }
      const out: Array<string | number> = [];
      c.drainInto(out);
      const got = structuredClone(out);
      for (let i = 0; i < got.length; i += 6) {
        if (got[i + 1] === 0) metrics.attempt(got[i + 2] as string, got[i + 3] as string, got[i + 5] as number);
        else metrics.response(got[i + 2] as string, got[i + 3] as string, got[i + 4] as string, got[i + 5] as number);
      }
    }
  });
}

{
  // What every read of a bound session adds: its bytes counted against the others' (the heavy-sender rule).
  const rates = new SenderRates();
  const meters = Array.from({ length: 50 }, newSenderMeter);
  const rule = { factor: 8, minBytes: 6554 };
  let heavy = 0;
  bench('SenderRates.read, one read of one of 50 sessions', (n) => {
    for (let i = 0; i < n; i++) if (rates.read(meters[i % 50]!, 1500, rule)) heavy++;
  });
  rates.stop();
  if (heavy < 0) process.stdout.write('');
}

if (sink === -1) process.stdout.write('');
process.stdout.write(JSON.stringify({ micro: results }) + '\n');
