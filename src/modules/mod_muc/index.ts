// mod_muc: XEP-0045 Multi-User Chat, configured as MongooseIM's mod_muc (its
// option names and defaults). Each served host gets a service domain
// (`host`, "conference.@HOST@" by default) routed to this module; each room
// is a Room (room.ts). Persistent rooms (their configuration, affiliations
// and subject) are kept in the module's store (`backend`) and loaded at
// start; temporary rooms live until their last occupant leaves.
import type { Logger } from 'pino';
import { bool, compat, custom, fail, int, list, section, str, type Spec } from '../../config/schema.ts';
import type { HookCatalogue } from '../../hooks/catalogue.ts';
import type { HookRegistration } from '../../hooks/hooks.ts';
import { storeBackendSpec, type StoreBackend } from '../../storage/select.ts';
import { StanzaError } from '../../xmpp/errors.ts';
import { makeJid, parseJid, type JID } from '../../xmpp/jid.ts';
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from '../../xmpp/ns.ts';
import { Element } from '../../xmpp/xml.ts';
import type { ModuleData, ModuleDefinition, ModuleInstance } from '../types.ts';
import { intOrInfinity } from '../../config/core-spec.ts';
import { NS_MUC, Room, type Affiliation, type RoomConfig, type RoomContext, type PersistedRoom } from './room.ts';
import { MUC_STORE, type MucStore } from './store.ts';

const NAME = 'mod_muc';
const PRIORITY = 50;
/** Items listed in one disco#items answer of the service at most. */
const MAX_LISTED_ROOMS = 1000;
/**
 * Characters of one disco#items answer of the service at most, as written
 * (escaped): well under the share of max_output_buffer that a stanza from
 * another party may take, so that the answer is never refused on the way.
 */
const MAX_LISTED_CHARS = 65_536;
/** ms a changed room waits before it is written, so that a burst of changes is written once. */
const PERSIST_DELAY_MS = 100;
/** Seconds of max_broadcast_rate a user may spend at once (the bucket's size). */
const BROADCAST_BURST_S = 4;

export interface MucOpts {
  host: string;
  backend: StoreBackend;
  access: string;
  access_create: string;
  access_admin: string;
  access_persistent: string;
  history_size: number;
  max_room_id: number;
  max_room_name: number;
  max_room_desc: number;
  max_users: number;
  max_users_admin_threshold: number;
  max_user_conferences: number;
  default_room: RoomConfig & { affiliations: Array<{ user: string; server: string; resource: string; affiliation: Affiliation }>; subject: string; subject_author: string };
  /** Petrel: rooms one service holds at most (temporary and persistent). */
  max_rooms: number;
  /** Petrel: bytes of history one room keeps at most. */
  history_max_bytes: number;
  /** Petrel: affiliations one room holds at most. */
  max_affiliations: number;
  /** Petrel: rooms of one service that one user has created and that still exist, at most (service admins excepted). */
  max_rooms_per_user: number;
  /** Petrel: characters a second (as written, all recipients together) one user's stanzas may make the service's rooms send. */
  max_broadcast_rate: number;
  /** Petrel: longest room subject, in characters. */
  max_subject_length: number;
}

function makeJidOrNull(local: string, domain: string, resource: string): JID | null {
  try {
    return makeJid(local, domain, resource);
  } catch {
    return null;
  }
}

/** Rules every configuration has: "all" lets everyone in, "none" nobody. */
const BUILT_IN_RULES = new Set(['all', 'none']);
const ACCESS_OPTIONS = ['access', 'access_create', 'access_admin', 'access_persistent'] as const;

function notImplementedUnless(ok: (v: unknown) => boolean, what: string): Spec {
  return custom((value, p) => (ok(value) ? value : fail(p, `${what} is not implemented in Petrel; leave it at its default`)));
}

const affiliationItem = section(
  {
    user: str({ nonEmpty: true }),
    server: str({ nonEmpty: true }),
    resource: str({ default: '' }),
    affiliation: str({ oneOf: ['owner', 'admin', 'member', 'outcast', 'none'] }),
  },
  { required: ['user', 'server', 'affiliation'] },
);

const defaultRoom = section(
  {
    title: str({ default: '' }),
    description: str({ default: '' }),
    allow_change_subj: bool({ default: true }),
    allow_query_users: bool({ default: true }),
    allow_private_messages: bool({ default: true }),
    allow_visitor_status: bool({ default: true }),
    allow_visitor_nickchange: bool({ default: true }),
    public: bool({ default: true }),
    public_list: bool({ default: true }),
    persistent: bool({ default: false }),
    moderated: bool({ default: true }),
    members_by_default: bool({ default: true }),
    members_only: bool({ default: false }),
    allow_user_invites: bool({ default: false }),
    allow_multiple_sessions: compat(bool({ default: false }), 'a nickname is held by one session'),
    password_protected: bool({ default: false }),
    password: str({ default: '' }),
    anonymous: bool({ default: true }),
    max_users: int({ min: 1, default: 200 }),
    maygetmemberlist: list(str({ nonEmpty: true }), { default: [] }),
    affiliations: list(affiliationItem, { default: [] }),
    subject: str({ default: '' }),
    subject_author: str({ default: '' }),
  },
  { default: true },
);

export const mucSpec: Spec = section(
  {
    host: str({ nonEmpty: true, default: 'conference.@HOST@' }),
    backend: storeBackendSpec(),
    online_backend: compat(str({ oneOf: ['mnesia', 'cets'], default: 'mnesia' }), 'occupants are kept in the memory of the node that serves the room'),
    access: str({ nonEmpty: true, default: 'all' }),
    access_create: str({ nonEmpty: true, default: 'all' }),
    access_admin: str({ nonEmpty: true, default: 'none' }),
    access_persistent: str({ nonEmpty: true, default: 'all' }),
    history_size: int({ min: 0, default: 20 }),
    room_shaper: notImplementedUnless((v) => v === 'none', 'room_shaper'),
    max_room_id: intOrInfinity(0, 0),
    max_room_name: intOrInfinity(0, 0),
    max_room_desc: intOrInfinity(0, 0),
    min_message_interval: notImplementedUnless((v) => v === 0, 'min_message_interval'),
    min_presence_interval: notImplementedUnless((v) => v === 0, 'min_presence_interval'),
    max_users: int({ min: 1, default: 200 }),
    max_users_admin_threshold: int({ min: 1, default: 5 }),
    user_message_shaper: notImplementedUnless((v) => v === 'none', 'user_message_shaper'),
    user_presence_shaper: notImplementedUnless((v) => v === 'none', 'user_presence_shaper'),
    max_user_conferences: int({ min: 0, default: 10 }),
    http_auth_pool: notImplementedUnless((v) => v === 'none', 'http_auth_pool (password checks by HTTP)'),
    load_permanent_rooms_at_startup: compat(bool({ default: false }), 'Petrel loads every persistent room at start'),
    hibernate_timeout: compat(intOrInfinity(0, 90000), 'a room without occupants costs no process in Petrel'),
    hibernated_room_check_interval: compat(intOrInfinity(0, 0), 'a room without occupants costs no process in Petrel'),
    hibernated_room_timeout: compat(intOrInfinity(0, 0), 'a room without occupants costs no process in Petrel'),
    default_room: defaultRoom,
    max_rooms: int({ min: 1, default: 10_000 }),
    history_max_bytes: int({ min: 0, default: 65_536 }),
    max_affiliations: int({ min: 1, default: 1000 }),
    max_rooms_per_user: int({ min: 1, default: 100 }),
    max_broadcast_rate: int({ min: 1, default: 1_048_576 }),
    max_subject_length: int({ min: 1, default: 1024 }),
  },
  {
    default: true,
    process: (v, p) => {
      if (v.default_room.max_users > v.max_users) fail(`${p}.default_room.max_users`, `is more than ${p}.max_users (${v.max_users})`);
      return v;
    },
  },
);

export interface MucData extends ModuleData {
  readonly store: MucStore;
}

/** Whether `rule` ([access], or "all" / "none") allows `jid`. */
export type RuleCheck = (rule: string, jid: JID) => boolean;

/** The service domain of each served host. */
export function serviceDomains(pattern: string, hosts: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const h of hosts) out.set(pattern.replaceAll('@HOST@', h), h);
  return out;
}

interface Service {
  domain: string;
  jid: JID;
  rooms: Map<string, Room>;
}

export function createMuc(opts: MucOpts, deps: {
  hosts: readonly string[];
  route(from: JID, to: JID, el: Element): void;
  addService(domain: string, handler: (from: JID, to: JID, packet: Element) => void): void;
  store: MucStore;
  logger: Logger;
  allows: RuleCheck;
}) {
  const log = deps.logger;
  const ruleAllows = deps.allows;
  const services = new Map<string, Service>();
  /** Rooms each full JID occupies, and each bare JID's count of rooms. */
  const byFull = new Map<string, Set<Room>>();
  const byBare = new Map<string, Map<Room, number>>();
  const roomService = new Map<Room, Service>();
  /** Per-room store writes, in order. */
  const writes = new Map<Room, Promise<void>>();
  const stored = new Set<Room>();
  /** Rooms changed since their last write began. */
  const dirty = new Set<Room>();
  const broadcast = new Budgets(opts.max_broadcast_rate, opts.max_broadcast_rate * BROADCAST_BURST_S);

  const { affiliations: defaultAffiliations, subject: defaultSubject, subject_author: defaultSubjectAuthor, ...defaultConfig } = opts.default_room;

  const write = (room: Room, job: () => Promise<void>) => {
    const prev = writes.get(room) ?? Promise.resolve();
    const next = prev.then(job).catch((err: unknown) => log.error({ what: 'muc_room_store_failed', room: room.jid.bare, err: String(err) }, 'could not write a room to the store'));
    writes.set(room, next);
    void next.finally(() => {
      if (writes.get(room) === next) writes.delete(room);
    });
  };

  const ctx: RoomContext = {
    route: (from, to, el) => deps.route(from, to, el),
    persist(room) {
      // Written once for all the changes made until its write begins, with the
      // state of then: a burst of changes costs one write, not one each.
      if (dirty.has(room)) return;
      dirty.add(room);
      write(room, async () => {
        await new Promise((r) => setTimeout(r, PERSIST_DELAY_MS));
        dirty.delete(room);
        const svc = roomService.get(room);
        if (svc === undefined) return;
        if (room.config.persistent) {
          stored.add(room);
          await deps.store.put({ service: svc.domain, name: room.jid.local, state: JSON.stringify(room.persisted()) });
        } else if (stored.has(room)) {
          stored.delete(room);
          await deps.store.remove(svc.domain, room.jid.local);
        }
      });
    },
    gone(room, destroyed) {
      const svc = roomService.get(room);
      if (svc === undefined) return;
      svc.rooms.delete(room.jid.local);
      roomService.delete(room);
      if (stored.has(room) || destroyed) {
        stored.delete(room);
        write(room, () => deps.store.remove(svc.domain, room.jid.local));
      }
      log.debug({ what: 'muc_room_gone', room: room.jid.bare, destroyed }, 'room removed');
    },
    roomsOccupied: (bare) => byBare.get(bare)?.size ?? 0,
    charge: (bare, chars) => broadcast.take(bare, chars),
    joined(room, jid) {
      let s = byFull.get(jid.full);
      if (s === undefined) byFull.set(jid.full, (s = new Set()));
      s.add(room);
      let m = byBare.get(jid.bare);
      if (m === undefined) byBare.set(jid.bare, (m = new Map()));
      m.set(room, (m.get(room) ?? 0) + 1);
    },
    left(room, jid) {
      const s = byFull.get(jid.full);
      s?.delete(room);
      if (s?.size === 0) byFull.delete(jid.full);
      const m = byBare.get(jid.bare);
      if (m !== undefined) {
        const n = (m.get(room) ?? 1) - 1;
        if (n <= 0) m.delete(room);
        else m.set(room, n);
        if (m.size === 0) byBare.delete(jid.bare);
      }
    },
    maxUserConferences: opts.max_user_conferences,
    limits: {
      historySize: opts.history_size,
      historyMaxBytes: opts.history_max_bytes,
      maxUsers: opts.max_users,
      maxSubject: opts.max_subject_length,
      adminThreshold: opts.max_users_admin_threshold,
      maxAffiliations: opts.max_affiliations,
    },
    mayPersist: (jid) => ruleAllows(opts.access_persistent, jid),
    isServiceAdmin: (jid) => ruleAllows(opts.access_admin, jid),
  };

  const newRoom = (svc: Service, name: string, creator: JID): Room => {
    const room = new Room(parseJid(`${name}@${svc.domain}`), defaultConfig, ctx);
    room.created(creator);
    for (const a of defaultAffiliations) {
      const j = makeJidOrNull(a.user, a.server, '');
      if (j !== null && a.affiliation !== 'none') room.affiliations.set(j.bare, a.affiliation);
    }
    room.subject = defaultSubject;
    room.subjectAuthor = defaultSubjectAuthor;
    svc.rooms.set(name, room);
    roomService.set(room, svc);
    room.markCreated();
    ctx.persist(room);
    return room;
  };

  const error = (from: JID, to: JID, packet: Element, err: StanzaError) => {
    if (packet.attrs.type === 'error') return;
    const reply = new Element(packet.name, { type: 'error', id: packet.attrs.id, from: to.full, to: from.full }, packet.name === 'iq' ? [] : packet.children.slice());
    reply.children.push(err.toElement());
    deps.route(to, from, reply);
  };

  const serviceIq = (svc: Service, from: JID, packet: Element) => {
    const type = packet.attrs.type;
    if (type !== 'get' && type !== 'set') return;
    const ns = packet.firstElement()?.attrs.xmlns;
    const reply = new Element('iq', { type: 'result', id: packet.attrs.id, from: svc.domain, to: from.full });
    if (ns === NS_DISCO_INFO && type === 'get') {
      const q = reply.c('query', { xmlns: NS_DISCO_INFO });
      q.c('identity', { category: 'conference', type: 'text', name: 'Chatrooms' });
      for (const f of [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC]) q.c('feature', { var: f });
    } else if (ns === NS_DISCO_ITEMS && type === 'get') {
      const q = reply.c('query', { xmlns: NS_DISCO_ITEMS });
      let n = 0;
      let chars = 0;
      for (const room of svc.rooms.values()) {
        if (!room.config.public || !room.config.public_list) continue;
        const item = new Element('item', { jid: room.jid.bare, name: room.config.title || room.jid.local });
        chars += item.toString().length;
        if (++n > MAX_LISTED_ROOMS || chars > MAX_LISTED_CHARS) break;
        q.children.push(item);
      }
    } else throw new StanzaError('service-unavailable', 'cancel');
    deps.route(svc.jid, from, reply);
  };

  /**
   * Rooms of `svc` that `bare` created (a look at each: rooms are made far
   * less often than they are used). Counted by creator, not by owner, so
   * that making someone else an owner neither frees the creator's quota nor
   * uses up theirs.
   */
  const createdBy = (svc: Service, bare: string) => {
    let n = 0;
    for (const room of svc.rooms.values()) if (room.creator === bare) n++;
    return n;
  };

  const handle = (svc: Service, from: JID, to: JID, packet: Element) => {
    try {
      if (!ruleAllows(opts.access, from)) throw new StanzaError('forbidden', 'auth', 'you may not use this service');
      if (to.local === '') {
        if (packet.name === 'iq') return serviceIq(svc, from, packet);
        if (packet.name === 'message') throw new StanzaError('service-unavailable', 'cancel');
        return;
      }
      let room = svc.rooms.get(to.local);
      if (room === undefined) {
        const join = packet.name === 'presence' && packet.attrs.type === undefined && to.resource !== '';
        if (!join) {
          if (packet.name === 'presence' && packet.attrs.type === 'unavailable') return;
          throw new StanzaError('item-not-found', 'cancel', 'no such room');
        }
        if (!ruleAllows(opts.access_create, from)) throw new StanzaError('not-allowed', 'cancel', 'you may not create rooms');
        if (opts.max_room_id > 0 && to.local.length > opts.max_room_id) throw new StanzaError('not-acceptable', 'modify', `room names are at most ${opts.max_room_id} characters`);
        if (svc.rooms.size >= opts.max_rooms) throw new StanzaError('resource-constraint', 'wait', 'this service holds as many rooms as it may');
        if (!ruleAllows(opts.access_admin, from) && createdBy(svc, from.bare) >= opts.max_rooms_per_user) {
          throw new StanzaError('policy-violation', 'modify', `you have created ${opts.max_rooms_per_user} rooms of this service that still exist`);
        }
        room = newRoom(svc, to.local, from);
        log.info({ what: 'muc_room_created', room: room.jid.bare, owner: from.bare }, 'room created');
      }
      room.handle(from, to, packet);
      // A room whose creator could not enter (a bad password of the default config...) goes again.
      if (room.occupantCount === 0 && !room.config.persistent && svc.rooms.get(to.local) === room) ctx.gone(room, false);
    } catch (err) {
      if (err instanceof StanzaError) return error(from, to, packet, err);
      throw err;
    }
  };

  for (const [domain] of serviceDomains(opts.host, deps.hosts)) {
    const svc: Service = { domain, jid: parseJid(domain), rooms: new Map() };
    services.set(domain, svc);
    deps.addService(domain, (from, to, packet) => handle(svc, from, to, packet));
  }

  return {
    services,
    async load(defaults: RoomConfig) {
      for (const r of await deps.store.all()) {
        const svc = services.get(r.service);
        if (svc === undefined) continue;
        let state: PersistedRoom;
        try {
          state = JSON.parse(r.state) as PersistedRoom;
        } catch {
          log.error({ what: 'muc_room_unreadable', room: `${r.name}@${r.service}` }, 'a stored room could not be read; it is skipped');
          continue;
        }
        const jid = makeJidOrNull(r.name, r.service, '');
        if (jid === null) continue;
        const room = Room.restore(jid, state, ctx, defaults);
        svc.rooms.set(r.name, room);
        roomService.set(room, svc);
        stored.add(room);
      }
    },
    defaults: defaultConfig as RoomConfig,
    /** The session of `jid` ended or went unavailable: it leaves every room. */
    sessionGone(jid: JID) {
      const rooms = byFull.get(jid.full);
      if (rooms === undefined) return;
      for (const room of [...rooms]) room.sessionGone(jid);
    },
    async flush() {
      while (writes.size > 0) await Promise.allSettled([...writes.values()]);
    },
  };
}

export const definition: ModuleDefinition<MucOpts, MucData> = {
  name: NAME,
  configSpec: mucSpec,
  // An access rule the module is given must exist: a rule it cannot find would otherwise deny (or allow) silently.
  crossCheck(opts, config) {
    for (const k of ACCESS_OPTIONS) {
      const rule = opts[k];
      if (!BUILT_IN_RULES.has(rule) && !Object.hasOwn(config.access, rule)) fail(`modules.mod_muc.${k}`, `no access rule ${JSON.stringify(rule)} in [access]`);
    }
  },
  async openData(stores, opts) {
    const store = await stores.open(MUC_STORE, opts.backend, 'modules.mod_muc.backend');
    return { backend: opts.backend, store, hooks: () => [] };
  },
  async create(ctx, opts, data): Promise<ModuleInstance> {
    const muc = createMuc(opts, {
      hosts: ctx.hosts,
      route: (from, to, el) => ctx.router.route(from, to, el),
      addService: (domain, h) => ctx.router.addService(domain, (from, to, packet) => h(from, to, packet)),
      store: data.store,
      logger: ctx.logger.child({ module: NAME }),
      allows: (rule, jid) => rule === 'all' || (rule !== 'none' && ctx.access.match(rule, { local: jid.local, domain: jid.domain, resource: jid.resource }) === 'allow'),
    });
    await muc.load(muc.defaults);
    const gone = (p: HookCatalogue['sm_remove_connection'] | HookCatalogue['unset_presence']) => muc.sessionGone(p.jid);
    const hooks: HookRegistration<any>[] = [
      { hook: 'sm_remove_connection', host: '*', priority: PRIORITY, owner: NAME, handler: gone } satisfies HookRegistration<'sm_remove_connection'>,
      { hook: 'unset_presence', host: '*', priority: PRIORITY, owner: NAME, handler: gone } satisfies HookRegistration<'unset_presence'>,
    ];
    return {
      hooks: () => hooks,
      stop: () => muc.flush(),
    };
  },
};

/**
 * A token bucket per user: `rate` a second, `size` at most. What a user's
 * stanzas make the rooms send is taken from it; a stanza that would take
 * more than is left is refused, and takes nothing. Buckets that have filled
 * up again are forgotten now and then, so the map holds only recent senders.
 */
export class Budgets {
  readonly #rate: number;
  readonly #size: number;
  readonly #buckets = new Map<string, { left: number; at: number }>();
  #sweepAt = 1024;

  constructor(rate: number, size: number) {
    this.#rate = rate;
    this.#size = size;
  }

  take(who: string, n: number, now = performance.now()): boolean {
    let b = this.#buckets.get(who);
    if (b === undefined) {
      if (this.#buckets.size >= this.#sweepAt) this.#sweep(now);
      this.#buckets.set(who, (b = { left: this.#size, at: now }));
    } else {
      b.left = Math.min(this.#size, b.left + ((now - b.at) / 1000) * this.#rate);
      b.at = now;
    }
    if (n > b.left) return false;
    b.left -= n;
    return true;
  }

  /** Users with a bucket (for tests). */
  get size(): number {
    return this.#buckets.size;
  }

  #sweep(now: number): void {
    for (const [k, b] of this.#buckets) if (b.left + ((now - b.at) / 1000) * this.#rate >= this.#size) this.#buckets.delete(k);
    this.#sweepAt = Math.max(1024, this.#buckets.size * 2);
  }
}

