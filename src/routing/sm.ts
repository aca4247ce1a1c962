// Session manager: the table of bound sessions, by full and by bare JID.
import type { SessionsApi, SessionView } from './types.ts';
import type { JID } from '../xmpp/jid.ts';
import type { Element } from '../xmpp/xml.ts';

/** What the session manager needs of a live session. */
export interface ManagedSession extends SessionView {
  /** Ends the session with a stream error (e.g. "conflict" when replaced). */
  kick(condition: string, text?: string): void;
}

/**
 * Told of the changes of this node's own sessions (never of remote ones):
 * the cluster replicates them. Null on a single node, so that nothing is
 * done for it on any path.
 */
export interface SessionObserver {
  bound(s: ManagedSession): void;
  /** Presence, priority, availability or roster interest changed. */
  changed(s: ManagedSession): void;
  ended(s: ManagedSession): void;
}

export class SessionManager implements SessionsApi {
  #byFull = new Map<string, ManagedSession>();
  #byBare = new Map<string, ManagedSession[]>();
  #maxPerUser: (jid: JID) => number;
  observer: SessionObserver | null = null;
  /** Cross-node deliveries not yet acknowledged, by the full JID of their sender. */
  #inFlight: Map<string, Set<Promise<void>>> | null = null;
  /** Receipts of cross-node deliveries being handed to a session (expectReceipt). */
  #receipts: WeakMap<Element, () => void> | null = null;

  /** `maxPerUser`: bound sessions an account may have (0 = no limit), a number or one per account. */
  constructor(maxPerUser: number | ((jid: JID) => number) = 10) {
    this.#maxPerUser = typeof maxPerUser === 'number' ? () => maxPerUser : maxPerUser;
  }

  /**
   * Adds a bound session. A session already bound to the same full JID is
   * replaced (RFC 6120 §7.7.2.2, "conflict"); past the per-user limit the
   * oldest session is replaced. Across the cluster, the sessions of other
   * nodes count too and the oldest is replaced wherever it is (its proxy's
   * kick asks its node).
   */
  register(s: ManagedSession): void {
    const old = this.#byFull.get(s.jid.full);
    if (old !== undefined) {
      this.unregister(old);
      old.kick('conflict', 'replaced by a new session with the same resource');
    }
    let list = this.#byBare.get(s.jid.bare);
    if (list === undefined) {
      list = [];
      this.#byBare.set(s.jid.bare, list);
    }
    const max = this.#maxPerUser(s.jid);
    while (max > 0 && list.length >= max) {
      const oldest = list[0]!;
      this.unregister(oldest);
      oldest.kick('conflict', 'too many sessions for this account; the oldest was replaced');
      list = this.#byBare.get(s.jid.bare) ?? [];
      if (!this.#byBare.has(s.jid.bare)) this.#byBare.set(s.jid.bare, list);
    }
    list.push(s);
    this.#byFull.set(s.jid.full, s);
    if (this.observer !== null && s.clusterNode === undefined) this.observer.bound(s);
  }

  /**
   * Adds (or updates) the proxy of another node's session. The limits are
   * its node's to enforce; a local session with the same full JID is older
   * than the remote one's bind, which replaced it (RFC 6120 §7.7.2.2).
   */
  addRemote(s: ManagedSession): void {
    const old = this.#byFull.get(s.jid.full);
    if (old === s) return;
    if (old !== undefined) {
      this.unregister(old);
      if (old.clusterNode === undefined) old.kick('conflict', 'replaced by a new session with the same resource');
    }
    let list = this.#byBare.get(s.jid.bare);
    if (list === undefined) {
      list = [];
      this.#byBare.set(s.jid.bare, list);
    }
    list.push(s);
    this.#byFull.set(s.jid.full, s);
  }

  /** A session's presence, priority or roster interest changed (the cluster tells the other nodes). */
  changed(s: ManagedSession): void {
    if (this.observer !== null && s.clusterNode === undefined) this.observer.changed(s);
  }

  /** Keeps `p`, a cross-node delivery of a stanza from `from`, until it settles. */
  track(from: string, p: Promise<void>): void {
    const m = (this.#inFlight ??= new Map());
    let set = m.get(from);
    if (set === undefined) {
      set = new Set();
      m.set(from, set);
    }
    set.add(p);
    const s = set;
    const done = () => {
      s.delete(p);
      if (s.size === 0 && m.get(from) === s) m.delete(from);
    };
    p.then(done, done);
  }

  settled(full: string): Promise<void> | undefined {
    const set = this.#inFlight?.get(full);
    if (set === undefined || set.size === 0) return undefined;
    return Promise.allSettled([...set]).then(() => {});
  }

  /**
   * A cluster: `el`, another node's delivery, is about to be handed to a
   * local session; `handled` tells that node it is safe. Whoever keeps the
   * stanza until its client acknowledges it (stream management) takes the
   * receipt (takeReceipt) while the stanza is handed over; the caller then
   * calls dropReceipt, which is true when nobody took it.
   */
  expectReceipt(el: Element, handled: () => void): void {
    (this.#receipts ??= new WeakMap()).set(el, handled);
  }

  takeReceipt(el: Element): (() => void) | undefined {
    const r = this.#receipts?.get(el);
    if (r !== undefined) this.#receipts!.delete(el);
    return r;
  }

  dropReceipt(el: Element): boolean {
    return this.#receipts?.delete(el) === true;
  }

  /**
   * Puts `next` in `old`'s place (same full JID), as XEP-0198 resumption
   * does: no session is kicked and the user's session count is unchanged.
   */
  replace(old: ManagedSession, next: ManagedSession): void {
    if (this.#byFull.get(old.jid.full) !== old) {
      this.register(next);
      return;
    }
    this.#byFull.set(next.jid.full, next);
    const list = this.#byBare.get(old.jid.bare);
    const i = list?.indexOf(old) ?? -1;
    if (list !== undefined && i >= 0) list[i] = next;
  }

  /** Removes a session; false when it was not (or no longer) registered. */
  unregister(s: ManagedSession): boolean {
    if (this.#byFull.get(s.jid.full) !== s) return false;
    this.#byFull.delete(s.jid.full);
    const list = this.#byBare.get(s.jid.bare);
    if (list !== undefined) {
      const i = list.indexOf(s);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.#byBare.delete(s.jid.bare);
    }
    if (this.observer !== null && s.clusterNode === undefined) this.observer.ended(s);
    return true;
  }

  byFull(full: string): ManagedSession | undefined {
    return this.#byFull.get(full);
  }

  byBare(bare: string): ManagedSession[] {
    return this.#byBare.get(bare) ?? EMPTY;
  }

  count(): number {
    return this.#byFull.size;
  }

  /** This node's own sessions (count() less the other nodes' in a cluster). */
  localCount(): number {
    if (this.observer === null) return this.#byFull.size;
    let n = 0;
    for (const s of this.#byFull.values()) if (s.clusterNode === undefined) n++;
    return n;
  }

  /** Accounts with at least one bound session. */
  users(): number {
    return this.#byBare.size;
  }

  all(): IterableIterator<ManagedSession> {
    return this.#byFull.values();
  }

  /** Available sessions of a user, for presence and bare-JID delivery. */
  available(jid: JID): ManagedSession[] {
    const list = this.#byBare.get(jid.bare);
    if (list === undefined) return EMPTY;
    return list.filter((s) => s.available);
  }
}

const EMPTY: ManagedSession[] = [];
