// Presence (RFC 6121 §3 subscriptions, §4 exchanging presence). The roster
// is the source of truth for who receives whose presence.
import type { Logger } from 'pino';
import type { Acc } from '../hooks/catalogue.ts';
import type { Hooks } from '../hooks/hooks.ts';
import type { UserStore } from '../storage/types.ts';
import type { Roster, RosterItem } from './types.ts';
import { Element } from '../xmpp/xml.ts';
import { tryParseJid, type JID } from '../xmpp/jid.ts';
import { StanzaError, errorReply } from '../xmpp/errors.ts';
import { inbound as subInbound, outbound as subOutbound, NONE, type SubState, type SubType } from './roster-state.ts';
import { pushRosterItem } from './roster-items.ts';
import type { Router, PresenceHandler } from './router.ts';
import type { SessionManager, ManagedSession } from './sm.ts';

/**
 * The roster of a server without mod_roster: everyone's is empty and stays
 * so. Presence then still works between a user's own resources (RFC 6121
 * §4.2.2, §4.5.2), directed presence is routed as it is, and a subscription
 * request reaches the contact but changes no state (as MongooseIM does
 * without a roster module: its roster_get hook answers with an empty list).
 */
export const NO_ROSTER: Roster = Object.freeze({
  getRoster: async () => [],
  getItem: async () => null,
  setItem: async () => {},
});

/**
 * Stanzas a broadcast routes before it lets the event loop run others' work:
 * a user with a large roster sending presence in a loop must not hold up
 * everyone else's traffic for the whole broadcast.
 */
const BROADCAST_CHUNK = 64;

/** Lets the event loop run what waits (I/O included) before going on. */
function yieldToOthers(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

const SUB_TYPES = new Set(['subscribe', 'subscribed', 'unsubscribe', 'unsubscribed']);

/** What presence needs to change on a session. */
export interface PresenceSession extends ManagedSession {
  available: boolean;
  priority: number;
  presence: Element | null;
}

export class Presence implements PresenceHandler {
  #router: Router;
  #sm: SessionManager;
  #roster: Roster;
  #users: UserStore;
  #hooks: Hooks;
  #logger: Logger;

  constructor(o: { router: Router; sm: SessionManager; roster: Roster; users: UserStore; hooks: Hooks; logger: Logger }) {
    this.#router = o.router;
    this.#sm = o.sm;
    this.#roster = o.roster;
    this.#users = o.users;
    this.#hooks = o.hooks;
    this.#logger = o.logger;
  }

  #fail = (err: unknown) => this.#logger.error({ what: 'presence_failed', err: String(err) }, 'presence processing failed');

  /**
   * A presence stanza a local client sent (RFC 6121 §4.2, §4.4, §3.x
   * outbound). `from` is its full JID. Returns, for a broadcast or a
   * subscription change, the promise of its end: the session routes nothing
   * more of the client's until then, so a client sending presence in a loop
   * has one broadcast running at a time, and its reading stops once its
   * backlog is full, instead of piling up work for the whole server.
   */
  outbound(session: PresenceSession, packet: Element, to: JID | null, acc: Acc): Promise<void> | undefined {
    const type = packet.attrs.type;
    if (to === null || (to.bare === session.jid.bare && to.resource === '' && type !== undefined && !SUB_TYPES.has(type))) {
      if (type === undefined || type === 'unavailable') return this.#broadcast(session, packet, type === undefined).catch(this.#fail);
      return undefined;
    }
    if (type !== undefined && SUB_TYPES.has(type)) {
      return this.#subscriptionOut(session.jid, to.bareJid(), type as SubType, packet).catch((err: unknown) => {
        // A limit of the roster (mod_roster's max_items): the user is told.
        if (err instanceof StanzaError) session.send(errorReply(packet, err));
        else this.#fail(err);
      });
    }
    // Directed presence, probes and errors go as they are.
    this.#router.route(session.jid, to, packet, acc);
    return undefined;
  }

  /** The session ends: an available session broadcasts unavailable (RFC 6121 §4.5.2). */
  sessionClosed(session: PresenceSession): void {
    if (!session.available) return;
    const el = new Element('presence', { type: 'unavailable', from: session.jid.full });
    this.#broadcast(session, el, false).catch(this.#fail);
  }

  /**
   * Sends an available session's presence again to the contacts subscribed
   * to it: a cluster node that was taken for dead (its users' contacts were
   * told they went unavailable) is back with the same sessions.
   */
  async announce(session: PresenceSession): Promise<void> {
    const presence = session.presence;
    if (!session.available || presence === null) return;
    const me = session.jid;
    await this.#toSubscribers(me, presence, await this.#roster.getRoster(me.local, me.domain));
  }

  /**
   * Routes a copy of `packet` from `me` to each contact subscribed to it
   * (from/both, RFC 6121 §4.2.2 / §4.5.2). The roster is bounded (mod_roster's
   * max_items) and routed in chunks, yielding to other sessions between them;
   * returns how many were routed, for the caller's later chunks.
   */
  async #toSubscribers(me: JID, packet: Element, roster: readonly RosterItem[]): Promise<number> {
    let routed = 0;
    for (const item of roster) {
      if (item.subscription !== 'from' && item.subscription !== 'both') continue;
      const to = tryParseJid(item.jid);
      if (to === null) continue;
      if (++routed % BROADCAST_CHUNK === 0) await yieldToOthers();
      const copy = addressed(packet);
      copy.attrs.from = me.full;
      copy.attrs.to = to.full;
      this.#router.route(me, to, copy);
    }
    return routed;
  }

  async #broadcast(session: PresenceSession, packet: Element, available: boolean): Promise<void> {
    const me = session.jid;
    const initial = available && !session.available;
    if (available) {
      const p = Number.parseInt(packet.getChildText('priority') ?? '0', 10);
      session.priority = Number.isFinite(p) && p >= -128 && p <= 127 ? p : 0;
      session.presence = packet;
      session.available = true;
    } else {
      if (!session.available) return;
      session.available = false;
      session.presence = null;
    }
    this.#sm.changed(session);
    const roster = await this.#roster.getRoster(me.local, me.domain);
    let routed = await this.#toSubscribers(me, packet, roster);
    // To the user's own available resources, this one included.
    for (const s of this.#sm.byBare(me.bare)) {
      if (!s.available && s !== session) continue;
      const copy = addressed(packet);
      copy.attrs.from = me.full;
      copy.attrs.to = s.jid.full;
      this.#router.deliver(s, me, copy, this.#router.newAcc(me, s.jid, copy));
    }
    if (initial) {
      // Probes to the contacts the user is subscribed to (§4.3.1) and the
      // user's other resources' presence to the new one.
      for (const item of roster) {
        if (item.subscription !== 'to' && item.subscription !== 'both') continue;
        const to = tryParseJid(item.jid);
        if (to === null) continue;
        if (++routed % BROADCAST_CHUNK === 0) await yieldToOthers();
        const probe = new Element('presence', { type: 'probe', from: me.bare, to: to.bare });
        this.#router.route(me.bareJid(), to, probe);
      }
      for (const s of this.#sm.byBare(me.bare)) {
        if (s === session || !s.available || s.presence === null) continue;
        const copy = addressed(s.presence);
        copy.attrs.from = s.jid.full;
        copy.attrs.to = me.full;
        session.send(copy);
      }
      // Subscription requests that waited for the user (§3.1.3).
      for (const item of roster) {
        if (!item.pendingIn) continue;
        session.send(new Element('presence', { type: 'subscribe', from: item.jid, to: me.bare }));
      }
      this.#hooks.run('user_available', me.domain, { jid: me });
    } else if (!available) {
      this.#hooks.run('unset_presence', me.domain, { jid: me, status: packet.getChildText('status') ?? '' });
    }
  }

  async #subscriptionOut(user: JID, contact: JID, type: SubType, packet: Element): Promise<void> {
    const item = await this.#roster.getItem(user.local, user.domain, contact.bare);
    const r = subOutbound(stateOfItem(item), type);
    if (r.changed) {
      const next = withState(item, contact.bare, r.state);
      await this.#roster.setItem(user.local, user.domain, next);
      pushRosterItem(this.#sm, user.bare, next);
    }
    if (!r.route) return;
    // RFC 6121 §3.1.2: the server stamps the bare JID on subscription stanzas.
    const out = new Element('presence', { type, from: user.bare, to: contact.bare }, packet.children);
    if (packet.attrs.id !== undefined) out.attrs.id = packet.attrs.id;
    this.#router.route(user.bareJid(), contact, out);
  }

  /** RFC 6121 §3.1.5: on approving, the user's available presence goes to the contact. */
  #sendPresenceTo(user: JID, contact: JID, unavailable: boolean): void {
    const sessions = this.#sm.byBare(user.bare).filter((s) => s.available && s.presence !== null);
    if (unavailable || sessions.length === 0) {
      if (unavailable) this.#router.route(user, contact, new Element('presence', { type: 'unavailable', from: user.bare, to: contact.bare }));
      return;
    }
    for (const s of sessions) {
      const copy = addressed(s.presence!);
      copy.attrs.from = s.jid.full;
      copy.attrs.to = contact.bare;
      this.#router.route(s.jid, contact, copy);
    }
  }

  inbound(from: JID, to: JID, packet: Element, acc: Acc): void {
    const type = packet.attrs.type;
    if (type !== undefined && SUB_TYPES.has(type)) {
      this.#subscriptionIn(from.bareJid(), to.bareJid(), type as SubType, packet).catch(this.#fail);
      return;
    }
    if (type === 'probe') {
      this.#probe(from, to).catch(this.#fail);
      return;
    }
    if (to.resource !== '') {
      const s = this.#sm.byFull(to.full);
      if (s !== undefined) this.#router.deliver(s, from, packet, acc);
      return;
    }
    for (const s of this.#sm.byBare(to.bare)) {
      if (!s.available) continue;
      this.#router.deliver(s, from, packet, acc);
    }
  }

  async #probe(from: JID, to: JID): Promise<void> {
    // §4.3.2: answered only to contacts subscribed to the user's presence.
    const item = await this.#roster.getItem(to.local, to.domain, from.bare);
    if (item === null || (item.subscription !== 'from' && item.subscription !== 'both')) return;
    const sessions = this.#sm.byBare(to.bare).filter((s) => s.available && s.presence !== null);
    if (sessions.length === 0) {
      this.#router.route(to.bareJid(), from, new Element('presence', { type: 'unavailable', from: to.bare, to: from.full }));
      return;
    }
    for (const s of sessions) {
      const copy = addressed(s.presence!);
      copy.attrs.from = s.jid.full;
      copy.attrs.to = from.full;
      this.#router.route(s.jid, from, copy);
    }
  }

  async #subscriptionIn(contact: JID, user: JID, type: SubType, packet: Element): Promise<void> {
    if (!(await this.#users.userExists(user.local, user.domain))) {
      // §3.1.3: a subscription request to a user who does not exist is refused.
      if (type === 'subscribe') this.#router.route(user, contact, new Element('presence', { type: 'unsubscribed', from: user.bare, to: contact.bare }));
      return;
    }
    const item = await this.#roster.getItem(user.local, user.domain, contact.bare);
    const r = subInbound(stateOfItem(item), type);
    let next: RosterItem | null = null;
    if (r.changed) {
      next = withState(item, contact.bare, r.state);
      try {
        await this.#roster.setItem(user.local, user.domain, next);
      } catch (err) {
        if (!(err instanceof StanzaError)) throw err;
        // The user's roster is full: a stranger's request is not kept.
        this.#logger.info({ what: 'presence_roster_full', user: user.bare, contact: contact.bare, type }, 'a subscription stanza was dropped: the roster is full');
        return;
      }
      // A request alone does not put a contact on the roster (§3.1.3): only existing items are pushed.
      if (item !== null || next.subscription !== 'none' || next.ask !== null) pushRosterItem(this.#sm, user.bare, next);
    }
    if (r.autoReply !== undefined) {
      this.#router.route(user, contact, new Element('presence', { type: r.autoReply, from: user.bare, to: contact.bare }));
    }
    if (r.deliver) {
      for (const s of this.#sm.byBare(user.bare)) {
        if (!s.available) continue;
        const copy = new Element('presence', { type, from: contact.bare, to: user.bare }, packet.children);
        this.#router.deliver(s, contact, copy, this.#router.newAcc(contact, s.jid, copy));
      }
    }
    // The contact approved / revoked: the user's side tells the contact's
    // presence (§3.1.5, §3.2.3) — for local users, that is the contact's own presence now.
    if (r.changed && type === 'subscribed') this.#sendPresenceTo(contact, user, false);
    if (r.changed && (type === 'unsubscribed')) {
      for (const s of this.#sm.byBare(contact.bare)) {
        if (!s.available) continue;
        this.#router.route(s.jid, user, new Element('presence', { type: 'unavailable', from: s.jid.full, to: user.bare }));
      }
    }
  }
}

/**
 * A copy of a presence stanza to address to one recipient: its own
 * attributes, the children shared. A broadcast makes one per contact, and a
 * deep copy would cost the whole stanza's tree each time (up to
 * max_stanza_size of elements, times max_items); routed stanzas are never
 * changed below their top element.
 */
function addressed(packet: Element): Element {
  return new Element(packet.name, packet.attrs, packet.children);
}

function stateOfItem(item: RosterItem | null): SubState {
  if (item === null) return NONE;
  return { subscription: item.subscription, ask: item.ask, pendingIn: item.pendingIn };
}

function withState(item: RosterItem | null, jid: string, s: SubState): RosterItem {
  return {
    jid,
    name: item?.name ?? null,
    groups: item?.groups ?? [],
    subscription: s.subscription,
    ask: s.ask,
    pendingIn: s.pendingIn,
  };
}
