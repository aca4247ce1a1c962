// The bounds of one user's roster, kept on the way in (roster sets and
// subscription requests) and on the way out (what is read from the store),
// so that a roster written by an older release, by hand or under larger
// limits costs no more to read, serialise or broadcast than one written now.
import type { Logger } from 'pino';
import { StanzaError } from '../../xmpp/errors.ts';
import type { RosterItem } from '../../routing/types.ts';
import type { RosterStore } from './store.ts';

/** `[modules.mod_roster]` options of the same names. */
export interface RosterLimits {
  /** max_items: items on one roster. */
  max_items: number;
  /** max_name_length: characters of an item's name. */
  max_name_length: number;
  /** max_groups: groups of one item. */
  max_groups: number;
  /** max_group_length: characters of a group's name. */
  max_group_length: number;
}

/** A bare JID is at most three 1023-octet parts and a separator (RFC 7622 §3.1). */
const MAX_STORED_JID = 3 * 1023 + 1;

/** `s` cut to at most `max` UTF-16 units, never in the middle of a surrogate pair. */
function clip(s: string, max: number): string {
  if (s.length <= max) return s;
  const code = s.charCodeAt(max - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/**
 * An item as read, within the limits: an over-long name is cut, over-long
 * groups are left out and at most max_groups kept; null for an item whose
 * JID no JID could have.
 */
export function boundedItem(item: RosterItem, l: RosterLimits): RosterItem | null {
  if (typeof item.jid !== 'string' || item.jid === '' || item.jid.length > MAX_STORED_JID) return null;
  const name = item.name === null || item.name.length <= l.max_name_length ? item.name : clip(item.name, l.max_name_length);
  let groups = item.groups;
  if (groups.length > l.max_groups || groups.some((g) => g.length > l.max_group_length || g === '')) {
    groups = [...new Set(groups.filter((g) => g !== '' && g.length <= l.max_group_length))].slice(0, l.max_groups);
  }
  return name === item.name && groups === item.groups ? item : { ...item, name, groups };
}

/** Checks a roster set's name and groups against the limits (RFC 6121 §2.3.3: not-acceptable past a server's limit). */
export function checkItemLimits(name: string | null, groups: readonly string[], l: RosterLimits): void {
  if (name !== null && name.length > l.max_name_length) throw new StanzaError('not-acceptable', 'modify', `the name is longer than ${l.max_name_length} characters`);
  if (groups.length > l.max_groups) throw new StanzaError('not-acceptable', 'modify', `more than ${l.max_groups} groups`);
  for (const g of groups) if (g.length > l.max_group_length) throw new StanzaError('not-acceptable', 'modify', `a group name is longer than ${l.max_group_length} characters`);
}

/** The roster is full: a new item is refused. */
export class RosterFullError extends StanzaError {
  constructor(max: number) {
    super('not-allowed', 'cancel', `the roster already has ${max} items`);
  }
}

/** A bounded roster; its logger is the module's, set once the module is created (the data opens before). */
export interface BoundedRosterStore extends RosterStore {
  logger: Logger | null;
}

/**
 * The store as the server uses it: reads are cut to max_items and each item
 * to the limits (a roster over them is logged, once per read); a new item
 * past max_items is refused with RosterFullError. Changes to existing items
 * always pass, so a full roster can still be tidied.
 */
export function boundedRoster(store: RosterStore, l: RosterLimits): BoundedRosterStore {
  return {
    logger: null,
    async getRoster(user, domain, limit) {
      const max = limit === undefined ? l.max_items : Math.min(limit, l.max_items);
      // One more than allowed, to tell a roster over the limit from one at it.
      const rows = await store.getRoster(user, domain, max + 1);
      const out: RosterItem[] = [];
      let clipped = 0;
      for (const row of rows.length > max ? rows.slice(0, max) : rows) {
        const item = boundedItem(row, l);
        if (item !== row) clipped++;
        if (item !== null) out.push(item);
      }
      if (rows.length > max || clipped > 0) {
        this.logger?.warn({ what: 'roster_over_limits', user: `${user}@${domain}`, max_items: l.max_items, over: rows.length > max, clipped }, 'a stored roster is over the limits; only what fits is used');
      }
      return out;
    },
    async getItem(user, domain, contact) {
      const item = await store.getItem(user, domain, contact);
      return item === null ? null : boundedItem(item, l);
    },
    async setItem(user, domain, item) {
      if ((await store.getItem(user, domain, item.jid)) === null && (await store.count(user, domain)) >= l.max_items) throw new RosterFullError(l.max_items);
      await store.setItem(user, domain, item);
    },
    count: (user, domain) => store.count(user, domain),
    removeItem: (user, domain, contact) => store.removeItem(user, domain, contact),
    removeUser: (user, domain) => store.removeUser(user, domain),
  };
}
