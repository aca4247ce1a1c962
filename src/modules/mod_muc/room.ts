// One XEP-0045 room: its occupants (in memory), its configuration,
// affiliations and subject (persisted when the room is persistent), and a
// bounded history of its messages (in memory). Every stanza for the room or
// one of its occupants comes through handle(); answers leave through
// ctx.route. Section numbers are XEP-0045's.
import { StanzaError } from '../../xmpp/errors.ts';
import { parseJid, type JID } from '../../xmpp/jid.ts';
import { NS_DELAY, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_XDATA } from '../../xmpp/ns.ts';
import { Element } from '../../xmpp/xml.ts';

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
const NS_ROOMCONFIG = 'http://jabber.org/protocol/muc#roomconfig';

export type Role = 'moderator' | 'participant' | 'visitor' | 'none';
export type Affiliation = 'owner' | 'admin' | 'member' | 'outcast' | 'none';
const AFFILIATIONS: readonly Affiliation[] = ['owner', 'admin', 'member', 'outcast', 'none'];
const ROLES: readonly Role[] = ['moderator', 'participant', 'visitor', 'none'];
/** Invitations a room remembers (for their declines) at most; the oldest is forgotten first. */
const MAX_INVITATIONS = 256;

/** The room options MongooseIM's default_room has, by its names. */
export interface RoomConfig {
  title: string;
  description: string;
  allow_change_subj: boolean;
  allow_query_users: boolean;
  allow_private_messages: boolean;
  allow_visitor_status: boolean;
  allow_visitor_nickchange: boolean;
  public: boolean;
  public_list: boolean;
  persistent: boolean;
  moderated: boolean;
  members_by_default: boolean;
  members_only: boolean;
  allow_user_invites: boolean;
  /** Accepted for compatibility: one session per nickname. */
  allow_multiple_sessions: boolean;
  password_protected: boolean;
  password: string;
  anonymous: boolean;
  max_users: number;
  maygetmemberlist: string[];
}

/** What is stored of a persistent room. */
export interface PersistedRoom {
  config: RoomConfig;
  affiliations: Record<string, Affiliation>;
  subject: string;
  subject_author: string;
  /** The bare JID that created the room (absent in rooms stored before it was kept). */
  creator?: string;
}

export interface RoomLimits {
  /** Messages kept for history on join (history_size). */
  historySize: number;
  /** Bytes of history kept at most, all messages together. */
  historyMaxBytes: number;
  /** Occupants the room may ever hold, whatever its own max_users says. */
  maxUsers: number;
  /** Longest subject, in characters. */
  maxSubject: number;
  /** Admins and owners may enter this many beyond max_users (max_users_admin_threshold). */
  adminThreshold: number;
  /** Affiliations (owners, admins, members and outcasts together) a room holds at most (max_affiliations). */
  maxAffiliations: number;
}

export interface RoomContext {
  route(from: JID, to: JID, el: Element): void;
  /** The room's state changed: store it (persistent rooms) or forget it (temporary ones that are destroyed). */
  persist(room: Room): void;
  /** The room has no occupant left and is not persistent, or was destroyed: drop it. */
  gone(room: Room, destroyed: boolean): void;
  /** How many rooms `bare` occupies on the whole service. */
  roomsOccupied(bare: string): number;
  /**
   * Charges `bare` for `chars` characters (as written, all recipients
   * together) that its stanza makes the room send; false, and nothing
   * charged, when that is past its max_broadcast_rate.
   */
  charge(bare: string, chars: number): boolean;
  /** `jid` entered / left the room. */
  joined(room: Room, jid: JID): void;
  left(room: Room, jid: JID): void;
  maxUserConferences: number;
  limits: RoomLimits;
  /** May `jid` make the room persistent (access_persistent)? */
  mayPersist(jid: JID): boolean;
  /** Is `jid` an administrator of the whole service (access_admin)? They act as owners of every room. */
  isServiceAdmin(jid: JID): boolean;
}

interface Occupant {
  nick: string;
  jid: JID;
  role: Role;
  /** Their last presence, as they sent it (status, show...). */
  presence: Element;
}

interface HistoryEntry {
  el: Element;
  at: number;
  bytes: number;
}

export class Room {
  readonly jid: JID;
  config: RoomConfig;
  readonly affiliations = new Map<string, Affiliation>();
  subject = '';
  subjectAuthor = '';
  /** Who created the room ('' when not known): counted against their max_rooms_per_user while the room exists. */
  creator = '';
  readonly #occupants = new Map<string, Occupant>();
  readonly #byJid = new Map<string, Occupant>();
  /** Invitations not yet declined: invitee's bare JID → the inviter's (the latest MAX_INVITATIONS). */
  readonly #invited = new Map<string, JID>();
  #history: HistoryEntry[] = [];
  #historyBytes = 0;
  readonly #ctx: RoomContext;

  constructor(jid: JID, config: RoomConfig, ctx: RoomContext) {
    this.jid = jid;
    this.config = { ...config, maygetmemberlist: [...config.maygetmemberlist] };
    this.#ctx = ctx;
  }

  static restore(jid: JID, state: PersistedRoom, ctx: RoomContext, defaults: RoomConfig): Room {
    const r = new Room(jid, { ...defaults, ...state.config }, ctx);
    for (const [k, v] of Object.entries(state.affiliations)) if (AFFILIATIONS.includes(v) && v !== 'none') r.affiliations.set(k, v);
    r.subject = state.subject;
    r.subjectAuthor = state.subject_author;
    r.creator = typeof state.creator === 'string' ? state.creator : '';
    return r;
  }

  persisted(): PersistedRoom {
    return { config: this.config, affiliations: Object.fromEntries(this.affiliations), subject: this.subject, subject_author: this.subjectAuthor, creator: this.creator };
  }

  get occupantCount(): number {
    return this.#occupants.size;
  }

  hasOccupant(bare: string): boolean {
    for (const o of this.#occupants.values()) if (o.jid.bare === bare) return true;
    return false;
  }

  affiliationOf(jid: JID): Affiliation {
    const a = this.affiliations.get(jid.bare) ?? 'none';
    return a !== 'owner' && this.#ctx.isServiceAdmin(jid) ? 'owner' : a;
  }

  /** A new room: its creator is its owner (§10.1). */
  created(owner: JID): void {
    this.creator = owner.bare;
    this.affiliations.set(owner.bare, 'owner');
  }

  handle(from: JID, to: JID, packet: Element): void {
    try {
      if (packet.name === 'presence') this.#presence(from, to, packet);
      else if (packet.name === 'message') this.#message(from, to, packet);
      else if (packet.name === 'iq') this.#iq(from, to, packet);
    } catch (err) {
      if (!(err instanceof StanzaError)) throw err;
      this.#error(from, to, packet, err);
    }
  }

  /** The occupant's session is gone (or sent unavailable presence to everyone): it leaves every room silently for itself. */
  sessionGone(jid: JID): void {
    const o = this.#byJid.get(jid.full);
    if (o !== undefined) this.#leave(o, new Element('presence', { type: 'unavailable' }), [], false);
  }

  #error(from: JID, to: JID, packet: Element, err: StanzaError): void {
    if (packet.attrs.type === 'error') return;
    const reply = new Element(packet.name, { type: 'error', id: packet.attrs.id, from: to.full, to: from.full }, packet.name === 'iq' ? [] : packet.children.slice());
    reply.children.push(err.toElement());
    this.#ctx.route(to, from, reply);
  }

  // ---------------------------------------------------------------- presence

  #presence(from: JID, to: JID, packet: Element): void {
    const type = packet.attrs.type;
    const me = this.#byJid.get(from.full);
    if (type === 'error') {
      // The occupant's client bounced something: it is no longer there.
      if (me !== undefined) this.#leave(me, new Element('presence', { type: 'unavailable' }), [], false);
      return;
    }
    if (to.resource === '') throw new StanzaError('jid-malformed', 'modify', 'a presence to a room must name a nickname (room@service/nick)');
    if (type === 'unavailable') {
      if (me !== undefined) this.#leave(me, packet, [], true);
      return;
    }
    if (type !== undefined) return; // subscriptions and probes mean nothing to a room
    const nick = to.resource;
    if (me !== undefined) {
      if (me.nick === nick) return this.#statusChange(me, packet);
      return this.#nickChange(me, nick, packet);
    }
    this.#join(from, nick, packet);
  }

  #join(from: JID, nick: string, packet: Element): void {
    const aff = this.affiliationOf(from);
    const mucX = packet.getChild('x', NS_MUC);
    // §7.2.6 / §7.2.7 / §7.2.8 / §7.2.9 / §7.2.10, in that order.
    if (aff === 'outcast') throw new StanzaError('forbidden', 'auth', 'you are banned from this room');
    if (this.config.members_only && aff === 'none') throw new StanzaError('registration-required', 'auth', 'this room is for members only');
    const taken = this.#occupants.get(nick);
    if (taken !== undefined) {
      throw new StanzaError('conflict', 'cancel', 'that nickname is already in use in this room');
    }
    const admin = aff === 'owner' || aff === 'admin';
    const cap = Math.min(this.config.max_users, this.#ctx.limits.maxUsers) + (admin ? this.#ctx.limits.adminThreshold : 0);
    if (this.#occupants.size >= cap) {
      throw new StanzaError('service-unavailable', 'wait', 'the room is full');
    }
    if (this.config.password_protected && aff !== 'owner') {
      const given = mucX?.getChildText('password');
      if (given !== this.config.password) throw new StanzaError('not-authorized', 'auth', 'a password is required to enter this room');
    }
    if (!this.hasOccupant(from.bare) && this.#ctx.roomsOccupied(from.bare) >= this.#ctx.maxUserConferences) {
      throw new StanzaError('resource-constraint', 'wait', `you may be in ${this.#ctx.maxUserConferences} rooms at once`);
    }
    const role: Role = admin ? 'moderator' : aff === 'member' ? 'participant' : this.config.moderated && !this.config.members_by_default ? 'visitor' : 'participant';
    const o: Occupant = { nick, jid: from, role, presence: stripMuc(packet) };
    // What entering makes the room send: the newcomer's presence to everyone, and the history.
    this.#charge(from, this.#presenceChars(o) * (this.#occupants.size + 1) + this.#historyBytes);
    const created = this.#occupants.size === 0 && this.#justCreated;
    this.#justCreated = false;
    this.#occupants.set(nick, o);
    this.#byJid.set(from.full, o);
    this.#ctx.joined(this, from);
    // §7.2.3: the others' presence first, then everyone gets the new one's, the newcomer last (with 110).
    for (const other of this.#occupants.values()) if (other !== o) this.#ctx.route(this.#occupantJid(other), from, this.#presenceOf(other, from, []));
    const selfCodes = ['110'];
    if (!this.config.anonymous) selfCodes.push('100');
    if (created) selfCodes.push('201');
    this.#broadcastPresence(o, selfCodes, []);
    this.#sendHistory(o, mucX?.getChild('history'));
    // §7.2.15: the subject, even when empty, tells the client the join is complete.
    const subj = new Element('message', { type: 'groupchat', from: this.subjectAuthor === '' ? this.jid.full : this.jid.withResource(this.subjectAuthor).full, to: from.full, id: `subject-${Date.now().toString(36)}` });
    subj.c('subject').t(this.subject);
    this.#ctx.route(this.jid, from, subj);
  }

  /** Set by the service when it makes the room for this join. */
  #justCreated = false;
  markCreated(): void {
    this.#justCreated = true;
  }

  #statusChange(o: Occupant, packet: Element): void {
    if (o.role === 'visitor' && !this.config.allow_visitor_status) {
      packet = new Element('presence', packet.attrs, packet.children.filter((c) => typeof c === 'string' || c.name !== 'status'));
    }
    const presence = stripMuc(packet);
    this.#charge(o.jid, this.#presenceChars({ ...o, presence }) * this.#occupants.size);
    o.presence = presence;
    this.#broadcastPresence(o, ['110'], []);
  }

  #nickChange(o: Occupant, nick: string, packet: Element): void {
    if (o.role === 'visitor' && !this.config.allow_visitor_nickchange) throw new StanzaError('not-allowed', 'cancel', 'visitors may not change their nickname here');
    const taken = this.#occupants.get(nick);
    if (taken !== undefined) throw new StanzaError('conflict', 'cancel', 'that nickname is already in use in this room');
    const presence = stripMuc(packet);
    this.#charge(o.jid, (this.#presenceChars(o) + this.#presenceChars({ ...o, nick, presence })) * this.#occupants.size);
    // §7.6: unavailable with 303 and the new nick, then available under the new one.
    for (const r of this.#occupants.values()) {
      const el = this.#presenceOf(o, r.jid, r === o ? ['303', '110'] : ['303'], 'unavailable');
      el.getChild('x', NS_MUC_USER)!.getChild('item')!.attrs.nick = nick;
      this.#ctx.route(this.#occupantJid(o), r.jid, el);
    }
    this.#occupants.delete(o.nick);
    o.nick = nick;
    o.presence = presence;
    this.#occupants.set(nick, o);
    this.#broadcastPresence(o, ['110'], []);
  }

  /** `codes`: status codes for everyone; the occupant also gets 110. */
  #leave(o: Occupant, packet: Element, codes: string[], tellSelf: boolean, extra?: (el: Element) => void): void {
    let el0 = stripMuc(packet);
    // Leaving is never refused; past the budget, the status text stays behind.
    if (el0.children.length > 0 && !this.#ctx.charge(o.jid.bare, el0.toString().length * this.#occupants.size)) el0 = new Element('presence');
    for (const r of this.#occupants.values()) {
      if (r === o && !tellSelf) continue;
      const el = this.#presenceOf({ ...o, role: 'none', presence: el0 }, r.jid, r === o ? [...codes, '110'] : codes, 'unavailable');
      extra?.(el);
      this.#ctx.route(this.#occupantJid(o), r.jid, el);
    }
    this.#occupants.delete(o.nick);
    this.#byJid.delete(o.jid.full);
    this.#ctx.left(this, o.jid);
    if (this.#occupants.size === 0 && !this.config.persistent) this.#ctx.gone(this, false);
  }

  #occupantJid(o: Occupant): JID {
    return this.jid.withResource(o.nick);
  }

  /** The presence of `o` as `to` sees it (the real JID only to moderators, or to all in non-anonymous rooms). */
  #presenceOf(o: Occupant, to: JID, codes: string[], type?: 'unavailable'): Element {
    const el = new Element('presence', { from: this.#occupantJid(o).full, to: to.full, type }, type === 'unavailable' ? o.presence.children.filter((c) => typeof c !== 'string' && c.name === 'status') : o.presence.children.slice());
    const x = el.c('x', { xmlns: NS_MUC_USER });
    const viewer = this.#byJid.get(to.full);
    const showJid = !this.config.anonymous || viewer?.role === 'moderator' || viewer === o;
    x.c('item', { affiliation: this.affiliationOf(o.jid), role: type === 'unavailable' ? 'none' : o.role, jid: showJid ? o.jid.full : undefined });
    for (const c of codes) x.c('status', { code: c });
    return el;
  }

  /** Characters of `o`'s presence as one occupant gets it. */
  #presenceChars(o: Occupant): number {
    return this.#presenceOf(o, o.jid, ['110']).toString().length;
  }

  /** Throws resource-constraint, with nothing charged, when what `jid` asks for is past its max_broadcast_rate. */
  #charge(jid: JID, chars: number): void {
    if (!this.#ctx.charge(jid.bare, chars)) {
      throw new StanzaError('resource-constraint', 'wait', 'what you send to this room is copied to its occupants faster than this service allows; wait a moment');
    }
  }

  #broadcastPresence(o: Occupant, selfCodes: string[], codes: string[]): void {
    for (const r of this.#occupants.values()) {
      this.#ctx.route(this.#occupantJid(o), r.jid, this.#presenceOf(o, r.jid, r === o ? selfCodes : codes));
    }
  }

  #sendHistory(o: Occupant, req: Element | undefined): void {
    let entries = this.#history;
    if (req !== undefined) {
      const maxstanzas = Number.parseInt(req.attrs.maxstanzas ?? '', 10);
      const maxchars = Number.parseInt(req.attrs.maxchars ?? '', 10);
      const seconds = Number.parseInt(req.attrs.seconds ?? '', 10);
      const since = req.attrs.since !== undefined ? Date.parse(req.attrs.since) : Number.NaN;
      if (Number.isFinite(seconds)) entries = entries.filter((e) => e.at >= Date.now() - seconds * 1000);
      if (Number.isFinite(since)) entries = entries.filter((e) => e.at >= since);
      if (Number.isFinite(maxstanzas)) entries = maxstanzas <= 0 ? [] : entries.slice(-maxstanzas);
      if (Number.isFinite(maxchars)) {
        let total = 0;
        const kept: HistoryEntry[] = [];
        for (let i = entries.length - 1; i >= 0; i--) {
          total += entries[i]!.bytes;
          if (total > maxchars) break;
          kept.unshift(entries[i]!);
        }
        entries = kept;
      }
    }
    for (const e of entries) {
      const el = new Element('message', { ...e.el.attrs, to: o.jid.full }, e.el.children.slice());
      el.c('delay', { xmlns: NS_DELAY, from: this.jid.full, stamp: new Date(e.at).toISOString() });
      this.#ctx.route(parseJid(el.attrs.from!), o.jid, el);
    }
  }

  // ---------------------------------------------------------------- messages

  #message(from: JID, to: JID, packet: Element): void {
    const type = packet.attrs.type ?? 'normal';
    if (type === 'error') return;
    const me = this.#byJid.get(from.full);
    if (to.resource !== '') return this.#privateMessage(me, to.resource, packet, type);
    if (type === 'groupchat') {
      if (me === undefined) throw new StanzaError('not-acceptable', 'modify', 'only occupants may send messages to the room');
      if (me.role === 'visitor') throw new StanzaError('forbidden', 'auth', 'visitors may not speak in this moderated room');
      const subject = packet.getChild('subject');
      if (subject !== undefined && packet.getChild('body') === undefined) return this.#setSubject(me, subject.text(), packet);
      this.#broadcastMessage(me, packet);
      return;
    }
    const x = packet.getChild('x', NS_MUC_USER);
    const invite = x?.getChild('invite');
    if (invite !== undefined) return this.#invite(from, me, invite, x!.getChild('password') !== undefined, packet);
    const decline = x?.getChild('decline');
    if (decline !== undefined) return this.#decline(from, decline);
    throw new StanzaError('bad-request', 'modify', 'messages to a room are of type groupchat, or invitations');
  }

  #broadcastMessage(me: Occupant, packet: Element): void {
    const fromJid = this.#occupantJid(me);
    const base = new Element('message', { type: 'groupchat', id: packet.attrs.id, from: fromJid.full }, packet.children.filter((c) => typeof c === 'string' || c.attrs.xmlns !== NS_MUC_USER));
    const bytes = base.toString().length;
    this.#charge(me.jid, (bytes + me.jid.full.length + 6) * this.#occupants.size);
    for (const r of this.#occupants.values()) {
      const el = new Element('message', { ...base.attrs, to: r.jid.full }, base.children);
      this.#ctx.route(fromJid, r.jid, el);
    }
    if (packet.getChild('body') === undefined || this.#ctx.limits.historySize === 0) return;
    if (bytes > this.#ctx.limits.historyMaxBytes) return;
    this.#history.push({ el: base, at: Date.now(), bytes });
    this.#historyBytes += bytes;
    while (this.#history.length > this.#ctx.limits.historySize || this.#historyBytes > this.#ctx.limits.historyMaxBytes) {
      this.#historyBytes -= this.#history.shift()!.bytes;
    }
  }

  #setSubject(me: Occupant, text: string, packet: Element): void {
    if (me.role !== 'moderator' && !(this.config.allow_change_subj && me.role === 'participant')) {
      throw new StanzaError('forbidden', 'auth', 'you may not change the subject of this room');
    }
    if (text.length > this.#ctx.limits.maxSubject) throw new StanzaError('not-acceptable', 'modify', `the subject is longer than ${this.#ctx.limits.maxSubject} characters`);
    this.#charge(me.jid, new Element('subject', undefined, [text]).toString().length * this.#occupants.size);
    this.subject = text;
    this.subjectAuthor = me.nick;
    const fromJid = this.#occupantJid(me);
    for (const r of this.#occupants.values()) {
      const el = new Element('message', { type: 'groupchat', id: packet.attrs.id, from: fromJid.full, to: r.jid.full });
      el.c('subject').t(text);
      this.#ctx.route(fromJid, r.jid, el);
    }
    this.#ctx.persist(this);
  }

  #privateMessage(me: Occupant | undefined, nick: string, packet: Element, type: string): void {
    if (me === undefined) throw new StanzaError('not-acceptable', 'modify', 'only occupants may send private messages');
    if (type === 'groupchat') throw new StanzaError('bad-request', 'modify', 'a groupchat message goes to the room, not to an occupant');
    if (!this.config.allow_private_messages) throw new StanzaError('forbidden', 'auth', 'private messages are not allowed in this room');
    const target = this.#occupants.get(nick);
    if (target === undefined) throw new StanzaError('item-not-found', 'cancel', 'no occupant has that nickname');
    const fromJid = this.#occupantJid(me);
    const el = new Element('message', { ...packet.attrs, from: fromJid.full, to: target.jid.full }, packet.children.slice());
    // XEP-0045 §7.5: marked so that the recipient's client knows where it came from.
    if (el.getChild('x', NS_MUC_USER) === undefined) el.c('x', { xmlns: NS_MUC_USER });
    this.#ctx.route(fromJid, target.jid, el);
  }

  #invite(from: JID, me: Occupant | undefined, invite: Element, _hasPassword: boolean, packet: Element): void {
    if (me === undefined) throw new StanzaError('not-acceptable', 'modify', 'only occupants may invite');
    const aff = this.affiliationOf(from);
    const privileged = aff === 'owner' || aff === 'admin';
    if (!privileged && !this.config.allow_user_invites) throw new StanzaError('forbidden', 'auth', 'invitations are not allowed in this room');
    let invitee: JID;
    try {
      invitee = parseJid(invite.attrs.to ?? '');
    } catch {
      throw new StanzaError('jid-malformed', 'modify', 'the invitation names no valid JID');
    }
    // §7.8.2: in a members-only room an invitation by an admin or owner makes the invitee a member.
    if (this.config.members_only && privileged && this.affiliationOf(invitee) === 'none') {
      this.#roomForAffiliation();
      this.affiliations.set(invitee.bare, 'member');
      this.#ctx.persist(this);
    }
    const out = new Element('message', { from: this.jid.full, to: invitee.full, id: packet.attrs.id });
    const x = out.c('x', { xmlns: NS_MUC_USER });
    const inv = x.c('invite', { from: from.bare });
    const reason = invite.getChildText('reason');
    if (reason !== undefined) inv.c('reason').t(reason);
    if (this.config.password_protected) x.c('password').t(this.config.password);
    this.#invited.delete(invitee.bare);
    this.#invited.set(invitee.bare, from.bareJid());
    if (this.#invited.size > MAX_INVITATIONS) this.#invited.delete(this.#invited.keys().next().value!);
    this.#ctx.route(this.jid, invitee, out);
  }

  /** §7.8.1: a decline goes to whoever invited the decliner; the room relays it only for an invitation it mediated. */
  #decline(from: JID, decline: Element): void {
    const inviter = this.#invited.get(from.bare);
    if (inviter === undefined) throw new StanzaError('not-acceptable', 'cancel', 'you have no invitation to this room to decline');
    this.#invited.delete(from.bare);
    const out = new Element('message', { from: this.jid.full, to: inviter.full });
    const d = out.c('x', { xmlns: NS_MUC_USER }).c('decline', { from: from.bare });
    const reason = decline.getChildText('reason');
    if (reason !== undefined) d.c('reason').t(reason);
    this.#ctx.route(this.jid, inviter, out);
  }

  // ---------------------------------------------------------------- IQs

  #iq(from: JID, to: JID, packet: Element): void {
    const type = packet.attrs.type;
    if (type !== 'get' && type !== 'set') return;
    if (to.resource !== '') throw new StanzaError('service-unavailable', 'cancel', 'IQs to occupants are not forwarded');
    const payload = packet.firstElement();
    const ns = payload?.attrs.xmlns ?? '';
    let result: Element | undefined;
    if (ns === NS_DISCO_INFO && type === 'get') result = this.#discoInfo();
    else if (ns === NS_DISCO_ITEMS && type === 'get') result = new Element('query', { xmlns: NS_DISCO_ITEMS });
    else if (ns === NS_MUC_ADMIN) result = type === 'get' ? this.#adminGet(from, payload!) : this.#adminSet(from, payload!);
    else if (ns === NS_MUC_OWNER) result = type === 'get' ? this.#ownerGet(from) : this.#ownerSet(from, payload!);
    else throw new StanzaError('service-unavailable', 'cancel');
    const reply = new Element('iq', { type: 'result', id: packet.attrs.id, from: this.jid.full, to: from.full });
    if (result !== undefined) reply.children.push(result);
    this.#ctx.route(this.jid, from, reply);
  }

  #discoInfo(): Element {
    const q = new Element('query', { xmlns: NS_DISCO_INFO });
    q.c('identity', { category: 'conference', type: 'text', name: this.config.title || this.jid.local });
    const c = this.config;
    const features = [
      NS_MUC, NS_DISCO_INFO,
      c.public ? 'muc_public' : 'muc_hidden',
      c.persistent ? 'muc_persistent' : 'muc_temporary',
      c.members_only ? 'muc_membersonly' : 'muc_open',
      c.moderated ? 'muc_moderated' : 'muc_unmoderated',
      c.password_protected ? 'muc_passwordprotected' : 'muc_unsecured',
      c.anonymous ? 'muc_semianonymous' : 'muc_nonanonymous',
    ];
    for (const f of features.sort()) q.c('feature', { var: f });
    return q;
  }

  #requireAffiliation(from: JID, allowed: Affiliation[]): Affiliation {
    const a = this.affiliationOf(from);
    if (!allowed.includes(a)) throw new StanzaError('forbidden', 'auth', 'you are not allowed to do this in this room');
    return a;
  }

  #adminGet(from: JID, q: Element): Element {
    const item = q.getChild('item');
    const out = new Element('query', { xmlns: NS_MUC_ADMIN });
    const aff = item?.attrs.affiliation;
    const role = item?.attrs.role;
    if (aff !== undefined) {
      if (!AFFILIATIONS.includes(aff as Affiliation) || aff === 'none') throw new StanzaError('bad-request', 'modify', 'unknown affiliation');
      const mine = this.affiliationOf(from);
      const viewer = this.#byJid.get(from.full);
      const mayList = mine === 'owner' || mine === 'admin' || (aff === 'member' && viewer !== undefined && this.config.maygetmemberlist.includes(viewer.role));
      if (!mayList) throw new StanzaError('forbidden', 'auth', 'you may not list this affiliation');
      for (const [jid, a] of this.affiliations) if (a === aff) out.c('item', { affiliation: a, jid });
      return out;
    }
    if (role !== undefined) {
      if (!ROLES.includes(role as Role) || role === 'none') throw new StanzaError('bad-request', 'modify', 'unknown role');
      if (this.#byJid.get(from.full)?.role !== 'moderator') throw new StanzaError('forbidden', 'auth', 'only moderators may list roles');
      for (const o of this.#occupants.values()) if (o.role === role) out.c('item', { role: o.role, nick: o.nick, affiliation: this.affiliationOf(o.jid), jid: o.jid.full });
      return out;
    }
    throw new StanzaError('bad-request', 'modify', 'ask for an affiliation or a role');
  }

  #adminSet(from: JID, q: Element): undefined {
    const items = q.getChildren('item');
    if (items.length === 0) throw new StanzaError('bad-request', 'modify', 'no item to change');
    const actor = this.#byJid.get(from.full);
    const mine = this.affiliationOf(from);
    // The room is stored once for the whole request, however many items it
    // changes (also when an item fails: the ones before it were applied).
    let changed = false;
    try {
      for (const item of items) if (this.#adminItem(item, actor, mine)) changed = true;
    } finally {
      if (changed) this.#ctx.persist(this);
    }
    return undefined;
  }

  /** One item of a muc#admin set; returns whether it changed an affiliation. */
  #adminItem(item: Element, actor: Occupant | undefined, mine: Affiliation): boolean {
    const reason = item.getChildText('reason');
    if (item.attrs.role !== undefined) {
      const role = item.attrs.role as Role;
      if (!ROLES.includes(role)) throw new StanzaError('bad-request', 'modify', 'unknown role');
      const target = this.#occupants.get(item.attrs.nick ?? '');
      if (target === undefined) throw new StanzaError('item-not-found', 'cancel', 'no occupant has that nickname');
      if (actor?.role !== 'moderator') throw new StanzaError('forbidden', 'auth', 'only moderators may change roles');
      const targetAff = this.affiliationOf(target.jid);
      // §8.2 / §9.6: moderators cannot touch admins or owners; granting moderator takes an admin.
      if ((targetAff === 'owner' || targetAff === 'admin') && mine !== 'owner') throw new StanzaError('not-allowed', 'cancel', 'admins and owners keep their role');
      if (role === 'moderator' && mine !== 'owner' && mine !== 'admin') throw new StanzaError('forbidden', 'auth', 'only admins may grant moderator');
      if (role === 'none') {
        this.#leave(target, new Element('presence', { type: 'unavailable' }), ['307'], true, (el) => {
          const it = el.getChild('x', NS_MUC_USER)!.getChild('item')!;
          it.c('actor', { nick: actor.nick });
          if (reason !== undefined) it.c('reason').t(reason);
        });
      } else {
        target.role = role;
        this.#broadcastPresence(target, ['110'], []);
      }
      return false;
    }
    if (item.attrs.affiliation === undefined) throw new StanzaError('bad-request', 'modify', 'an item carries a role or an affiliation');
    const aff = item.attrs.affiliation as Affiliation;
    if (!AFFILIATIONS.includes(aff)) throw new StanzaError('bad-request', 'modify', 'unknown affiliation');
    let target: JID;
    try {
      target = parseJid(item.attrs.jid ?? (this.#occupants.get(item.attrs.nick ?? '')?.jid.bare ?? ''));
    } catch {
      throw new StanzaError('jid-malformed', 'modify', 'the item names no valid JID');
    }
    const current = this.affiliations.get(target.bare) ?? 'none';
    // §9 / §10: admins change none / member / outcast of those below them; owners change anything.
    if (mine !== 'owner') {
      if (mine !== 'admin') throw new StanzaError('forbidden', 'auth', 'only admins and owners may change affiliations');
      if (aff === 'owner' || aff === 'admin' || current === 'owner' || current === 'admin') throw new StanzaError('not-allowed', 'cancel', 'only owners may change the affiliations of admins and owners');
    }
    if (current === 'owner' && aff !== 'owner' && [...this.affiliations.values()].filter((a) => a === 'owner').length === 1) {
      throw new StanzaError('conflict', 'cancel', 'a room keeps at least one owner');
    }
    if (aff === 'none') this.affiliations.delete(target.bare);
    else {
      if (current === 'none') this.#roomForAffiliation();
      this.affiliations.set(target.bare, aff);
    }
    for (const o of [...this.#occupants.values()]) {
      if (o.jid.bare !== target.bare) continue;
      if (aff === 'outcast' || (aff === 'none' && this.config.members_only)) {
        this.#leave(o, new Element('presence', { type: 'unavailable' }), [aff === 'outcast' ? '301' : '321'], true, (el) => {
          if (reason !== undefined) el.getChild('x', NS_MUC_USER)!.getChild('item')!.c('reason').t(reason);
        });
      } else {
        o.role = aff === 'owner' || aff === 'admin' ? 'moderator' : o.role === 'moderator' ? 'participant' : o.role === 'visitor' && aff === 'member' ? 'participant' : o.role;
        this.#broadcastPresence(o, ['110'], []);
      }
    }
    return true;
  }

  /** Throws unless the room may hold one more affiliation (max_affiliations). */
  #roomForAffiliation(): void {
    const max = this.#ctx.limits.maxAffiliations;
    if (this.affiliations.size >= max) throw new StanzaError('policy-violation', 'modify', `a room holds at most ${max} affiliations`);
  }

  #ownerGet(from: JID): Element {
    this.#requireAffiliation(from, ['owner']);
    const q = new Element('query', { xmlns: NS_MUC_OWNER });
    q.children.push(configForm(this.config));
    return q;
  }

  #ownerSet(from: JID, q: Element): undefined {
    this.#requireAffiliation(from, ['owner']);
    const destroy = q.getChild('destroy');
    if (destroy !== undefined) {
      this.destroy(destroy.getChildText('reason'), destroy.attrs.jid);
      return undefined;
    }
    const x = q.getChild('x', NS_XDATA);
    if (x === undefined) throw new StanzaError('bad-request', 'modify', 'a configuration form or a destroy request is expected');
    if (x.attrs.type === 'cancel') return undefined;
    if (x.attrs.type !== 'submit') throw new StanzaError('bad-request', 'modify', 'the form must be of type submit');
    const next = applyForm(this.config, x, this.#ctx.limits.maxUsers);
    if (next.persistent && !this.config.persistent && !this.#ctx.mayPersist(from)) throw new StanzaError('forbidden', 'auth', 'you may not make rooms persistent');
    const becameTemporary = this.config.persistent && !next.persistent;
    this.config = next;
    this.#ctx.persist(this);
    if (becameTemporary && this.#occupants.size === 0) this.#ctx.gone(this, false);
    return undefined;
  }

  /** §10.9: every occupant leaves with the reason (and an alternative room). */
  destroy(reason?: string, alternative?: string): void {
    for (const o of [...this.#occupants.values()]) {
      const el = new Element('presence', { type: 'unavailable', from: this.#occupantJid(o).full, to: o.jid.full });
      const x = el.c('x', { xmlns: NS_MUC_USER });
      x.c('item', { affiliation: 'none', role: 'none' });
      const d = x.c('destroy', { jid: alternative });
      if (reason !== undefined) d.c('reason').t(reason);
      this.#ctx.route(this.#occupantJid(o), o.jid, el);
    }
    for (const o of this.#occupants.values()) this.#ctx.left(this, o.jid);
    this.#occupants.clear();
    this.#byJid.clear();
    this.#ctx.gone(this, true);
  }
}

/** The presence a client sent, without its join element (which is not for the others). */
function stripMuc(p: Element): Element {
  return new Element('presence', undefined, p.children.filter((c) => typeof c !== 'string' && c.attrs.xmlns !== NS_MUC && c.attrs.xmlns !== NS_MUC_USER));
}

// ---------------------------------------------------------------- the room configuration form (§15.5.3)

type FieldKind = 'text-single' | 'text-private' | 'boolean' | 'list-single';
const FORM_FIELDS: ReadonlyArray<{ v: string; key: keyof RoomConfig; kind: FieldKind; label: string; options?: string[] }> = [
  { v: 'muc#roomconfig_roomname', key: 'title', kind: 'text-single', label: 'Room title' },
  { v: 'muc#roomconfig_roomdesc', key: 'description', kind: 'text-single', label: 'Room description' },
  { v: 'muc#roomconfig_persistentroom', key: 'persistent', kind: 'boolean', label: 'Make room persistent' },
  { v: 'muc#roomconfig_publicroom', key: 'public', kind: 'boolean', label: 'Make room public searchable' },
  { v: 'muc#roomconfig_membersonly', key: 'members_only', kind: 'boolean', label: 'Make room members-only' },
  { v: 'muc#roomconfig_moderatedroom', key: 'moderated', kind: 'boolean', label: 'Make room moderated' },
  { v: 'muc#roomconfig_passwordprotectedroom', key: 'password_protected', kind: 'boolean', label: 'Password required to enter' },
  { v: 'muc#roomconfig_roomsecret', key: 'password', kind: 'text-private', label: 'Password' },
  { v: 'muc#roomconfig_whois', key: 'anonymous', kind: 'list-single', label: 'Who may discover real JIDs', options: ['moderators', 'anyone'] },
  { v: 'muc#roomconfig_maxusers', key: 'max_users', kind: 'text-single', label: 'Maximum number of occupants' },
  { v: 'muc#roomconfig_changesubject', key: 'allow_change_subj', kind: 'boolean', label: 'Allow occupants to change the subject' },
  { v: 'muc#roomconfig_allowinvites', key: 'allow_user_invites', kind: 'boolean', label: 'Allow occupants to invite others' },
  { v: 'muc#roomconfig_allowpm', key: 'allow_private_messages', kind: 'list-single', label: 'Who may send private messages', options: ['anyone', 'none'] },
];

function valueOf(c: RoomConfig, f: (typeof FORM_FIELDS)[number]): string {
  if (f.key === 'anonymous') return c.anonymous ? 'moderators' : 'anyone';
  if (f.key === 'allow_private_messages') return c.allow_private_messages ? 'anyone' : 'none';
  const v = c[f.key];
  return typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
}

export function configForm(c: RoomConfig): Element {
  const x = new Element('x', { xmlns: NS_XDATA, type: 'form' });
  x.c('title').t('Room configuration');
  x.c('field', { var: 'FORM_TYPE', type: 'hidden' }).c('value').t(NS_ROOMCONFIG);
  for (const f of FORM_FIELDS) {
    const field = x.c('field', { var: f.v, type: f.kind, label: f.label });
    for (const o of f.options ?? []) field.c('option', { label: o }).c('value').t(o);
    field.c('value').t(valueOf(c, f));
  }
  return x;
}

function boolValue(v: string): boolean | undefined {
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  return undefined;
}

export function applyForm(c: RoomConfig, x: Element, maxUsers: number): RoomConfig {
  const next: RoomConfig = { ...c, maygetmemberlist: [...c.maygetmemberlist] };
  for (const field of x.getChildren('field')) {
    const f = FORM_FIELDS.find((d) => d.v === field.attrs.var);
    if (f === undefined) continue; // FORM_TYPE and fields Petrel does not have
    const value = field.getChildText('value') ?? '';
    const bad = () => new StanzaError('not-acceptable', 'modify', `bad value for ${f.v}`);
    if (f.kind === 'boolean') {
      const b = boolValue(value);
      if (b === undefined) throw bad();
      (next as unknown as Record<string, unknown>)[f.key] = b;
    } else if (f.key === 'anonymous') {
      if (value !== 'moderators' && value !== 'anyone') throw bad();
      next.anonymous = value === 'moderators';
    } else if (f.key === 'allow_private_messages') {
      next.allow_private_messages = value !== 'none';
    } else if (f.key === 'max_users') {
      const n = Number.parseInt(value, 10);
      if (!Number.isFinite(n) || n < 1 || n > maxUsers) throw new StanzaError('not-acceptable', 'modify', `muc#roomconfig_maxusers must be between 1 and ${maxUsers}`);
      next.max_users = n;
    } else {
      if (value.length > 1024) throw bad();
      (next as unknown as Record<string, unknown>)[f.key] = value;
    }
  }
  if (next.password_protected && next.password === '') throw new StanzaError('not-acceptable', 'modify', 'a password-protected room needs a password');
  return next;
}
