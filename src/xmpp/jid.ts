// JIDs (RFC 7622). Parts are prepared once, when a JID is built, so that
// comparison is plain string equality everywhere else. Instances are immutable
// and shared through a small cache, because the same few addresses are parsed
// again and again on the message path.

import { JidError, MAX_PART_INPUT, MAX_PART_OCTETS, nameprep, nodeprep, resourceprep } from './stringprep.ts';

export { JidError };

/** Three parts each as long as a profile takes, and the two separators (each profile refuses a longer part itself). */
const MAX_INPUT_CHARS = 3 * MAX_PART_INPUT + 2;

/**
 * A copy of `s` that shares no memory with it. A string cut from a larger one
 * (an attribute value sliced out of the parser's chunk) is, in V8, a view that
 * keeps the whole larger string alive; a cached JID or a session's JID would
 * pin a chunk of up to a whole stanza. Concatenation then slicing flattens into
 * a new string of length + 1 and views that, not the original (measured by
 * test/unit/xmpp/jid-memory.test.ts; a Buffer round trip is 30x slower).
 */
function detach(s: string): string {
  return (' ' + s).slice(1);
}

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
    return new JID(this.local, this.domain, prepResource(detach(r)));
  }

  equals(o: JID): boolean {
    return this.full === o.full;
  }

  toString(): string {
    return this.full;
  }
}

const CACHE_MAX = 10_000;
/**
 * Longer inputs are prepared every time and not cached: real addresses are far
 * shorter, and this bounds what the cache holds to about CACHE_MAX * 1 KiB of
 * keys and parts whatever addresses peers send.
 */
const CACHE_KEY_MAX = 256;
const cache = new Map<string, JID>();

/**
 * Parses and prepares a JID string (RFC 7622 §3.1): the resourcepart is
 * everything after the first '/', the localpart everything before the first '@'
 * that precedes it. Throws JidError naming what is wrong.
 */
export function parseJid(s: string): JID {
  if (typeof s !== 'string') throw new JidError('JID is empty');
  // Checked before the cache: hashing a long key would already read all of it.
  if (s.length > CACHE_KEY_MAX) {
    if (s.length > MAX_INPUT_CHARS) throw new JidError('JID is too long');
    return parseUncached(detach(s));
  }
  const hit = cache.get(s);
  if (hit !== undefined) return hit;
  // On a miss only: the key and the parts (slices of it, or new strings) must
  // not keep the caller's input alive.
  const key = detach(s);
  const jid = parseUncached(key);
  // Clearing when full keeps the bound with no bookkeeping per hit; the hot
  // addresses come back within a few messages.
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(key, jid);
  return jid;
}

function parseUncached(s: string): JID {
  if (s.length === 0) throw new JidError('JID is empty');
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

/**
 * Builds a JID from separate parts, preparing each; '' or undefined means absent. Throws JidError.
 * The parts are copied first: a session keeps its bound JID for its lifetime.
 */
export function makeJid(local: string, domain: string, resource?: string): JID {
  return fromPrepared(
    local === '' ? '' : prepLocal(detach(local)),
    prepDomain(detach(domain)),
    resource === undefined || resource === '' ? '' : prepResource(detach(resource)),
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
