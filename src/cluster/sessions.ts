// The replicated session table (general.sm_backend = "cets"). Each node
// publishes the events of its own sessions (bound, changed, ended) on the
// bus and keeps a RemoteSession proxy of every other node's session in its
// SessionManager, so that routing (RFC 6121 priority, bare-JID delivery,
// max_user_sessions, presence broadcasts and probes, roster pushes) works
// over the cluster's sessions as it does over one node's. A node learns a
// peer's sessions from a snapshot it asks for, then from the peer's events;
// the events carry a sequence number so that those racing the snapshot
// apply once. A delivery to a proxy is a request to its node, acknowledged
// once that node has handed the stanza to the session; without an answer
// (no responders, timeout) the stanza is routed as if the session were
// gone: another resource, else offline storage.
//
// Deliveries in two steps, so that a node's death loses nothing its users'
// senders were told was accepted:
//
//   sender's node                                   recipient's node
//   deliverRemote: kept (k)  ── deliver {k} ──────►  handed to the session
//                            ◄── reply: held [i] ──  (stream management took
//                                                     the receipt: buffered)
//   kept until ...           ◄── handled {k} ─────   the client's <a/> covers it,
//                                                     or the session ended and
//                                                     its buffer was routed again
//                                                     (stored offline: committed)
//   its node dead (node table): the kept stanzas are routed again
//
// The reply comes at once (request_timeout stays the time to take a
// stanza, never to wait for a client); "taken" is what the sender's <a/>
// waits for. A stanza its session does not buffer (no stream management,
// buffer = false, held by client state indication) is safe once handed
// over, as on a single node: the reply does not list it as held. Kept
// copies are bounded per destination node (cluster.delivery_keep_max,
// cluster.delivery_keep_bytes); past that, a stanza goes as before, not
// kept (petrel_cluster_deliveries_not_kept_total). Only messages (not
// carbon copies) and IQ requests are kept: what a session's end would
// route again. Routed again, a stanza goes through the router only: no
// user_send_message, so no second event for the event pusher. "handled"
// is published, not requested; one lost (the bus down) leaves a copy kept
// until its node dies, then a duplicate, never a loss.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Hooks } from '../hooks/hooks.ts';
import type { Router } from '../routing/router.ts';
import type { Presence } from '../routing/presence.ts';
import type { ManagedSession, SessionManager, SessionObserver } from '../routing/sm.ts';
import { Element, type Node } from '../xmpp/xml.ts';
import { parseJid, tryParseJid, type JID } from '../xmpp/jid.ts';
import { NS_CARBONS } from '../xmpp/ns.ts';
import { BusUnreachable, type Bus } from './bus.ts';
import type { Discovery } from './discovery.ts';

type ElementJson = { name: string; attrs: Record<string, string>; children: Array<ElementJson | string> };

function toJson(el: Element): ElementJson {
  return el as unknown as ElementJson;
}

function fromJson(j: ElementJson | string): Node {
  if (typeof j === 'string') return j;
  return new Element(j.name, j.attrs, j.children.map(fromJson));
}

/** Sessions per snapshot page. */
const SNAPSHOT_PAGE = 200;

/** Delivery numbers in one "handled" message. */
const HANDLED_PAGE = 10_000;

/**
 * What is kept until its node says it is safe: what a session's end would
 * route again (messages, IQ requests), not carbon copies, which are never
 * routed again, nor presence, which its node's death settles (unavailable).
 */
function worthKeeping(el: Element): boolean {
  if (el.name === 'message') return el.getChild('sent', NS_CARBONS) === undefined && el.getChild('received', NS_CARBONS) === undefined;
  return el.name === 'iq' && (el.attrs.type === 'get' || el.attrs.type === 'set');
}

/** FNV-1a, 32 bits: cheap and well spread, enough to pick a room's node. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** What a node tells of one of its sessions. */
interface SessionInfo {
  jid: string;
  priority: number;
  available: boolean;
  interested: boolean;
  /** XEP-0280 carbons enabled (absent from a node that does not tell). */
  carbons?: boolean;
  presence: ElementJson | null;
}

interface SessionEvent {
  /** Node, incarnation, sequence number. */
  n: string;
  i: string;
  q: number;
  op: 'bound' | 'changed' | 'ended';
  s: SessionInfo;
}

interface NodeDown {
  n: string;
  i: string;
  op: 'node_down';
}

interface Snapshot {
  i: string;
  q: number;
  sessions: SessionInfo[];
}

/** Another node's session, as routing sees it. */
export class RemoteSession implements ManagedSession {
  readonly clusterNode: string;
  readonly incarnation: string;
  jid: JID;
  priority = 0;
  available = false;
  interested = false;
  carbons = false;
  presence: Element | null = null;
  /** Asked to end: a late event does not bring it back. */
  ending = false;
  #cluster: ClusterSessions;

  constructor(cluster: ClusterSessions, node: string, incarnation: string, jid: JID) {
    this.#cluster = cluster;
    this.clusterNode = node;
    this.incarnation = incarnation;
    this.jid = jid;
  }

  update(s: SessionInfo): void {
    this.priority = s.priority;
    this.available = s.available;
    this.interested = s.interested;
    this.carbons = s.carbons === true;
    this.presence = s.presence === null ? null : (fromJson(s.presence) as Element);
  }

  send(el: Element, _held?: boolean, ref?: string): void {
    this.#cluster.deliverRemote(this, el, ref);
  }

  kick(condition: string, text?: string): void {
    this.ending = true;
    this.#cluster.kickRemote(this, condition, text, false);
  }

  disconnect(reason: string): void {
    this.ending = true;
    this.#cluster.kickRemote(this, 'connection-timeout', reason, true);
  }
}

interface PeerState {
  node: string;
  incarnation: string;
  synced: boolean;
  /** Events that came before the snapshot. */
  early: SessionEvent[];
  sessions: Map<string, RemoteSession>;
  /** Settles when the first snapshot is in (or failed). */
  ready?: Promise<void>;
}

export interface ClusterMetrics {
  remoteDeliveries: Counter;
  remoteDeliveryFailures: Counter;
  notKept: Counter;
}

/** The cluster's metrics (docs/metrics.md), registered on every node so that they exist from the start. */
export function clusterMetrics(registry: Registry, liveNodes: () => number): ClusterMetrics {
  new Gauge({ name: 'petrel_cluster_nodes', help: 'live nodes of the cluster this node sees, itself included (1 without a cluster)', registers: [registry], collect() { this.set(liveNodes()); } });
  return {
    remoteDeliveries: new Counter({ name: 'petrel_cluster_remote_deliveries_total', help: 'stanzas handed to another node for one of its sessions', registers: [registry] }),
    remoteDeliveryFailures: new Counter({
      name: 'petrel_cluster_remote_delivery_failures_total',
      help: 'deliveries to another node not acknowledged (no responders, timeout, session gone), or not yet safe when that node died: routed again',
      registers: [registry],
    }),
    notKept: new Counter({
      name: 'petrel_cluster_deliveries_not_kept_total',
      help: 'deliveries to another node not kept until safe: past cluster.delivery_keep_max or delivery_keep_bytes for that node',
      registers: [registry],
    }),
  };
}

export interface ClusterSessionsOptions {
  bus: Bus;
  discovery: Discovery;
  sm: SessionManager;
  router: Router;
  presence: Presence;
  hooks: Hooks;
  logger: Logger;
  metrics: ClusterMetrics;
  incarnation: string;
  requestTimeout: number;
  /** Most stanzas in one request to a node (cluster.delivery_batch_size). */
  deliveryBatch: number;
  /** Deliveries kept per destination node until safe (cluster.delivery_keep_max, delivery_keep_bytes). */
  keepMax: number;
  keepBytes: number;
  heartbeatInterval: number;
}

/** `k`: the delivery is kept by its sender until this node says it is safe ("handled"). */
type DeliveryItem = { to: string; el: ElementJson; ref?: string; k?: number };

/** A delivery kept until its node says it is safe. */
interface Kept {
  rs: RemoteSession;
  el: Element;
  bytes: number;
  /** The node's reply said it holds it (until its client acknowledges it). */
  held: boolean;
}

/** The deliveries kept for one node incarnation. */
interface KeptGroup {
  byId: Map<number, Kept>;
  bytes: number;
  /** The node died: what it still held was routed again. */
  dead: boolean;
}

/** A batch of deliveries (`b`), or one from an older node (to, el, ref); `node`, `inc`: the sender's. */
type DeliverRequest = { b?: DeliveryItem[]; to?: string; el?: ElementJson; ref?: string; k?: number; node?: string; inc?: string };

type OutgoingBatch = {
  /** Each stanza's delivery, serialised. */
  items: string[];
  stanzas: { rs: RemoteSession; el: Element; k?: number; g?: KeptGroup }[];
  bytes: number;
  /** Settles once every stanza of the batch was acknowledged or routed again. */
  done: Promise<void> | null;
  resolve: (() => void) | null;
};

export class ClusterSessions implements SessionObserver {
  #o: ClusterSessionsOptions;
  #bus: Bus;
  #sm: SessionManager;
  #logger: Logger;
  #seq = 0;
  /** Peers by `${node}/${incarnation}`. */
  #peers = new Map<string, PeerState>();
  #timer: NodeJS.Timeout | null = null;
  #beating: Promise<void> | null = null;
  #stopped = false;
  /** Live nodes seen at the last heartbeat, this one included. */
  liveNodes = 1;
  /** Their names, for the owner of a room (rendezvous hashing). */
  #liveNames: string[] = [];

  constructor(o: ClusterSessionsOptions) {
    this.#o = o;
    this.#bus = o.bus;
    this.#sm = o.sm;
    this.#logger = o.logger;
  }

  get node(): string {
    return this.#bus.node;
  }

  /** Joins: the node's row, the subscriptions, the peers' snapshots; then the heartbeat. */
  async start(): Promise<void> {
    const bus = this.#bus;
    const onError = (err: unknown) => this.#logger.error({ what: 'cluster_message_failed', err: String(err) }, 'a cluster message could not be handled');
    bus.subscribe(bus.sessionsSubject, (m: SessionEvent | NodeDown) => this.#onEvent(m), onError);
    bus.subscribe(bus.nodeSubject(this.node, 'deliver'), (m: DeliverRequest) => this.#onDeliver(m), onError);
    bus.subscribe(bus.nodeSubject(this.node, 'handled'), (m: { n: string; i: string; to: string; k: number[] }) => this.#onHandled(m), onError);
    bus.subscribe(bus.nodeSubject(this.node, 'kick'), (m: { to: string; condition: string; text?: string; disconnect?: boolean }) => this.#onKick(m), onError);
    bus.subscribe(bus.nodeSubject(this.node, 'snapshot'), (m: { after?: string | null }) => this.#snapshot(typeof m.after === 'string' ? m.after : null), onError);
    bus.subscribe(bus.nodeSubject(this.node, 'service'), (m: { from: string; to: string; el: ElementJson }) => this.#onService(m), onError);
    bus.onReconnect = () => this.#resyncAll();
    await this.#o.discovery.join();
    this.#sm.observer = this;
    await this.#beat();
    // The peers' sessions are in the table before the first login here.
    await Promise.all([...this.#peers.values()].map((p) => p.ready));
    this.#o.router.forwardToService = (from, to, packet) => this.#forwardToService(from, to, packet);
    const tick = () => {
      if (this.#stopped) return;
      this.#beating = this.#beat().finally(() => {
        this.#beating = null;
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#o.heartbeatInterval);
      });
    };
    this.#timer = setTimeout(tick, this.#o.heartbeatInterval);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#o.router.forwardToService = null;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#beating;
    this.#sm.observer = null;
    await this.#o.discovery.leave().catch((err: unknown) => this.#logger.warn({ what: 'cluster_leave_failed', err: String(err) }, 'could not remove this node from the node table'));
  }

  // --- the heartbeat -------------------------------------------------------

  async #beat(): Promise<void> {
    let r: Awaited<ReturnType<Discovery['beat']>>;
    try {
      r = await this.#o.discovery.beat();
    } catch (err) {
      this.#logger.error({ what: 'cluster_heartbeat_failed', err: String(err) }, 'the heartbeat could not be written to PostgreSQL');
      return;
    }
    if (r.rejoined) {
      this.#logger.warn({ what: 'cluster_node_rejoined', node: this.node }, 'this node had been taken for dead; it is back in the node table');
      // The others ask for this node's sessions when they see its row again.
      for (const s of [...this.#sm.all()]) {
        if (s.clusterNode === undefined) this.#publish('bound', s);
      }
      // Stalled long enough to be taken for dead, this node saw its own
      // requests time out and took the others' sessions they were for out
      // of its table: it asks every peer again before the users' contacts,
      // told they left, hear that they are here.
      const resynced = Promise.all([...this.#peers.values()].map((p) => this.#resync(p)));
      void resynced.then(() => {
        for (const s of [...this.#sm.all()]) {
          if (s.clusterNode === undefined) this.#o.presence.announce(s).catch((err: unknown) => this.#logger.error({ what: 'presence_failed', err: String(err) }, 'presence processing failed'));
        }
      });
    }
    // Dead nodes whose row this node deleted: their cleanup is this node's.
    for (const d of r.won) this.#nodeDown(d.node_name, d.incarnation, true);
    const live = new Set<string>();
    for (const row of r.live) {
      const key = `${row.node_name}/${row.incarnation}`;
      live.add(key);
      if (row.node_name === this.node && row.incarnation === this.#o.incarnation) continue;
      if (!this.#peers.has(key)) this.#peer(row.node_name, row.incarnation);
    }
    // Rows gone without this node winning them: another node cleaned up.
    for (const [key, p] of this.#peers) {
      if (!live.has(key)) this.#nodeDown(p.node, p.incarnation, false);
    }
    this.liveNodes = r.live.length;
    this.#liveNames = [...new Set(r.live.map((row) => row.node_name))];
  }

  /** A peer seen for the first time: its sessions come with its snapshot. */
  #peer(node: string, incarnation: string): PeerState {
    const key = `${node}/${incarnation}`;
    const p: PeerState = { node, incarnation, synced: false, early: [], sessions: new Map() };
    this.#peers.set(key, p);
    this.#logger.info({ what: 'cluster_node_joined', node, incarnation }, 'a cluster node is seen');
    p.ready = this.#sync(p);
    return p;
  }

  /** A peer's sessions asked for again, unless that is under way. */
  #resync(p: PeerState): Promise<void> {
    if (!p.synced) return p.ready ?? Promise.resolve();
    p.synced = false;
    p.ready = this.#sync(p);
    return p.ready;
  }

  /** The bus was down: events may have been lost, so every peer's sessions are asked for again. */
  #resyncAll(): void {
    for (const p of this.#peers.values()) void this.#resync(p);
    // And this node's sessions may have been missed by the others: they ask when they see it again.
    for (const s of this.#sm.all()) if (s.clusterNode === undefined) this.#publish('changed', s);
  }

  /**
   * Asks a peer for its sessions: those it no longer has leave the table,
   * the others are added or updated, then the events that came meanwhile
   * apply, those newer than the snapshot only.
   */
  #sync(p: PeerState): Promise<void> {
    const key = `${p.node}/${p.incarnation}`;
    const seen = new Set<string>();
    let q = -1;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    const page = (after: string | null): void => {
      this.#bus.request(this.#bus.nodeSubject(p.node, 'snapshot'), { after }, this.#o.requestTimeout).then(
        (reply) => {
          if (this.#peers.get(key) !== p) return done();
          const snap = reply as unknown as Snapshot & { ok: boolean; next: string | null };
          // Its node answers as another incarnation: this one is gone (its row times out).
          if (snap.i !== p.incarnation) return done();
          // Events after the first page's sequence number apply on top: they carry whole states.
          if (q < 0) q = snap.q;
          for (const s of snap.sessions) {
            seen.add(s.jid);
            this.#apply(p, 'bound', s);
          }
          if (snap.next !== null) {
            page(snap.next);
            return;
          }
          // Sessions of events newer than the snapshot are those events' to settle.
          for (const e of p.early) if (e.q > q) seen.add(e.s.jid);
          for (const [full, rs] of p.sessions) {
            if (seen.has(full)) continue;
            p.sessions.delete(full);
            this.#remoteEnded(rs, 'gone from its node');
          }
          for (const e of p.early) if (e.q > q) this.#apply(p, e.op, e.s);
          p.early = [];
          p.synced = true;
          done();
        },
        (err: unknown) => {
          done();
          // Asked again at the next heartbeat.
          if (this.#peers.get(key) === p && !p.synced && p.sessions.size === 0) this.#peers.delete(key);
          else if (this.#peers.get(key) === p && !p.synced) setTimeout(() => this.#peers.get(key) === p && this.#sync(p), this.#o.heartbeatInterval).unref();
          this.#logger.warn({ what: 'cluster_snapshot_failed', node: p.node, err: String(err) }, 'a node did not send its sessions');
        },
      ).catch((err: unknown) => {
        done();
        this.#logger.error({ what: 'cluster_snapshot_failed', node: p.node, err: String(err) }, 'a node\'s sessions could not be applied');
      });
    };
    page(null);
    return finished;
  }

  /**
   * A node is dead (or gone from the table): its sessions leave every
   * table. `cleanup`: this node deleted its row, so it alone tells the
   * users' contacts that they are unavailable (RFC 6121 §4.5.2), once.
   */
  #nodeDown(node: string, incarnation: string, cleanup: boolean): void {
    const key = `${node}/${incarnation}`;
    const p = this.#peers.get(key);
    this.#peers.delete(key);
    const sessions = p === undefined ? [] : [...p.sessions.values()];
    for (const s of sessions) this.#remoteEnded(s, 'its node is dead');
    const rerouted = this.#rerouteKept(key);
    if (!cleanup) {
      if (p !== undefined) this.#logger.info({ what: 'cluster_node_gone', node, incarnation, sessions: sessions.length, rerouted }, 'a cluster node is gone from the node table; its sessions are removed');
      return;
    }
    this.#logger.warn({ what: 'cluster_node_down', node, incarnation, sessions: sessions.length, rerouted }, 'a cluster node stopped its heartbeat; its sessions are removed');
    this.#bus.publish(this.#bus.sessionsSubject, { op: 'node_down', n: node, i: incarnation } satisfies NodeDown);
    // A user back already with the same resource (on another node, or this node's new incarnation) stays available.
    for (const s of sessions) if (this.#sm.byFull(s.jid.full) === undefined) this.#o.presence.sessionClosed(s);
  }

  // --- this node's sessions, told to the others ---------------------------

  #info(s: ManagedSession): SessionInfo {
    return { jid: s.jid.full, priority: s.priority, available: s.available, interested: s.interested === true, carbons: s.carbons === true, presence: s.presence === null ? null : toJson(s.presence) };
  }

  #publish(op: SessionEvent['op'], s: ManagedSession): void {
    const e: SessionEvent = { n: this.node, i: this.#o.incarnation, q: ++this.#seq, op, s: this.#info(s) };
    this.#bus.publish(this.#bus.sessionsSubject, e);
  }

  bound(s: ManagedSession): void {
    this.#publish('bound', s);
  }

  changed(s: ManagedSession): void {
    this.#publish('changed', s);
  }

  ended(s: ManagedSession): void {
    this.#publish('ended', s);
  }

  /**
   * One page of this node's sessions, in the order of their full JIDs from
   * `after` on: a page stays far below NATS's payload limit (1 MB by
   * default) whatever the number of sessions, and sessions that come and go
   * between two pages shift nothing (their events cover them).
   */
  #snapshot(after: string | null): Snapshot & { ok: true; next: string | null } {
    const fulls: string[] = [];
    for (const s of this.#sm.all()) if (s.clusterNode === undefined && (after === null || s.jid.full > after)) fulls.push(s.jid.full);
    fulls.sort();
    const take = fulls.slice(0, SNAPSHOT_PAGE);
    const sessions: SessionInfo[] = [];
    for (const f of take) {
      const s = this.#sm.byFull(f);
      if (s !== undefined) sessions.push(this.#info(s));
    }
    return { ok: true, i: this.#o.incarnation, q: this.#seq, sessions, next: fulls.length > take.length ? take[take.length - 1]! : null };
  }

  // --- the others' sessions -------------------------------------------------

  #onEvent(m: SessionEvent | NodeDown): void {
    if (m.n === this.node && m.i === this.#o.incarnation) return;
    if (m.op === 'node_down') {
      this.#nodeDown(m.n, m.i, false);
      return;
    }
    const key = `${m.n}/${m.i}`;
    const p = this.#peers.get(key) ?? this.#peer(m.n, m.i);
    // Events carry whole states, so one applies at once even before the
    // snapshot; it is kept to apply again over the snapshot if newer.
    if (!p.synced) p.early.push(m);
    this.#apply(p, m.op, m.s);
  }

  #apply(p: PeerState, op: SessionEvent['op'], info: SessionInfo): void {
    let rs = p.sessions.get(info.jid);
    if (op === 'ended') {
      if (rs === undefined) return;
      p.sessions.delete(info.jid);
      this.#remoteEnded(rs, 'ended on its node');
      return;
    }
    if (rs === undefined) {
      const jid = tryParseJid(info.jid);
      if (jid === null) return;
      rs = new RemoteSession(this, p.node, p.incarnation, jid);
      p.sessions.set(info.jid, rs);
    }
    const wasAvailable = rs.available;
    rs.update(info);
    // Gone unavailable and still bound: the rooms served here let go of it,
    // as for a local session. Not through unset_presence, which its own node
    // ran (the event pusher would tell it once per node).
    if (wasAvailable && !rs.available) this.#o.hooks.run('sm_remove_connection', rs.jid.domain, { jid: rs.jid, reason: 'unavailable on its node' });
    // Back in the table after a failed delivery, unless it was asked to end.
    if (!rs.ending && this.#sm.byFull(info.jid) !== rs) this.#sm.addRemote(rs);
    if (!wasAvailable && rs.available && !rs.ending) this.#o.hooks.run('remote_user_available', rs.jid.domain, { jid: rs.jid });
  }

  /**
   * Another node's session left: out of the table, and the modules that
   * keep something for a full JID here (the rooms this node serves) let go
   * of it, unless a session with the same full JID took its place.
   */
  #remoteEnded(rs: RemoteSession, reason: string): void {
    this.#sm.unregister(rs);
    if (this.#sm.byFull(rs.jid.full) === undefined) this.#o.hooks.run('sm_remove_connection', rs.jid.domain, { jid: rs.jid, reason });
  }

  // --- deliveries ------------------------------------------------------------

  /**
   * Asks the session's node to deliver; without an acknowledgement the
   * stanza is routed again. The deliveries to one node made in one turn of
   * the event loop go as one request (at most cluster.delivery_batch_size
   * stanzas and the server's max_payload bytes), answered with the stanzas
   * whose session was gone; NATS keeps the order of one publisher's
   * messages and the node delivers a batch in order, so stanzas from one
   * sender to one recipient keep theirs.
   */
  deliverRemote(rs: RemoteSession, el: Element, ref?: string): void {
    this.#o.metrics.remoteDeliveries.inc();
    let item = JSON.stringify({ to: rs.jid.full, el: toJson(el), ref });
    let bytes = Buffer.byteLength(item);
    let k: number | undefined;
    let g: KeptGroup | undefined;
    if (this.#o.keepMax > 0 && worthKeeping(el)) {
      const key = `${rs.clusterNode}/${rs.incarnation}`;
      g = this.#kept.get(key);
      if (g === undefined) {
        g = { byId: new Map(), bytes: 0, dead: false };
        this.#kept.set(key, g);
      }
      if (g.byId.size < this.#o.keepMax && g.bytes + bytes <= this.#o.keepBytes) {
        k = ++this.#keepSeq;
        g.byId.set(k, { rs, el, bytes, held: false });
        g.bytes += bytes;
        const tail = `,"k":${k}}`;
        item = item.slice(0, -1) + tail;
        bytes += tail.length - 1;
      } else {
        g = undefined;
        this.#o.metrics.notKept.inc();
      }
    }
    let b = this.#outgoing.get(rs.clusterNode);
    // The envelope and the commas stay well below this margin.
    const room = this.#bus.maxPayload - 1024 - this.node.length;
    if (b !== undefined && (b.items.length >= this.#o.deliveryBatch || b.bytes + bytes + 1 > room)) {
      this.#sendBatch(rs.clusterNode, b);
      b = undefined;
    }
    if (b === undefined) {
      b = { items: [], stanzas: [], bytes: 0, done: null, resolve: null };
      const batch = b;
      b.done = new Promise<void>((r) => (batch.resolve = r));
      this.#outgoing.set(rs.clusterNode, b);
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        setImmediate(this.#flush);
      }
    }
    b.items.push(item);
    b.stanzas.push(k === undefined ? { rs, el } : { rs, el, k, g });
    b.bytes += bytes + 1;
    const from = el.attrs.from;
    if (from !== undefined) this.#sm.track(from, b.done!);
  }

  #outgoing = new Map<string, OutgoingBatch>();
  #flushQueued = false;
  /** Deliveries kept until safe, by `${node}/${incarnation}` of their destination. */
  #kept = new Map<string, KeptGroup>();
  #keepSeq = 0;
  #flush = (): void => {
    this.#flushQueued = false;
    const all = [...this.#outgoing];
    this.#outgoing.clear();
    for (const [node, b] of all) this.#sendBatch(node, b);
  };

  #sendBatch(node: string, b: OutgoingBatch): void {
    if (this.#outgoing.get(node) === b) this.#outgoing.delete(node);
    const json = `{"node":${JSON.stringify(this.node)},"inc":${JSON.stringify(this.#o.incarnation)},"b":[${b.items.join(',')}]}`;
    this.#bus.requestJson(this.#bus.nodeSubject(node, 'deliver'), json, this.#o.requestTimeout).then(
      (reply) => {
        if (!reply.ok) {
          for (const d of b.stanzas) {
            this.#forget(d.g, d.k);
            this.#undelivered(d.rs, d.el, 'the session is gone from its node');
          }
          return;
        }
        const gone = new Set(Array.isArray(reply.gone) ? (reply.gone as unknown[]) : []);
        // A node that does not keep receipts (an older one) lists none: every stanza it took is safe.
        const held = new Set(Array.isArray(reply.held) ? (reply.held as unknown[]) : []);
        for (let i = 0; i < b.stanzas.length; i++) {
          const d = b.stanzas[i]!;
          if (gone.has(i)) {
            this.#forget(d.g, d.k);
            this.#undelivered(d.rs, d.el, 'the session is gone from its node');
          } else if (d.g !== undefined && d.k !== undefined) {
            const kept = d.g.byId.get(d.k);
            if (kept === undefined) continue; // "handled" came first
            if (!held.has(i)) this.#forget(d.g, d.k);
            else if (d.g.dead) {
              // Its node was found dead after it answered.
              this.#forget(d.g, d.k);
              this.#undelivered(d.rs, d.el, 'its node died before its client acknowledged it');
            } else kept.held = true;
          }
        }
      },
      (err: unknown) => {
        const reason = err instanceof BusUnreachable ? err.code : String(err);
        for (const d of b.stanzas) {
          this.#forget(d.g, d.k);
          this.#undelivered(d.rs, d.el, reason);
        }
        // Unanswered is not gone: the node may have been slow, or this one
        // stalled. Its sessions that still are there come back with its
        // snapshot; if it is dead, the node table ends them.
        for (const inc of new Set(b.stanzas.map((d) => d.rs.incarnation))) {
          const p = this.#peers.get(`${node}/${inc}`);
          if (p !== undefined) void this.#resync(p);
        }
      },
    ).catch((err: unknown) => this.#logger.error({ what: 'cluster_reroute_failed', err: String(err) }, 'a stanza could not be routed again'))
      .finally(() => b.resolve!());
  }

  #forget(g: KeptGroup | undefined, k: number | undefined): void {
    if (g === undefined || k === undefined) return;
    const kept = g.byId.get(k);
    if (kept === undefined) return;
    g.byId.delete(k);
    g.bytes -= kept.bytes;
  }

  /** A node says deliveries it held are safe: their copies go. */
  #onHandled(m: { n: string; i: string; to: string; k: number[] }): void {
    if (m.to !== this.#o.incarnation || !Array.isArray(m.k)) return;
    const g = this.#kept.get(`${m.n}/${m.i}`);
    if (g === undefined) return;
    for (const k of m.k) this.#forget(g, k);
  }

  /** A node died: what it held and had not said was safe is routed again; its reply settles what was in flight. */
  #rerouteKept(key: string): number {
    const g = this.#kept.get(key);
    if (g === undefined) return 0;
    this.#kept.delete(key);
    g.dead = true;
    let n = 0;
    for (const [k, kept] of [...g.byId]) {
      if (!kept.held) continue;
      this.#forget(g, k);
      n++;
      try {
        this.#undelivered(kept.rs, kept.el, 'its node died before its client acknowledged it');
      } catch (err) {
        this.#logger.error({ what: 'cluster_reroute_failed', err: String(err) }, 'a stanza could not be routed again');
      }
    }
    return n;
  }

  #undelivered(rs: RemoteSession, el: Element, reason: string): void {
    this.#o.metrics.remoteDeliveryFailures.inc();
    this.#logger.info({ what: 'cluster_delivery_failed', node: rs.clusterNode, jid: rs.jid.full, name: el.name, reason }, 'a cross-node delivery was not acknowledged; routed again');
    this.#sm.unregister(rs);
    // A carbon copy (XEP-0280) was for that resource alone: routed again it
    // would reach the user's other resources, which had the message already.
    if (el.name === 'message' && (el.getChild('sent', NS_CARBONS) !== undefined || el.getChild('received', NS_CARBONS) !== undefined)) return;
    const from = tryParseJid(el.attrs.from ?? '') ?? parseJid(rs.jid.domain);
    const to = tryParseJid(el.attrs.to ?? '') ?? rs.jid;
    // As if the session were gone (RFC 6121 §8.5.3.2.1): another resource, else offline storage.
    this.#o.router.route(from, to, el);
  }

  /**
   * A batch of deliveries (or, from an older node, one): answered at once
   * with the indexes of the stanzas whose session was gone and of those a
   * session keeps until its client acknowledges them ("held": "handled"
   * follows).
   */
  #onDeliver(m: DeliverRequest): { ok: boolean; gone?: number[]; held?: number[] } {
    const node = typeof m.node === 'string' ? m.node : 'another node';
    const inc = typeof m.inc === 'string' ? m.inc : undefined;
    if (!Array.isArray(m.b)) return { ok: this.#deliverOne(m as DeliveryItem, node, undefined) !== 'gone' };
    const gone: number[] = [];
    const held: number[] = [];
    for (let i = 0; i < m.b.length; i++) {
      let r: 'gone' | 'done' | 'held' = 'gone';
      try {
        r = this.#deliverOne(m.b[i]!, node, inc);
      } catch (err) {
        this.#logger.error({ what: 'cluster_message_failed', err: String(err) }, 'a cluster message could not be handled');
      }
      if (r === 'gone') gone.push(i);
      else if (r === 'held') held.push(i);
    }
    return { ok: true, gone, held };
  }

  #deliverOne(m: DeliveryItem, node: string, inc: string | undefined): 'gone' | 'done' | 'held' {
    const s = this.#sm.byFull(m.to);
    if (s === undefined || s.clusterNode !== undefined) return 'gone';
    const el = fromJson(m.el) as Element;
    const from = tryParseJid(el.attrs.from ?? '') ?? parseJid(s.jid.domain);
    const acc = this.#o.router.newAcc(from, s.jid, el);
    // One routed stanza keeps one reference on every node; its carbon copies are the routing node's.
    if (typeof m.ref === 'string') acc.ref = m.ref;
    acc.routedBy = node;
    const k = typeof m.k === 'number' && inc !== undefined ? m.k : undefined;
    if (k === undefined) {
      this.#o.router.deliver(s, from, el, acc);
      return 'done';
    }
    // Stream management takes the receipt if it buffers the stanza; nobody
    // took it: the stanza is as safe here as it gets (written to the socket).
    let called = false;
    this.#sm.expectReceipt(el, () => {
      if (called) return;
      called = true;
      this.#handled(node, inc!, k);
    });
    try {
      this.#o.router.deliver(s, from, el, acc);
    } finally {
      if (this.#sm.dropReceipt(el)) called = true;
    }
    return called ? 'done' : 'held';
  }

  /** "handled" to send, by `${node}/${incarnation}` of the delivering node. */
  #handledOut = new Map<string, { node: string; inc: string; k: number[] }>();
  #handledQueued = false;

  /** A delivery held here is safe: its sender's node is told, with the others of this turn. */
  #handled(node: string, inc: string, k: number): void {
    const key = `${node}/${inc}`;
    let h = this.#handledOut.get(key);
    if (h === undefined) {
      h = { node, inc, k: [] };
      this.#handledOut.set(key, h);
    }
    h.k.push(k);
    if (!this.#handledQueued) {
      this.#handledQueued = true;
      setImmediate(this.#flushHandled);
    }
  }

  #flushHandled = (): void => {
    this.#handledQueued = false;
    const all = [...this.#handledOut.values()];
    this.#handledOut.clear();
    for (const h of all) {
      // Numbers of at most 16 digits: far below max_payload per message.
      for (let i = 0; i < h.k.length; i += HANDLED_PAGE) {
        this.#bus.publish(this.#bus.nodeSubject(h.node, 'handled'), { n: this.node, i: this.#o.incarnation, to: h.inc, k: h.k.slice(i, i + HANDLED_PAGE) });
      }
    }
  };

  // --- group chat: one node serves a room -----------------------------------

  /**
   * The node serving a room: rendezvous (highest random weight) hashing of
   * the room's bare JID over the live nodes' names, so that every node
   * picks the same one and a node's death moves only its own rooms.
   * Stanzas to the service itself (disco) are answered where they arrive.
   */
  ownerOf(room: string): string {
    let best = this.node;
    let bestScore = -1;
    for (const n of this.#liveNames.length > 0 ? this.#liveNames : [this.node]) {
      const score = fnv1a(`${n}\u0000${room}`);
      if (score > bestScore || (score === bestScore && n < best)) {
        best = n;
        bestScore = score;
      }
    }
    return best;
  }

  #forwardToService(from: JID, to: JID, packet: Element): boolean {
    if (to.local === '') return false;
    const owner = this.ownerOf(to.bare);
    if (owner === this.node) return false;
    this.#bus.request(this.#bus.nodeSubject(owner, 'service'), { from: from.full, to: to.full, el: toJson(packet) }, this.#o.requestTimeout).then(
      (reply) => {
        if (!reply.ok) this.#o.router.serveLocally(from, to, packet);
      },
      (err: unknown) => {
        // Its node is gone or slow: served here rather than lost.
        this.#logger.info({ what: 'cluster_service_forward_failed', node: owner, room: to.bare, err: String(err) }, 'a room\'s node did not take a stanza; served here');
        this.#o.router.serveLocally(from, to, packet);
      },
    ).catch((err: unknown) => this.#logger.error({ what: 'service_failed', domain: to.domain, err: String(err) }, 'a service failed on a stanza'));
    return true;
  }

  #onService(m: { from: string; to: string; el: ElementJson }): { ok: boolean } {
    const from = tryParseJid(m.from);
    const to = tryParseJid(m.to);
    if (from === null || to === null) return { ok: true };
    return { ok: this.#o.router.serveLocally(from, to, fromJson(m.el) as Element) };
  }

  kickRemote(rs: RemoteSession, condition: string, text: string | undefined, disconnect: boolean): void {
    this.#bus.request(this.#bus.nodeSubject(rs.clusterNode, 'kick'), { to: rs.jid.full, condition, text, disconnect }, this.#o.requestTimeout).catch((err: unknown) =>
      this.#logger.warn({ what: 'cluster_kick_failed', node: rs.clusterNode, jid: rs.jid.full, err: String(err) }, 'could not end a session on another node'),
    );
  }

  #onKick(m: { to: string; condition: string; text?: string; disconnect?: boolean }): { ok: boolean } {
    const s = this.#sm.byFull(m.to);
    if (s === undefined || s.clusterNode !== undefined) return { ok: false };
    if (m.disconnect === true) s.disconnect(m.text ?? 'asked by another node');
    else s.kick(m.condition, m.text);
    return { ok: true };
  }
}
