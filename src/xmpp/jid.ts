// JIDs (RFC 7622). Parts are prepared once, when a JID is built, so that
// comparison is plain string equality everywhere else. Instances are immutable
// and shared through a small cache, because the same few addresses are parsed
// again and again on the message path.

import { JidError, nameprep, nodeprep, resourceprep } from './stringprep.ts';

export { JidError };

/** RFC 7622 §3.1: every part is at most 1023 octets (UTF-8). */
const MAX_PART_OCTETS = 1023;
/**
 * Raw input longer than this cannot prepare to a valid JID cheaply enough to be
 * worth trying (NFKC expands by a bounded factor; B.1 removal can shrink, but
 * nobody sends kilobytes of soft hyphens in a real address).
 */
const MAX_INPUT_CHARS = 3 * (3 * MAX_PART_OCTETS + 2);

function checkLength(part: string, what: string): void {
  if (part.length === 0) throw new JidError(`${what} is empty`);
  // A UTF-16 string of n units is at most 3n UTF-8 octets and at least n.
  if (part.length * 3 > MAX_PART_OCTETS && Buffer.byteLength(part, 'utf8') > MAX_PART_OCTETS) {
    throw new JidError(`${what} is longer than ${MAX_PART_OCTETS} octets`);
  }
}

function prepLocal(local: string): string {
  if (local.length === 0) throw new JidError('localpart is empty');
  const p = nodeprep(local);
  checkLength(p, 'localpart');
  return p;
}

function prepDomain(domain: string): string {
  const p = nameprep(domain);
  checkLength(p, 'domainpart');
  return p;
}

function prepResource(resource: string): string {
  if (resource.length === 0) throw new JidError('resourcepart is empty');
  const p = resourceprep(resource);
  checkLength(p, 'resourcepart');
  return p;
}

let fromPrepared: (local: string, domain: string, resource: string) => JID;

export class JID {
  /** Prepared localpart, '' when absent. */
  readonly local: string;
  /** Prepared domainpart. */
  readonly domain: string;
  /** Prepared resourcepart, '' when absent. */
  readonly resource: string;
  /** "local@domain", or "domain" without a localpart. */
  readonly bare: string;
  /** The bare JID plus "/resource" when there is a resource. */
  readonly full: string;

  /** Takes parts that are already prepared and checked; use parseJid or makeJid. */
  private constructor(local: string, domain: string, resource: string) {
    this.local = local;
    this.domain = domain;
    this.resource = resource;
    this.bare = local === '' ? domain : local + '@' + domain;
    this.full = resource === '' ? this.bare : this.bare + '/' + resource;
  }

  static {
    // Hands the module, and nothing outside it, a way to build from prepared parts.
    fromPrepared = (local, domain, resource) => new JID(local, domain, resource);
  }

  isBare(): boolean {
    return this.resource === '';
  }

  bareJid(): JID {
    return this.resource === '' ? this : new JID(this.local, this.domain, '');
  }

  /** The same bare JID with another resource (resourceprep'd); throws JidError. */
  withResource(r: string): JID {
    return new JID(this.local, this.domain, prepResource(r));
  }

  equals(o: JID): boolean {
    return this.full === o.full;
  }

  toString(): string {
    return this.full;
  }
}

const CACHE_MAX = 10_000;
const cache = new Map<string, JID>();

/**
 * Parses and prepares a JID string (RFC 7622 §3.1): the resourcepart is
 * everything after the first '/', the localpart everything before the first '@'
 * that precedes it. Throws JidError naming what is wrong.
 */
export function parseJid(s: string): JID {
  const hit = cache.get(s);
  if (hit !== undefined) return hit;
  const jid = parseUncached(s);
  // Clearing when full keeps the bound with no bookkeeping per hit; the hot
  // addresses come back within a few messages.
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(s, jid);
  return jid;
}

function parseUncached(s: string): JID {
  if (typeof s !== 'string' || s.length === 0) throw new JidError('JID is empty');
  if (s.length > MAX_INPUT_CHARS) throw new JidError('JID is too long');
  const slash = s.indexOf('/');
  const head = slash === -1 ? s : s.slice(0, slash);
  const at = head.indexOf('@');
  let local = '';
  if (at !== -1) {
    if (at === 0) throw new JidError('localpart is empty');
    local = prepLocal(head.slice(0, at));
  }
  const domain = prepDomain(at === -1 ? head : head.slice(at + 1));
  let resource = '';
  if (slash !== -1) {
    if (slash === s.length - 1) throw new JidError('resourcepart is empty');
    resource = prepResource(s.slice(slash + 1));
  }
  return fromPrepared(local, domain, resource);
}

/** Builds a JID from separate parts, preparing each; '' or undefined means absent. Throws JidError. */
export function makeJid(local: string, domain: string, resource?: string): JID {
  return fromPrepared(
    local === '' ? '' : prepLocal(local),
    prepDomain(domain),
    resource === undefined || resource === '' ? '' : prepResource(resource),
  );
}

/** parseJid that returns null instead of throwing. */
export function tryParseJid(s: string): JID | null {
  try {
    return parseJid(s);
  } catch (e) {
    if (e instanceof JidError) return null;
    throw e;
  }
}
