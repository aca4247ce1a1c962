// Session manager: the table of bound sessions, by full and by bare JID.
import type { SessionsApi, SessionView } from './types.ts';
import type { JID } from '../xmpp/jid.ts';

/** What the session manager needs of a live session. */
export interface ManagedSession extends SessionView {
  /** Ends the session with a stream error (e.g. "conflict" when replaced). */
  kick(condition: string, text?: string): void;
}

export class SessionManager implements SessionsApi {
  #byFull = new Map<string, ManagedSession>();
  #byBare = new Map<string, ManagedSession[]>();
  #maxPerUser: (jid: JID) => number;

  /** `maxPerUser`: bound sessions an account may have (0 = no limit), a number or one per account. */
  constructor(maxPerUser: number | ((jid: JID) => number) = 10) {
    this.#maxPerUser = typeof maxPerUser === 'number' ? () => maxPerUser : maxPerUser;
  }

  /**
   * Adds a bound session. A session already bound to the same full JID is
   * replaced (RFC 6120 §7.7.2.2, "conflict"); past the per-user limit the
   * oldest session is replaced.
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
