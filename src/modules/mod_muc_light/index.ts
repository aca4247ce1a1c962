// mod_muc_light: MongooseIM's MUC Light (urn:xmpp:muclight:0, its
// open-extensions/muc_light.md), configured with MongooseIM's option names.
// Rooms have members, not occupants: a user is added by another, stays in
// the room whether online or not, and every groupchat message goes to every
// resource of every member, from room@service/<sender's bare JID>. There is
// no presence in a room. Rooms and blocking lists live in the module's store.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { bool, compat, custom, describe, fail, int, list, section, str, type Spec } from '../../config/schema.ts';
import type { HookCatalogue } from '../../hooks/catalogue.ts';
import type { HookRegistration } from '../../hooks/hooks.ts';
import { storeBackendSpec, type StoreBackend } from '../../storage/select.ts';
import { StanzaError } from '../../xmpp/errors.ts';
import { parseJid, type JID } from '../../xmpp/jid.ts';
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from '../../xmpp/ns.ts';
import { Element } from '../../xmpp/xml.ts';
import type { ModuleData, ModuleDefinition, ModuleInstance, SessionsApi } from '../types.ts';
import { intOrInfinity } from '../../config/core-spec.ts';
import { MUC_LIGHT_STORE, type MucLightStore } from './store.ts';

const NAME = 'mod_muc_light';
export const NS_LIGHT = 'urn:xmpp:muclight:0';
const NS_CREATE = `${NS_LIGHT}#create`;
const NS_DESTROY = `${NS_LIGHT}#destroy`;
const NS_CONFIG = `${NS_LIGHT}#configuration`;
const NS_AFFS = `${NS_LIGHT}#affiliations`;
const NS_INFO = `${NS_LIGHT}#info`;
const NS_BLOCKING = `${NS_LIGHT}#blocking`;
const NS_RSM = 'http://jabber.org/protocol/rsm';

type Aff = 'owner' | 'member';
type ConfigValue = string | number | boolean;

interface SchemaField {
  field: string;
  value: ConfigValue;
  type: 'string' | 'integer' | 'float' | 'boolean';
}

export interface MucLightOpts {
  host: string;
  backend: StoreBackend;
  equal_occupants: boolean;
  /** 0: no limit ("infinity"). */
  rooms_per_user: number;
  blocking: boolean;
  all_can_configure: boolean;
  all_can_invite: boolean;
  /** 0: no limit ("infinity"). */
  max_occupants: number;
  /** 0: no limit ("infinity"). */
  rooms_per_page: number;
  rooms_in_rosters: boolean;
  allow_multiple_owners: boolean;
  promote_on_last_owner_leave: boolean;
  config_schema: SchemaField[];
  /** Petrel: items one user's blocking list holds at most. */
  max_blocking_items: number;
  /** Petrel: rooms one service holds at most. */
  max_rooms: number;
}

const schemaItem = custom((v, p) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(p, `expected a table, got ${describe(v)}`);
  const t = v as Record<string, unknown>;
  if (typeof t.field !== 'string' || t.field === '') fail(`${p}.field`, 'a non-empty string is required');
  if (t.field === 'version' || t.field === 'prev-version') fail(`${p}.field`, `"${t.field}" is reserved for room versions`);
  const kinds = (['string_value', 'integer_value', 'float_value', 'boolean_value'] as const).filter((k) => k in t);
  if (kinds.length !== 1) fail(p, 'exactly one of string_value, integer_value, float_value, boolean_value is required');
  for (const k of Object.keys(t)) if (!['field', 'internal_key', ...kinds].includes(k)) fail(`${p}.${k}`, 'unknown key');
  const kind = kinds[0]!;
  const value = t[kind];
  const type = kind.slice(0, kind.indexOf('_')) as SchemaField['type'];
  const ok = type === 'string' ? typeof value === 'string' : type === 'boolean' ? typeof value === 'boolean' : typeof value === 'number' && (type === 'float' || Number.isInteger(value));
  if (!ok) fail(`${p}.${kind}`, `expected a ${type}, got ${describe(value)}`);
  return { field: t.field, value, type } as SchemaField;
});

export const mucLightSpec: Spec = section(
  {
    host: str({ nonEmpty: true, default: 'muclight.@HOST@' }),
    backend: storeBackendSpec(),
    cache_affs: compat(section({ module: str(), strategy: str(), time_to_live: custom((v) => v), number_of_segments: int() }), 'affiliations are in memory on the node already'),
    equal_occupants: bool({ default: false }),
    rooms_per_user: intOrInfinity(1, 1000),
    blocking: bool({ default: true }),
    all_can_configure: bool({ default: false }),
    all_can_invite: bool({ default: false }),
    max_occupants: intOrInfinity(1, 1000),
    rooms_per_page: intOrInfinity(1, 10),
    rooms_in_rosters: compat(bool({ default: false }), 'rooms are not added to rosters; clients list them with disco#items on the service'),
    allow_multiple_owners: bool({ default: false }),
    promote_on_last_owner_leave: bool({ default: true }),
    config_schema: list(schemaItem, {
      default: [
        { field: 'roomname', value: 'Untitled', type: 'string' },
        { field: 'subject', value: '', type: 'string' },
      ],
    }),
    max_blocking_items: int({ min: 1, default: 1000 }),
    max_rooms: int({ min: 1, default: 100_000 }),
  },
  { default: true },
);

interface LightRoom {
  jid: JID;
  config: Map<string, ConfigValue>;
  /** Bare JID → affiliation, in the order members were added. */
  affs: Map<string, Aff>;
  version: string;
}

/**
 * Thrown while a request is checked: these JIDs would become members and
 * whether each is an account is not known yet. The request is answered once
 * they are looked up, run again from the start against the rooms as they are
 * then.
 */
class AccountsUnknown {
  readonly jids: string[];
  constructor(jids: string[]) {
    this.jids = jids;
  }
}

/** Bare JID → whether it is an account of this server, as found for one request. */
type Accounts = Map<string, boolean>;

/** Passes of one request, each looking up the accounts the one before could not know. */
const MAX_PASSES = 3;

function newVersion(): string {
  return randomBytes(6).toString('hex');
}

export interface MucLightData extends ModuleData {
  readonly store: MucLightStore;
}

export function createMucLight(opts: MucLightOpts, deps: {
  hosts: readonly string[];
  route(from: JID, to: JID, el: Element): void;
  addService(domain: string, handler: (from: JID, to: JID, packet: Element) => void): void;
  sessions: SessionsApi;
  store: MucLightStore;
  /** Whether user@domain is an account (of a served host). */
  userExists(user: string, domain: string): Promise<boolean>;
  logger: Logger;
}) {
  const log = deps.logger;
  const services = new Map<string, Map<string, LightRoom>>();
  /** Bare JID → rooms it is in. */
  const memberOf = new Map<string, Set<LightRoom>>();
  /** Service → user bare JID → blocked rooms and users. */
  const blocks = new Map<string, Map<string, { rooms: Set<string>; users: Set<string> }>>();
  const schema = new Map(opts.config_schema.map((f) => [f.field, f]));
  const writes: Promise<void>[] = [];

  const track = (p: Promise<void>) => {
    const w = p.catch((err: unknown) => log.error({ what: 'muc_light_store_failed', err: String(err) }, 'could not write to the MUC Light store'));
    writes.push(w);
    void w.finally(() => writes.splice(writes.indexOf(w), 1));
  };
  let chain: Promise<void> = Promise.resolve();
  /** Writes in order, one after another. */
  const write = (job: () => Promise<void>) => {
    chain = chain.then(job, job);
    track(chain);
  };

  const save = (room: LightRoom) => {
    const state = JSON.stringify({ config: Object.fromEntries(room.config), affiliations: Object.fromEntries(room.affs), version: room.version });
    write(() => deps.store.putRoom({ service: room.jid.domain, name: room.jid.local, state }));
  };

  const setMember = (room: LightRoom, bare: string, aff: Aff | 'none') => {
    if (aff === 'none') {
      room.affs.delete(bare);
      const s = memberOf.get(bare);
      s?.delete(room);
      if (s?.size === 0) memberOf.delete(bare);
      return;
    }
    room.affs.set(bare, aff);
    let s = memberOf.get(bare);
    if (s === undefined) memberOf.set(bare, (s = new Set()));
    s.add(room);
  };

  const drop = (room: LightRoom) => {
    for (const bare of [...room.affs.keys()]) setMember(room, bare, 'none');
    services.get(room.jid.domain)?.delete(room.jid.local);
    write(() => deps.store.removeRoom(room.jid.domain, room.jid.local));
  };

  /** Sends to every online resource of `bare`. */
  const toUser = (from: JID, bare: string, el: Element) => {
    for (const s of deps.sessions.byBare(bare)) {
      const copy = new Element(el.name, { ...el.attrs, to: s.jid.full }, el.children);
      deps.route(from, s.jid, copy);
    }
  };

  const notice = (room: LightRoom, bare: string, id: string | undefined, build: (x: Element[]) => void) => {
    const el = new Element('message', { from: room.jid.full, to: bare, type: 'groupchat', id: id ?? newVersion() });
    const xs: Element[] = [];
    build(xs);
    el.children.push(...xs, new Element('body'));
    toUser(room.jid, bare, el);
  };

  const blockedBy = (service: string, user: string) => blocks.get(service)?.get(user);

  const isBlocked = (room: LightRoom, user: string, by: string) => {
    const b = blockedBy(room.jid.domain, user);
    return opts.blocking && b !== undefined && (b.rooms.has(room.jid.bare) || b.users.has(by));
  };

  const mayConfigure = (room: LightRoom, who: string) =>
    room.affs.get(who) === 'owner' || room.config.get('all_can_configure') === true || (room.config.get('all_can_configure') === undefined && opts.all_can_configure) || opts.equal_occupants;
  const mayInvite = (room: LightRoom, who: string) =>
    room.affs.get(who) === 'owner' || room.config.get('all_can_invite') === true || (room.config.get('all_can_invite') === undefined && opts.all_can_invite) || opts.equal_occupants;

  const served = new Set(deps.hosts.map((h) => parseJid(h).domain));
  /** False when `bare` cannot be an account (no local part, a domain this server does not serve); else what `accounts` knows. */
  const isAccount = (bare: string, accounts: Accounts): boolean | undefined => {
    const j = parseJid(bare);
    if (j.local === '' || !served.has(j.domain)) return false;
    return accounts.get(bare);
  };
  /**
   * Petrel does not federate: a member must be an account of a host this
   * server serves, or the room is memory no one can read. The first JID
   * known not to be one refuses the request; the unknown ones are looked up
   * (AccountsUnknown) before the request runs again.
   */
  const requireAccounts = (newcomers: string[], accounts: Accounts) => {
    const unknown: string[] = [];
    for (const j of newcomers) {
      const ok = isAccount(j, accounts);
      if (ok === false) throw new StanzaError('item-not-found', 'cancel', `${j} is not an account of this server`);
      if (ok === undefined) unknown.push(j);
    }
    if (unknown.length > 0) throw new AccountsUnknown(unknown);
  };
  /** One lookup after another, stopping at the first that is not an account. At most max_occupants per pass: the newcomers of a request that fits in a room. */
  const lookUp = async (jids: string[], accounts: Accounts) => {
    for (const j of jids) {
      const { local, domain } = parseJid(j);
      const ok = await deps.userExists(local, domain);
      accounts.set(j, ok);
      if (!ok) return;
    }
  };

  const checkRoomsPerUser = (bare: string) => opts.rooms_per_user === 0 || (memberOf.get(bare)?.size ?? 0) < opts.rooms_per_user;

  /** Reads <configuration> children against the schema: unknown fields and bad values are bad requests. */
  const readConfig = (base: Map<string, ConfigValue>, el: Element | undefined): Map<string, ConfigValue> => {
    const out = new Map(base);
    for (const c of el?.getChildren() ?? []) {
      if (c.name === 'version' || c.name === 'prev-version') continue;
      const f = schema.get(c.name);
      if (f === undefined) throw new StanzaError('bad-request', 'modify', `${c.name} is not a configuration field of this service`);
      const t = c.text();
      if (t.length > 1024) throw new StanzaError('not-acceptable', 'modify', `${c.name} is longer than 1024 characters`);
      let v: ConfigValue = t;
      if (f.type === 'integer') v = /^-?\d+$/.test(t) ? Number(t) : Number.NaN;
      else if (f.type === 'float') v = Number(t);
      else if (f.type === 'boolean') v = t === 'true' ? true : t === 'false' ? false : Number.NaN;
      if (typeof v === 'number' && !Number.isFinite(v)) throw new StanzaError('bad-request', 'modify', `bad value for ${c.name}`);
      out.set(c.name, v);
    }
    return out;
  };

  const configChildren = (parent: Element, config: Map<string, ConfigValue>) => {
    for (const [k, v] of config) parent.c(k).t(String(v));
  };

  const usersChildren = (parent: Element, affs: Iterable<[string, Aff | 'none']>) => {
    for (const [jid, a] of affs) parent.c('user', { affiliation: a }).t(jid);
  };

  /** Applies affiliation changes; returns the changes made (with the implied ones) and who was new. */
  const changeAffiliations = (room: LightRoom, actor: string, requested: Array<[string, Aff | 'none']>): Array<[string, Aff | 'none']> => {
    const seen = new Set<string>();
    const changes = new Map<string, Aff | 'none'>();
    const actorAff = room.affs.get(actor);
    for (const [jid, aff] of requested) {
      if (seen.has(jid)) throw new StanzaError('bad-request', 'modify', `${jid} appears twice`);
      seen.add(jid);
      const current = room.affs.get(jid) ?? 'none';
      if (current === aff) throw new StanzaError('bad-request', 'modify', `${jid} already has affiliation ${aff}`);
      if (actorAff !== 'owner' && !opts.equal_occupants) {
        const selfLeave = jid === actor && aff === 'none';
        const invite = current === 'none' && aff === 'member' && mayInvite(room, actor);
        if (!selfLeave && !invite) throw new StanzaError('not-allowed', 'cancel', 'only the owner may change this affiliation');
      }
      if (aff === 'owner' && opts.equal_occupants) throw new StanzaError('not-allowed', 'cancel', 'this service has no owners');
      if (current === 'none' && aff !== 'none') {
        if (isBlocked(room, jid, actor)) continue; // §4.5: skipped silently
        if (!checkRoomsPerUser(jid)) continue;
      }
      changes.set(jid, aff);
    }
    const after = new Map(room.affs);
    for (const [jid, aff] of changes) {
      if (aff === 'none') after.delete(jid);
      else after.set(jid, aff);
    }
    if (opts.max_occupants > 0 && after.size > opts.max_occupants) throw new StanzaError('not-allowed', 'cancel', `a room has at most ${opts.max_occupants} occupants`);
    // A single owner: a new one demotes the others.
    if (!opts.allow_multiple_owners) {
      const newOwners = [...changes].filter(([, a]) => a === 'owner').map(([j]) => j);
      if (newOwners.length > 1) throw new StanzaError('bad-request', 'modify', 'a room has one owner');
      if (newOwners.length === 1) {
        for (const [j, a] of after) if (a === 'owner' && j !== newOwners[0]) {
          after.set(j, 'member');
          changes.set(j, 'member');
        }
      }
    }
    if (!opts.equal_occupants && after.size > 0 && ![...after.values()].includes('owner') && [...room.affs.values()].includes('owner')) {
      if (!opts.promote_on_last_owner_leave) throw new StanzaError('not-allowed', 'cancel', 'the last owner cannot leave without choosing another');
      const heir = after.keys().next().value!;
      after.set(heir, 'owner');
      changes.set(heir, 'owner');
    }
    return [...changes];
  };

  const applyChanges = (room: LightRoom, changes: Array<[string, Aff | 'none']>, id: string | undefined) => {
    const before = new Set(room.affs.keys());
    const prev = room.version;
    room.version = newVersion();
    for (const [jid, aff] of changes) setMember(room, jid, aff);
    // §5.4: those who stay get every change; newcomers their own; the removed their own 'none'.
    for (const [jid, aff] of changes) {
      if (aff === 'none') notice(room, jid, id, (xs) => usersChildren((xs[xs.length] = new Element('x', { xmlns: NS_AFFS })), [[jid, 'none']]));
      else if (!before.has(jid)) notice(room, jid, id, (xs) => {
        const x = (xs[xs.length] = new Element('x', { xmlns: NS_AFFS }));
        x.c('version').t(room.version);
        usersChildren(x, [[jid, aff]]);
      });
    }
    for (const jid of room.affs.keys()) {
      if (!before.has(jid)) continue;
      notice(room, jid, id, (xs) => {
        const x = (xs[xs.length] = new Element('x', { xmlns: NS_AFFS }));
        x.c('prev-version').t(prev);
        x.c('version').t(room.version);
        usersChildren(x, changes);
      });
    }
    if (room.affs.size === 0) drop(room);
    else save(room);
  };

  const create = (svc: Map<string, LightRoom>, name: string, from: JID, q: Element, id: string | undefined, accounts: Accounts): LightRoom => {
    if (svc.has(name)) throw new StanzaError('conflict', 'cancel', 'a room with this name exists');
    if (svc.size >= opts.max_rooms) throw new StanzaError('resource-constraint', 'wait', 'this service holds as many rooms as it may');
    if (!checkRoomsPerUser(from.bare)) throw new StanzaError('not-allowed', 'cancel', `you are in ${opts.rooms_per_user} rooms already`);
    const defaults = new Map<string, ConfigValue>(opts.config_schema.map((f) => [f.field, f.value]));
    const config = readConfig(defaults, q.getChild('configuration'));
    const requested: Array<[string, Aff]> = [];
    const seen = new Set<string>([from.bare]);
    for (const u of q.getChild('occupants')?.getChildren('user') ?? []) {
      const a = u.attrs.affiliation;
      if (a !== 'owner' && a !== 'member') throw new StanzaError('bad-request', 'modify', 'occupants are owners or members');
      let j: JID;
      try {
        j = parseJid(u.text()).bareJid();
      } catch {
        throw new StanzaError('bad-request', 'modify', 'an occupant is not a valid JID');
      }
      if (seen.has(j.bare)) throw new StanzaError('bad-request', 'modify', `${j.bare} appears twice (or is the creator)`);
      seen.add(j.bare);
      requested.push([j.bare, opts.equal_occupants ? 'member' : a]);
    }
    const owners = requested.filter(([, a]) => a === 'owner').length;
    if (owners > 1 && !opts.allow_multiple_owners) throw new StanzaError('bad-request', 'modify', 'a room has one owner');
    const room: LightRoom = { jid: parseJid(`${name}@${[...services].find(([, m]) => m === svc)![0]}`), config, affs: new Map(), version: newVersion() };
    const members: Array<[string, Aff]> = [[from.bare, opts.equal_occupants || owners > 0 ? 'member' : 'owner']];
    for (const [j, a] of requested) if (!isBlocked(room, j, from.bare) && checkRoomsPerUser(j)) members.push([j, a]);
    if (opts.max_occupants > 0 && members.length > opts.max_occupants) throw new StanzaError('not-allowed', 'cancel', `a room has at most ${opts.max_occupants} occupants`);
    requireAccounts(members.slice(1).map(([j]) => j), accounts);
    svc.set(name, room);
    for (const [j, a] of members) setMember(room, j, a);
    for (const [j, a] of members) notice(room, j, id, (xs) => {
      const x = (xs[xs.length] = new Element('x', { xmlns: NS_AFFS }));
      x.c('version').t(room.version);
      usersChildren(x, [[j, a]]);
    });
    save(room);
    log.info({ what: 'muc_light_room_created', room: room.jid.bare, owner: from.bare }, 'MUC Light room created');
    return room;
  };

  const roomIq = (svc: Map<string, LightRoom>, from: JID, to: JID, packet: Element, accounts: Accounts): Element | undefined => {
    const type = packet.attrs.type;
    const q = packet.firstElement();
    const ns = q?.attrs.xmlns;
    if (q === undefined) throw new StanzaError('bad-request', 'modify');
    if (ns === NS_CREATE && type === 'set') {
      create(svc, to.local, from, q, packet.attrs.id, accounts);
      return undefined;
    }
    const room = svc.get(to.local);
    if (room === undefined) throw new StanzaError('item-not-found', 'cancel', 'no such room');
    const mine = room.affs.get(from.bare);
    if (mine === undefined) throw new StanzaError('item-not-found', 'cancel', 'you are not in this room');
    const version = q.getChildText('version');
    const answer = (n: string, fill: (r: Element) => void): Element | undefined => {
      if (version !== undefined && version === room.version) return undefined;
      const r = new Element('query', { xmlns: n });
      r.c('version').t(room.version);
      fill(r);
      return r;
    };
    if (type === 'get') {
      if (ns === NS_CONFIG) return answer(NS_CONFIG, (r) => configChildren(r, room.config));
      if (ns === NS_AFFS) return answer(NS_AFFS, (r) => usersChildren(r, room.affs));
      if (ns === NS_INFO) return answer(NS_INFO, (r) => {
        configChildren(r.c('configuration'), room.config);
        usersChildren(r.c('occupants'), room.affs);
      });
      if (ns === NS_DISCO_INFO) {
        const r = new Element('query', { xmlns: NS_DISCO_INFO });
        r.c('identity', { category: 'conference', type: 'text', name: String(room.config.get('roomname') ?? room.jid.local) });
        r.c('feature', { var: NS_LIGHT });
        return r;
      }
      throw new StanzaError('service-unavailable', 'cancel');
    }
    if (ns === NS_CONFIG) {
      if (!mayConfigure(room, from.bare)) throw new StanzaError('not-allowed', 'cancel', 'only the owner may configure this room');
      const next = readConfig(room.config, q);
      const changed = [...next].filter(([k, v]) => room.config.get(k) !== v);
      const prev = room.version;
      room.config = next;
      room.version = newVersion();
      for (const jid of room.affs.keys()) notice(room, jid, packet.attrs.id, (xs) => {
        const x = (xs[xs.length] = new Element('x', { xmlns: NS_CONFIG }));
        x.c('prev-version').t(prev);
        x.c('version').t(room.version);
        for (const [k, v] of changed) x.c(k).t(String(v));
      });
      save(room);
      return undefined;
    }
    if (ns === NS_AFFS) {
      const requested: Array<[string, Aff | 'none']> = [];
      for (const u of q.getChildren('user')) {
        const a = u.attrs.affiliation;
        if (a !== 'owner' && a !== 'member' && a !== 'none') throw new StanzaError('bad-request', 'modify', 'affiliations are owner, member or none');
        let j: JID;
        try {
          j = parseJid(u.text()).bareJid();
        } catch {
          throw new StanzaError('bad-request', 'modify', 'a user is not a valid JID');
        }
        requested.push([j.bare, a]);
      }
      if (requested.length === 0) throw new StanzaError('bad-request', 'modify', 'no user to change');
      const changes = changeAffiliations(room, from.bare, requested);
      requireAccounts(changes.filter(([j, a]) => a !== 'none' && !room.affs.has(j)).map(([j]) => j), accounts);
      if (changes.length > 0) applyChanges(room, changes, packet.attrs.id);
      const r = new Element('query', { xmlns: NS_AFFS });
      usersChildren(r, changes);
      return r;
    }
    if (ns === NS_DESTROY) {
      if (mine !== 'owner' && !opts.equal_occupants) throw new StanzaError('not-allowed', 'cancel', 'only the owner may destroy this room');
      for (const jid of room.affs.keys()) notice(room, jid, packet.attrs.id, (xs) => {
        usersChildren((xs[xs.length] = new Element('x', { xmlns: NS_AFFS })), [[jid, 'none']]);
        xs.push(new Element('x', { xmlns: NS_DESTROY }));
      });
      drop(room);
      return undefined;
    }
    throw new StanzaError('service-unavailable', 'cancel');
  };

  const serviceIq = (domain: string, svc: Map<string, LightRoom>, from: JID, packet: Element, accounts: Accounts): { from: JID; result: Element | undefined } => {
    const type = packet.attrs.type;
    const q = packet.firstElement();
    const ns = q?.attrs.xmlns;
    const me = parseJid(domain);
    if (ns === NS_DISCO_INFO && type === 'get') {
      const r = new Element('query', { xmlns: NS_DISCO_INFO });
      r.c('identity', { category: 'conference', type: 'text', name: 'MUC Light' });
      for (const f of [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_LIGHT]) r.c('feature', { var: f });
      return { from: me, result: r };
    }
    if (ns === NS_DISCO_ITEMS && type === 'get') {
      const mine = [...(memberOf.get(from.bare) ?? [])].filter((r) => r.jid.domain === domain).sort((a, b) => (a.jid.bare < b.jid.bare ? -1 : 1));
      const set = q!.getChild('set', NS_RSM);
      const after = set?.getChildText('after');
      const maxReq = Number.parseInt(set?.getChildText('max') ?? '', 10);
      const page = opts.rooms_per_page === 0 ? Number.POSITIVE_INFINITY : opts.rooms_per_page;
      const max = Number.isFinite(maxReq) && maxReq >= 0 ? Math.min(maxReq, page) : page;
      const startAt = after === undefined ? 0 : mine.findIndex((r) => r.jid.bare === after) + 1;
      const slice = mine.slice(startAt, startAt + max);
      const r = new Element('query', { xmlns: NS_DISCO_ITEMS });
      for (const room of slice) r.c('item', { jid: room.jid.bare, name: String(room.config.get('roomname') ?? room.jid.local), version: room.version });
      if (slice.length < mine.length) {
        const s = r.c('set', { xmlns: NS_RSM });
        if (slice.length > 0) {
          s.c('first', { index: String(startAt) }).t(slice[0]!.jid.bare);
          s.c('last').t(slice[slice.length - 1]!.jid.bare);
        }
        s.c('count').t(String(mine.length));
      }
      return { from: me, result: r };
    }
    if (ns === NS_BLOCKING && opts.blocking) {
      let perService = blocks.get(domain);
      if (perService === undefined) blocks.set(domain, (perService = new Map()));
      const cur = perService.get(from.bare) ?? { rooms: new Set<string>(), users: new Set<string>() };
      if (type === 'get') {
        const r = new Element('query', { xmlns: NS_BLOCKING });
        for (const x of cur.rooms) r.c('room', { action: 'deny' }).t(x);
        for (const x of cur.users) r.c('user', { action: 'deny' }).t(x);
        return { from: me, result: r };
      }
      const next = { rooms: new Set(cur.rooms), users: new Set(cur.users) };
      for (const item of q!.getChildren()) {
        const action = item.attrs.action;
        if ((item.name !== 'room' && item.name !== 'user') || (action !== 'deny' && action !== 'allow')) throw new StanzaError('bad-request', 'modify', 'items are room or user, with action deny or allow');
        let j: string;
        try {
          j = parseJid(item.text()).bare;
        } catch {
          throw new StanzaError('bad-request', 'modify', 'an item is not a valid JID');
        }
        const set = item.name === 'room' ? next.rooms : next.users;
        if (action === 'deny') set.add(j);
        else set.delete(j);
      }
      if (next.rooms.size + next.users.size > opts.max_blocking_items) throw new StanzaError('not-acceptable', 'modify', `a blocking list holds at most ${opts.max_blocking_items} items`);
      if (next.rooms.size + next.users.size === 0) {
        perService.delete(from.bare);
        write(() => deps.store.removeBlocking(domain, from.bare));
      } else {
        perService.set(from.bare, next);
        const listJson = JSON.stringify({ rooms: [...next.rooms], users: [...next.users] });
        write(() => deps.store.putBlocking({ service: domain, user: from.bare, list: listJson }));
      }
      return { from: me, result: undefined };
    }
    if (ns === NS_CREATE && type === 'set') {
      let name: string;
      do name = randomBytes(8).toString('hex');
      while (svc.has(name));
      const room = create(svc, name, from, q!, packet.attrs.id, accounts);
      // §5.1.1: the result comes from the new room.
      return { from: room.jid, result: undefined };
    }
    throw new StanzaError('service-unavailable', 'cancel');
  };

  const refuse = (err: StanzaError, from: JID, to: JID, packet: Element) => {
    if (packet.attrs.type === 'error') return;
    const reply = new Element(packet.name, { type: 'error', id: packet.attrs.id, from: to.full, to: from.full }, packet.name === 'iq' ? [] : packet.children.slice());
    reply.children.push(err.toElement());
    deps.route(to, from, reply);
  };

  /**
   * Runs a request. One that would add members whose accounts are not known
   * yet (AccountsUnknown) has them looked up, then runs again from the start:
   * every check sees the rooms as they are by then, and nothing is applied
   * before all is known. Only creating and adding members waits so.
   */
  const handle = (domain: string, svc: Map<string, LightRoom>, from: JID, to: JID, packet: Element, accounts: Accounts = new Map(), pass = 1) => {
    try {
      if (packet.name === 'iq') {
        const type = packet.attrs.type;
        if (type !== 'get' && type !== 'set') return;
        let answerFrom = to;
        let result: Element | undefined;
        if (to.local === '') ({ from: answerFrom, result } = serviceIq(domain, svc, from, packet, accounts));
        else result = roomIq(svc, from, to.bareJid(), packet, accounts);
        const reply = new Element('iq', { type: 'result', id: packet.attrs.id, from: answerFrom.full, to: from.full });
        if (result !== undefined) reply.children.push(result);
        deps.route(answerFrom, from, reply);
        return;
      }
      if (packet.name === 'message') {
        if (packet.attrs.type === 'error') return;
        if (to.local === '' || packet.attrs.type !== 'groupchat') throw new StanzaError('bad-request', 'modify', 'messages to a room are of type groupchat');
        const room = svc.get(to.local);
        if (room === undefined) throw new StanzaError('item-not-found', 'cancel', 'no such room');
        if (!room.affs.has(from.bare)) throw new StanzaError('forbidden', 'auth', 'you are not in this room');
        // §4.1: to every member, the sender included, from room/<sender's bare JID>.
        const sender = room.jid.withResource(from.bare);
        const base = new Element('message', { type: 'groupchat', id: packet.attrs.id, from: sender.full }, packet.children.filter((c) => typeof c === 'string' || c.attrs.xmlns !== NS_AFFS));
        for (const bare of room.affs.keys()) toUser(sender, bare, base);
        return;
      }
      // There is no presence in MUC Light rooms.
    } catch (err) {
      if (err instanceof AccountsUnknown) {
        if (pass >= MAX_PASSES) {
          refuse(new StanzaError('resource-constraint', 'wait', 'the room changed while its members were checked; try again'), from, to, packet);
          return;
        }
        lookUp(err.jids, accounts).then(
          () => handle(domain, svc, from, to, packet, accounts, pass + 1),
          (e: unknown) => {
            log.error({ what: 'muc_light_account_lookup_failed', err: String(e) }, 'could not check that new MUC Light members are accounts');
            refuse(new StanzaError('internal-server-error', 'wait', 'the members could not be checked'), from, to, packet);
          },
        ).catch((e: unknown) => log.error({ what: 'muc_light_request_failed', err: String(e) }, 'a MUC Light request failed'));
        return;
      }
      if (!(err instanceof StanzaError)) throw err;
      refuse(err, from, to, packet);
    }
  };

  for (const h of deps.hosts) {
    const domain = opts.host.replaceAll('@HOST@', h);
    const svc = new Map<string, LightRoom>();
    services.set(domain, svc);
    deps.addService(domain, (from, to, packet) => handle(domain, svc, from, to, packet));
  }

  return {
    async load() {
      for (const r of await deps.store.rooms()) {
        const svc = services.get(r.service);
        if (svc === undefined) continue;
        try {
          const s = JSON.parse(r.state) as { config: Record<string, ConfigValue>; affiliations: Record<string, Aff>; version: string };
          const room: LightRoom = { jid: parseJid(`${r.name}@${r.service}`), config: new Map(Object.entries(s.config)), affs: new Map(), version: s.version };
          svc.set(r.name, room);
          for (const [j, a] of Object.entries(s.affiliations)) if (a === 'owner' || a === 'member') setMember(room, j, a);
        } catch {
          log.error({ what: 'muc_light_room_unreadable', room: `${r.name}@${r.service}` }, 'a stored room could not be read; it is skipped');
        }
      }
      for (const b of await deps.store.blocking()) {
        try {
          const l = JSON.parse(b.list) as { rooms: string[]; users: string[] };
          let m = blocks.get(b.service);
          if (m === undefined) blocks.set(b.service, (m = new Map()));
          m.set(b.user, { rooms: new Set(l.rooms), users: new Set(l.users) });
        } catch {
          log.error({ what: 'muc_light_blocking_unreadable', user: b.user }, 'a stored blocking list could not be read; it is skipped');
        }
      }
    },
    /** An account went: it leaves every room, and its blocking lists go. */
    userRemoved(bare: string): Promise<void> {
      for (const room of [...(memberOf.get(bare) ?? [])]) {
        try {
          const changes = changeAffiliations(room, bare, [[bare, 'none']]);
          applyChanges(room, changes, undefined);
        } catch (err) {
          log.warn({ what: 'muc_light_leave_failed', room: room.jid.bare, user: bare, err: String(err) }, 'a removed user could not leave a room');
        }
      }
      for (const [domain, m] of blocks) {
        if (m.delete(bare)) write(() => deps.store.removeBlocking(domain, bare));
      }
      return chain;
    },
    async flush() {
      while (writes.length > 0) await Promise.allSettled([...writes]);
    },
  };
}

export const definition: ModuleDefinition<MucLightOpts, MucLightData> = {
  name: NAME,
  configSpec: mucLightSpec,
  async openData(stores, opts) {
    const store = await stores.open(MUC_LIGHT_STORE, opts.backend, 'modules.mod_muc_light.backend');
    return { backend: opts.backend, store, hooks: () => [] };
  },
  async create(ctx, opts, data): Promise<ModuleInstance> {
    const light = createMucLight(opts, {
      hosts: ctx.hosts,
      route: (from, to, el) => ctx.router.route(from, to, el),
      addService: (domain, h) => ctx.router.addService(domain, (from, to, packet) => h(from, to, packet)),
      sessions: ctx.sessions,
      store: data.store,
      userExists: (user, domain) => ctx.users.userExists(user, domain),
      logger: ctx.logger.child({ module: NAME }),
    });
    await light.load();
    const hooks: HookRegistration<any>[] = [
      {
        hook: 'user_removed',
        host: '*',
        priority: 50,
        owner: NAME,
        handler: (p: HookCatalogue['user_removed']) => {
          p.removals.push(light.userRemoved(`${p.user}@${p.server}`));
        },
      } satisfies HookRegistration<'user_removed'>,
    ];
    return { hooks: () => hooks, stop: () => light.flush() };
  },
};
