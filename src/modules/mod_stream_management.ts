// XEP-0198 Stream Management: acknowledgements (<r/>, <a/>), the buffer of
// stanzas the client has not acknowledged, and resumption of a session whose
// connection was lost. Everything here sees the session only as a C2SStream
// (hooks/catalogue.ts) through the c2s hooks, never the connection under it,
// so it works the same over any transport.
//
//   enable ──► counting (h in, h out) and buffering ──► connection lost ──► kept (resume_timeout)
//                                                              │                  │
//                                      <resume previd h/> on a new stream ◄───────┤
//                                      (the unacknowledged stanzas are sent again) │
//                                                                                  ▼
//                         timeout, clean close, stream error: the unacknowledged stanzas are
//                         routed again, as to a user without this session (another resource or
//                         offline storage, through the router's offline_message path)
//
// In a cluster, a stanza another node delivered here may carry a receipt
// (SessionsApi.takeReceipt): the other node keeps its copy until told the
// stanza is safe. A buffered stanza's receipt is called once the client's
// <a/> covers it, or once it was routed again when the session ended and
// is safe there (stored offline, its write committed; bounced; taken by
// another session's buffer, which takes the receipt on); a resumption
// carries the receipts over with the buffer. A stanza that is
// not buffered (buffer = false, held by client state indication) does not
// take its receipt: the delivering node counts it safe once handed over.
import { randomBytes } from 'node:crypto';
import { bool, int, section } from '../config/schema.ts';
import { intOrInfinity } from '../config/core-spec.ts';
import type { C2SStream } from '../hooks/catalogue.ts';
import { STOP, type HookRegistration, type Hooks } from '../hooks/hooks.ts';
import { NS_SM } from '../xmpp/ns.ts';
import { Element, serializedLength } from '../xmpp/xml.ts';
import { tryParseJid, type JID } from '../xmpp/jid.ts';
import type { ModuleDefinition, ModuleInstance, RouterApi, SessionsApi } from './types.ts';
import type { Logger } from 'pino';

export interface StaleHOpts {
  enabled: boolean;
  /** Seconds between sweeps of the table of stale h values. */
  repeat_after: number;
  /** Seconds a stale h value is kept. */
  geriatric: number;
}

export interface StreamManagementOpts {
  buffer: boolean;
  /** Unacknowledged stanzas kept per session; 0 ("infinity"): no limit. */
  buffer_max: number;
  ack: boolean;
  ack_freq: number;
  /** Seconds a session without a connection waits to be resumed. */
  resume_timeout: number;
  stale_h: StaleHOpts;
  /** Not a MongooseIM option: sessions kept without a connection at once, server-wide. */
  max_resumable_sessions: number;
  /**
   * Not a MongooseIM option: bytes (serialised length) of the unacknowledged
   * stanzas kept per session; past it the session ends as past buffer_max.
   * 0 ("infinity"): no limit.
   */
  buffer_max_bytes: number;
  /**
   * Not a MongooseIM option: bytes of unacknowledged stanzas held by all the
   * sessions kept without a connection, server-wide; past it the one holding
   * the most ends. 0 ("infinity"): no limit.
   */
  max_resumable_bytes: number;
}

const spec = section(
  {
    buffer: bool({ default: true }),
    buffer_max: intOrInfinity(1, 100),
    ack: bool({ default: true }),
    ack_freq: int({ min: 1, default: 1 }),
    resume_timeout: int({ min: 1, default: 600 }),
    stale_h: section(
      {
        enabled: bool({ default: false }),
        repeat_after: int({ min: 1, default: 1800 }),
        geriatric: int({ min: 1, default: 3600 }),
      },
      { default: true },
    ),
    max_resumable_sessions: int({ min: 1, default: 10_000 }),
    buffer_max_bytes: intOrInfinity(1, 1_048_576),
    max_resumable_bytes: intOrInfinity(1, 268_435_456),
  },
  { default: true },
);

/** h counts modulo 2^32 (XEP-0198 §4). */
const MOD = 2 ** 32;
/** The count after `h` (XEP-0198 §4: h wraps to 0 after 2^32 - 1). */
export function hNext(h: number): number {
  return (h + 1) % MOD;
}

/** How many stanzas lie between counts `from` and `to`, across the wrap. */
export function hDistance(from: number, to: number): number {
  return (to - from + MOD) % MOD;
}

/** The bracket of a detached session by the bytes it holds: 0 for none, else 1 + floor(log2(bytes)). */
function bracket(bytes: number): number {
  return bytes <= 0 ? 0 : 32 - Math.clz32(Math.min(bytes, 0xffffffff));
}

/** Stale h values kept at most, whatever `geriatric` says. */
const STALE_H_MAX = 100_000;

/** The stream-management state of one session. */
interface SmState {
  /** The resumption id, or null when resumption was not asked for. */
  id: string | null;
  /** Stanzas received from the client and handled, mod 2^32 (the server's h). */
  inH: number;
  /** Stanzas sent to the client, mod 2^32. */
  outH: number;
  /** The client's last h. */
  acked: number;
  /** The stanzas sent and not acknowledged, oldest first (empty with buffer = false). */
  buffer: Element[];
  /** The serialised length of each stanza of `buffer`, in the same order. */
  sizes: number[];
  /** The sum of `sizes`. */
  bytes: number;
  /** In #detached (kept without a connection), its bytes counted in #detachedBytes and its bracket. */
  detached: boolean;
  /** The bracket (bracket()) it is filed under while detached. */
  bracket: number;
  /** Stanzas sent since the last <r/>. */
  sinceRequest: number;
  requestQueued: boolean;
  /** ms the session is kept without a connection. */
  resumeMs: number;
  timer: NodeJS.Timeout | null;
  /** An <a/> waiting for cross-node deliveries (a cluster), or null. */
  answering: Promise<void> | null;
  /** A cluster: the receipts of buffered stanzas other nodes delivered, or null. */
  receipts: Map<Element, () => void> | null;
}

function isStanza(el: Element): boolean {
  return el.name === 'message' || el.name === 'presence' || el.name === 'iq';
}

function failed(condition: string, h?: number): Element {
  const el = new Element('failed', h === undefined ? { xmlns: NS_SM } : { xmlns: NS_SM, h: String(h) });
  el.c(condition, { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' });
  return el;
}

/** An unsigned 32-bit h, or null. */
function parseH(v: string | undefined): number | null {
  if (v === undefined || !/^\d{1,10}$/.test(v)) return null;
  const n = Number(v);
  return n < MOD ? n : null;
}

export class StreamManagement {
  #opts: StreamManagementOpts;
  #router: RouterApi;
  #logger: Logger;
  #hooks: Hooks;
  #states = new WeakMap<C2SStream, SmState>();
  /** Resumable sessions by id. */
  #byId = new Map<string, C2SStream>();
  /** Sessions kept without a connection, oldest first. */
  #detached = new Set<C2SStream>();
  /** The bytes the buffers of the sessions in #detached hold together (max_resumable_bytes). */
  #detachedBytes = 0;
  /**
   * The sessions of #detached by bracket of the bytes they hold (index 1 +
   * floor(log2(bytes))): the one given up past max_resumable_bytes comes
   * from the highest bracket, so it holds at least half as much as the
   * largest, found in O(1) whatever the number of sessions.
   */
  #brackets: Array<Set<C2SStream>> = Array.from({ length: 33 }, () => new Set());
  /** id → [h, when (ms)] of sessions that can no longer be resumed (stale_h). */
  #stale = new Map<string, [number, number]>();
  #sweep: NodeJS.Timeout | null = null;

  /** Cross-node deliveries (a cluster): an <a/> counts a stanza once it reached its recipient's node. */
  #sessions: SessionsApi | undefined;

  /** general.sm_backend = "cets": stanzas may be delivered by other nodes. */
  /** The longest an <a/> waits: a routing step, then (in a cluster) cluster.request_timeout. */
  #clusterWaitMs: number;

  constructor(opts: StreamManagementOpts, router: RouterApi, hooks: Hooks, logger: Logger, sessions?: SessionsApi, clusterRequestTimeout?: number) {
    this.#sessions = sessions;
    this.#clusterWaitMs = (clusterRequestTimeout ?? 0) + 5000;
    this.#opts = opts;
    this.#hooks = hooks;
    this.#router = router;
    this.#logger = logger;
  }

  /** Sessions kept without a connection now. */
  get detachedCount(): number {
    return this.#detached.size;
  }

  /** Bytes of unacknowledged stanzas the sessions kept without a connection hold now. */
  get detachedBytes(): number {
    return this.#detachedBytes;
  }

  /** Counts a session as kept without a connection (#detached, #detachedBytes, its bracket). */
  #keep(stream: C2SStream, st: SmState): void {
    st.detached = true;
    this.#detached.add(stream);
    this.#detachedBytes += st.bytes;
    st.bracket = bracket(st.bytes);
    this.#brackets[st.bracket]!.add(stream);
  }

  /** The reverse of #keep; idempotent. */
  #unkeep(stream: C2SStream, st: SmState | undefined): void {
    this.#detached.delete(stream);
    if (st === undefined || !st.detached) return;
    st.detached = false;
    this.#detachedBytes -= st.bytes;
    this.#brackets[st.bracket]!.delete(stream);
  }

  /** The bytes a session holds changed by `delta` (O(1)). */
  #grow(stream: C2SStream, st: SmState, delta: number): void {
    st.bytes += delta;
    if (!st.detached) return;
    this.#detachedBytes += delta;
    const b = bracket(st.bytes);
    if (b !== st.bracket) {
      this.#brackets[st.bracket]!.delete(stream);
      st.bracket = b;
      this.#brackets[b]!.add(stream);
    }
  }

  /**
   * Past max_resumable_bytes, sessions kept without a connection are given
   * up, each from the highest bracket (one of those holding the most), as
   * at resume_timeout: their unacknowledged stanzas are routed again.
   * `spare`: one that is not to be given up (it is being kept right now).
   */
  #enforceResumableBytes(spare?: C2SStream): void {
    const max = this.#opts.max_resumable_bytes;
    if (max <= 0) return;
    while (this.#detachedBytes > max) {
      let victim: C2SStream | undefined;
      for (let b = 32; b > 0 && victim === undefined; b--) {
        for (const s of this.#brackets[b]!) {
          if (s !== spare) {
            victim = s;
            break;
          }
        }
      }
      if (victim === undefined) return;
      const st = this.#states.get(victim);
      this.#logger.info(
        { what: 'sm_resumable_bytes_exceeded', session: victim.id, jid: victim.jid.full, bytes: st?.bytes, held: this.#detachedBytes, max_resumable_bytes: max },
        'too many bytes held by sessions kept for resumption; the one holding the most ends',
      );
      this.#unkeep(victim, st);
      victim.terminate('too many bytes kept for resumption');
    }
  }

  hooks(): HookRegistration<any>[] {
    const owner = 'mod_stream_management';
    return [
      { hook: 'c2s_stream_features', host: '*', priority: 50, owner, handler: (_p: unknown, acc: string) => acc + `<sm xmlns='${NS_SM}'/>` },
      { hook: 'user_send_xmlel', host: '*', priority: 50, owner, handler: (p: { stream: C2SStream; el: Element }) => this.#received(p.stream, p.el) },
      // After client state indication (10): what it holds back is counted once it goes out.
      { hook: 'xmpp_presend_element', host: '*', priority: 90, owner, handler: (p: { stream: C2SStream; el: Element }) => this.#sending(p.stream, p.el) },
      { hook: 'user_socket_closed', host: '*', priority: 50, owner, handler: (p: { stream: C2SStream }) => this.#connectionLost(p.stream) },
      { hook: 'c2s_terminate', host: '*', priority: 50, owner, handler: (p: { stream: C2SStream }) => this.#terminated(p.stream) },
    ];
  }

  start(): void {
    const st = this.#opts.stale_h;
    if (!st.enabled) return;
    this.#sweep = setInterval(() => this.#sweepStale(), st.repeat_after * 1000);
    this.#sweep.unref();
  }

  /** Ends every session kept for resumption: their unacknowledged stanzas go to offline storage. */
  stop(): void {
    if (this.#sweep !== null) clearInterval(this.#sweep);
    for (const s of [...this.#detached]) s.terminate('server stopping');
  }

  // --- what the client sends ------------------------------------------------

  #received(stream: C2SStream, el: Element): typeof STOP | undefined {
    if (el.attrs.xmlns !== NS_SM) {
      if (stream.state === 'bound' && isStanza(el)) {
        const st = this.#states.get(stream);
        if (st !== undefined) st.inH = hNext(st.inH);
      }
      return undefined;
    }
    switch (el.name) {
      case 'enable':
        this.#enable(stream, el);
        break;
      case 'resume':
        this.#resume(stream, el);
        break;
      case 'r': {
        const st = this.#states.get(stream);
        if (st === undefined) stream.writeNonza(failed('unexpected-request'));
        else {
          // A stanza counts as handled once it was routed: some wait for
          // their outbox commit first, and a node that dies before routing
          // them must not have acknowledged them. In a cluster, a stanza
          // handed to another node counts once that node acknowledged it (or
          // it was routed again, offline storage included): the answer then
          // waits for those in flight too, bounded by cluster.request_timeout.
          const h = st.inH;
          const answer = () => stream.writeNonza(new Element('a', { xmlns: NS_SM, h: String(h) }));
          const wait = stream.state === 'bound' ? this.#inFlight(stream) : undefined;
          if (wait === undefined && st.answering === null) answer();
          else {
            // Answers leave in the order of the requests, so h never goes back.
            const next = Promise.all([st.answering, wait]).then(answer);
            st.answering = next;
            void next.then(() => {
              if (st.answering === next) st.answering = null;
            });
          }
        }
        break;
      }
      case 'a':
        this.#ack(stream, el);
        break;
      default:
        // Other elements of the namespace (<enabled/>, <a/> from a confused client...) are ignored.
        break;
    }
    return STOP;
  }

  /**
   * What an <a/> waits for in a cluster: the client's stanzas still queued
   * in its session (behind the event pusher's commit, a presence broadcast)
   * routed, then their cross-node deliveries acknowledged or routed again.
   */
  #inFlight(stream: C2SStream): Promise<void> | undefined {
    const queued = stream.routed?.();
    const full = stream.jid.full;
    const wait = queued === undefined ? this.#sessions?.settled?.(full) : queued.then(() => this.#sessions?.settled?.(full));
    if (wait === undefined) return undefined;
    // Bounded: a session that ends (its queue is dropped) or is resumed
    // elsewhere must not hold the answers of its successor.
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.#clusterWaitMs);
      timer.unref();
      void wait.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #enable(stream: C2SStream, el: Element): void {
    // §3: only after resource binding, and once per stream.
    if (stream.state !== 'bound' || this.#states.has(stream)) {
      stream.writeNonza(failed('unexpected-request'));
      return;
    }
    // Without a buffer nothing could be sent again: resumption is not offered,
    // and what the session was sent is left to the session's own rerouting.
    const resume = this.#opts.buffer && (el.attrs.resume === 'true' || el.attrs.resume === '1');
    let resumeMs = this.#opts.resume_timeout * 1000;
    // §3: the client's preferred maximum, when lower, is honoured.
    const max = parseH(el.attrs.max);
    if (max !== null && max > 0) resumeMs = Math.min(resumeMs, max * 1000);
    const st: SmState = { id: null, inH: 0, outH: 0, acked: 0, buffer: [], sizes: [], bytes: 0, detached: false, bracket: 0, sinceRequest: 0, requestQueued: false, resumeMs, timer: null, answering: null, receipts: null };
    const reply = new Element('enabled', { xmlns: NS_SM });
    if (resume) {
      st.id = randomBytes(18).toString('base64url');
      this.#byId.set(st.id, stream);
      reply.attrs.id = st.id;
      reply.attrs.resume = 'true';
      reply.attrs.max = String(Math.ceil(resumeMs / 1000));
    }
    this.#states.set(stream, st);
    if (this.#opts.buffer) stream.manageDelivery();
    stream.writeNonza(reply);
  }

  /**
   * Drops the stanzas `h` acknowledges; false, and the stream of the client
   * that sent it (`from`) ended, when h acknowledges more than was sent.
   * `owner`: the session whose state `st` is (the one resumed, on <resume/>).
   */
  #applyAck(from: C2SStream, st: SmState, h: number, owner: C2SStream = from): boolean {
    // An h behind one already acknowledged (by less than half the counter's
    // range, so not a wrap-around) says nothing new: it is ignored, as a
    // stale answer. Some client libraries reset their count late, after the
    // first stanzas of the stream were already counted and acknowledged;
    // ending the stream for that would cut off a working client.
    const behind = hDistance(h, st.acked);
    if (behind > 0 && behind < MOD / 2) {
      this.#logger.debug({ what: 'sm_handled_count_behind', session: from.id, h, acked: st.acked }, 'the client acknowledged fewer stanzas than it had before; ignored');
      return true;
    }
    const newly = hDistance(st.acked, h);
    const unacked = hDistance(st.acked, st.outH);
    if (newly > unacked) {
      // §4: the handled count is more than was sent.
      this.#logger.info({ what: 'sm_handled_count_too_high', session: from.id, h, sent: st.outH }, 'the client acknowledged more stanzas than it was sent');
      from.kick('undefined-condition', `handled count too high: h=${h}, send-count=${st.outH}`);
      return false;
    }
    st.acked = h;
    if (newly > 0 && st.buffer.length > 0) {
      const count = Math.min(newly, st.buffer.length);
      const done = st.buffer.splice(0, count);
      let freed = 0;
      for (const n of st.sizes.splice(0, count)) freed += n;
      this.#grow(owner, st, -freed);
      const receipts = st.receipts;
      if (receipts !== null) {
        for (const el of done) {
          const r = receipts.get(el);
          if (r === undefined) continue;
          receipts.delete(el);
          this.#settle(r);
        }
      }
    }
    return true;
  }

  /** Tells a delivering node (a cluster) that its stanza is safe. */
  #settle(receipt: () => void): void {
    try {
      receipt();
    } catch (err) {
      this.#logger.error({ what: 'sm_receipt_failed', err: String(err) }, 'could not tell a node its delivery was handled');
    }
  }

  #ack(stream: C2SStream, el: Element): void {
    const st = this.#states.get(stream);
    if (st === undefined) return;
    const h = parseH(el.attrs.h);
    if (h === null) {
      stream.kick('invalid-xml', "an <a/> needs an 'h' between 0 and 2^32 - 1");
      return;
    }
    this.#applyAck(stream, st, h);
  }

  #resume(stream: C2SStream, el: Element): void {
    // §5: resumption takes the place of resource binding.
    if (stream.state !== 'bind') {
      stream.writeNonza(failed('unexpected-request'));
      return;
    }
    const previd = el.attrs.previd ?? '';
    const h = parseH(el.attrs.h);
    if (h === null) {
      stream.writeNonza(failed('bad-request'));
      return;
    }
    const old = this.#byId.get(previd);
    const st = old === undefined ? undefined : this.#states.get(old);
    if (old === undefined || st === undefined || old.state !== 'bound' || old.jid.local !== stream.user || old.domain !== stream.domain) {
      // §5: an unknown (or someone else's) id; with stale_h the last h of a session that timed out.
      const stale = this.#opts.stale_h.enabled && old === undefined ? this.#stale.get(previd) : undefined;
      stream.writeNonza(failed('item-not-found', stale?.[0]));
      return;
    }
    if (!this.#applyAck(stream, st, h, old)) return;
    if (st.timer !== null) clearTimeout(st.timer);
    st.timer = null;
    const wasKept = st.detached;
    this.#unkeep(old, st);
    // The state moves first, so the old stream's end routes nothing again.
    this.#states.delete(old);
    if (!stream.takeOver(old)) {
      this.#states.set(old, st);
      if (wasKept) this.#keep(old, st);
      stream.writeNonza(failed('item-not-found'));
      return;
    }
    this.#byId.set(previd, stream);
    this.#states.set(stream, st);
    st.sinceRequest = 0;
    st.requestQueued = false;
    stream.writeNonza(new Element('resumed', { xmlns: NS_SM, previd, h: String(st.inH) }));
    // §5: what the client did not acknowledge is sent again, counted again from its h.
    const unacked = st.buffer;
    st.buffer = [];
    st.sizes = [];
    st.bytes = 0;
    st.outH = st.acked;
    for (const s of unacked) stream.send(s);
    this.#hooks.run('c2s_copy_session', stream.domain, { from: old, to: stream });
    this.#logger.info({ what: 'sm_resumed', session: stream.id, previous: old.id, jid: stream.jid.full, resent: unacked.length }, 'session resumed');
  }

  // --- what the client is sent ----------------------------------------------

  #sending(stream: C2SStream, el: Element): undefined {
    const st = this.#states.get(stream);
    if (st === undefined) return undefined;
    st.outH = hNext(st.outH);
    if (this.#opts.buffer) {
      // Its length as written, measured once; the totals are counters, never a rescan.
      const size = serializedLength(el);
      st.buffer.push(el);
      st.sizes.push(size);
      this.#grow(stream, st, size);
      // Sent again on resumption, a stanza keeps the receipt it took the first time.
      const r = this.#sessions?.takeReceipt?.(el);
      if (r !== undefined) (st.receipts ??= new Map()).set(el, r);
      const max = this.#opts.buffer_max;
      const maxBytes = this.#opts.buffer_max_bytes;
      // buffer_max_bytes counts once a second stanza waits: one stanza alone
      // is bounded by max_stanza_size and max_output_buffer, and a session
      // must not be ended by a single large stanza of its own (a roster).
      const overBytes = maxBytes > 0 && st.bytes > maxBytes && st.buffer.length > 1;
      if ((max > 0 && st.buffer.length > max) || overBytes) {
        // As MongooseIM: the session ends; its unacknowledged stanzas are routed again.
        this.#logger.info(
          { what: 'sm_buffer_full', session: stream.id, jid: stream.jid.full, buffer_max: max, buffer_max_bytes: maxBytes, stanzas: st.buffer.length, bytes: st.bytes },
          'too many unacknowledged stanzas',
        );
        const why = overBytes ? `more than ${maxBytes} bytes of stanzas not acknowledged` : `more than ${max} stanzas not acknowledged`;
        if (stream.connected) stream.kick('resource-constraint', why);
        else stream.terminate('buffer full');
        return undefined;
      }
      if (st.detached) this.#enforceResumableBytes();
    }
    if (this.#opts.ack && stream.connected && ++st.sinceRequest >= this.#opts.ack_freq && !st.requestQueued) {
      // One <r/> after the stanzas of this turn, so it follows them on the wire.
      st.requestQueued = true;
      queueMicrotask(() => {
        st.requestQueued = false;
        st.sinceRequest = 0;
        if (this.#states.get(stream) === st) stream.writeNonza(new Element('r', { xmlns: NS_SM }));
      });
    }
    return undefined;
  }

  // --- the connection goes, the session ends -----------------------------------

  #connectionLost(stream: C2SStream): typeof STOP | undefined {
    const st = this.#states.get(stream);
    if (st === undefined || st.id === null) return undefined;
    const maxBytes = this.#opts.max_resumable_bytes;
    if (maxBytes > 0 && st.bytes > maxBytes) {
      // More than all the sessions kept may hold: it ends now, as at resume_timeout.
      this.#logger.info({ what: 'sm_resumable_bytes_exceeded', session: stream.id, jid: stream.jid.full, bytes: st.bytes, held: this.#detachedBytes, max_resumable_bytes: maxBytes }, 'the session holds too much to be kept for resumption');
      return undefined;
    }
    st.timer = setTimeout(() => stream.terminate('resume timeout'), st.resumeMs);
    st.timer.unref();
    this.#keep(stream, st);
    // Bounded server-wide: past the limit, the session kept longest ends.
    while (this.#detached.size > this.#opts.max_resumable_sessions) {
      const oldest = this.#detached.values().next().value!;
      this.#unkeep(oldest, this.#states.get(oldest));
      oldest.terminate('too many sessions kept for resumption');
    }
    // And by the bytes they hold together: past it, the one holding the most ends.
    this.#enforceResumableBytes(stream);
    return STOP;
  }

  #terminated(stream: C2SStream): void {
    const st = this.#states.get(stream);
    if (st === undefined) return;
    this.#states.delete(stream);
    this.#unkeep(stream, st);
    if (st.timer !== null) clearTimeout(st.timer);
    if (st.id !== null && this.#byId.get(st.id) === stream) {
      this.#byId.delete(st.id);
      if (this.#opts.stale_h.enabled) {
        if (this.#stale.size >= STALE_H_MAX) this.#stale.delete(this.#stale.keys().next().value!);
        this.#stale.set(st.id, [st.inH, Date.now()]);
      }
    }
    const receipts = st.receipts;
    st.receipts = null;
    this.#reroute(stream, st.buffer, receipts);
    // What is left was not in the buffer any more (not routed again): nothing more to wait for.
    if (receipts !== null) for (const r of receipts.values()) this.#settle(r);
  }

  /**
   * The unacknowledged stanzas of a session that ended go through the router
   * again, now that the session is out of the table: a message reaches
   * another resource or, with none, the offline path (offline_message); an
   * IQ request is answered with an error; presence is not kept.
   */
  #reroute(stream: C2SStream, stanzas: Element[], receipts: Map<Element, () => void> | null): void {
    let n = 0;
    for (const el of stanzas) {
      if (el.name === 'presence') continue;
      if (el.name === 'iq' && el.attrs.type !== 'get' && el.attrs.type !== 'set') continue;
      const from = tryParseJid(el.attrs.from ?? '') ?? tryParseJid(stream.domain);
      const to = tryParseJid(el.attrs.to ?? '') ?? stream.jid;
      if (from === null) continue;
      const receipt = receipts?.get(el);
      try {
        if (receipt === undefined) this.#router.route(from, to, el);
        else {
          receipts!.delete(el);
          this.#rerouteWithReceipt(from, to, el, receipt);
        }
        n++;
      } catch (err) {
        this.#logger.error({ what: 'sm_reroute_failed', session: stream.id, err: String(err) }, 'could not route an unacknowledged stanza again');
      }
    }
    if (n > 0) this.#logger.info({ what: 'sm_rerouted', session: stream.id, jid: stream.jid.full, stanzas: n }, 'unacknowledged stanzas routed again');
  }

  /**
   * Routes again a stanza another node delivered (a cluster), which that
   * node keeps until this one says it is safe: another session's buffer
   * takes the receipt on; else it is called once what the offline path
   * holds (acc.hold: the router's checks, mod_offline's write) settled.
   */
  #rerouteWithReceipt(from: JID, to: JID, el: Element, receipt: () => void): void {
    const waits: Promise<unknown>[] = [];
    const acc = this.#router.newAcc(from, to, el);
    acc.hold = (p) => waits.push(p);
    const sessions = this.#sessions;
    sessions?.expectReceipt?.(el, receipt);
    try {
      this.#router.route(from, to, el, acc);
    } finally {
      const mine = sessions?.dropReceipt?.(el) ?? true;
      if (mine) {
        if (waits.length === 0) this.#settle(receipt);
        else {
          // A handler may hold more while the earlier ones settle (mod_offline inside the router's).
          void (async () => {
            for (let i = 0; i < waits.length; i++) await waits[i]!.catch(() => {});
            this.#settle(receipt);
          })();
        }
      }
    }
  }

  #sweepStale(): void {
    const limit = Date.now() - this.#opts.stale_h.geriatric * 1000;
    for (const [id, [, when]] of this.#stale) {
      if (when >= limit) break;
      this.#stale.delete(id);
    }
  }
}

export const definition: ModuleDefinition<StreamManagementOpts> = {
  name: 'mod_stream_management',
  configSpec: spec,
  create(ctx, opts): ModuleInstance {
    const sm = new StreamManagement(opts, ctx.router, ctx.hooks, ctx.logger, ctx.sessions, ctx.config.general.sm_backend === 'cets' ? ctx.config.cluster?.request_timeout ?? 2000 : undefined);
    return {
      hooks: () => sm.hooks(),
      start: () => sm.start(),
      stop: () => sm.stop(),
    };
  },
};
