// Offline message storage (XEP-0160 Best Practices for Handling Offline
// Messages; RFC 6121 §8.5.2.2.1). A chat or normal message to a local user
// with no available resource is kept, stamped with a XEP-0203 delay, and
// handed over when the user next sends available presence.
import { int, section, str } from '../config/schema.ts';
import { numericValue } from '../config/access.ts';
import { Counter, type Registry } from 'prom-client';
import { STOP, type HookRegistration } from '../hooks/hooks.ts';
import type { HookCatalogue } from '../hooks/catalogue.ts';
import { ElementParser, ParseElementError, parseElement } from '../xmpp/parse-element.ts';
import { NS_CHATSTATES, NS_DELAY, NS_HINTS, NS_MSGOFFLINE } from '../xmpp/ns.ts';
import { Element } from '../xmpp/xml.ts';
import { tryParseJid, type JID } from '../xmpp/jid.ts';
import type { Logger } from 'pino';
import type { ModuleData, ModuleDefinition, ModuleInstance } from './types.ts';
import { storeBackendSpec, type StoreBackend } from '../storage/select.ts';
import { OFFLINE_STORE, type OfflineMessage, type OfflineStore } from './mod_offline/store.ts';

export type { OfflineMessage, OfflineStore } from './mod_offline/store.ts';

export interface OfflineOpts {
  /** Messages kept per user; the next one is bounced with resource-constraint. */
  max_messages: number;
  /** Petrel: characters of stored stanzas (as stored) one user's store holds at most. */
  max_bytes: number;
  /** Name of the access rule giving each user's limit. */
  access_max_user_messages: string;
  /** Where messages are kept: "internal" (the embedded store) or "rdbms". */
  backend: StoreBackend;
}

/**
 * Code units of stored messages read back (parsed) or handed to a session
 * (written) in one turn of the event loop: past it, the hand-over lets other
 * work run (setImmediate) and waits for the session's connection to take
 * what it was given before giving it more. A message longer than this is
 * parsed a piece per turn; its write (serialisation included) is one turn
 * of its own.
 */
const OFFLINE_BATCH = 32_768;

/** The next turn of the event loop, once the I/O that waits now (other users' input and output) has run. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Runs before handlers that would otherwise bounce the message (MongooseIM's mod_offline uses 50 too). */
const PRIORITY = 50;
/** Users this node stored offline messages for lately, kept for a cluster's late hand-over (see onRemoteAvailable). */
const STORED_HERE_MAX = 10_000;
const STORED_HERE_MS = 60_000;

/**
 * Keys added within the last `ttlMs`, at most `max` of them (the oldest go
 * first): a bounded memory of recent events, whatever their rate.
 */
export class RecentSet {
  readonly #max: number;
  readonly #ttlMs: number;
  /** Insertion order is age order: a key added again moves to the end. */
  readonly #at = new Map<string, number>();

  constructor(max: number, ttlMs: number) {
    this.#max = max;
    this.#ttlMs = ttlMs;
  }

  add(key: string, now = Date.now()): void {
    this.#at.delete(key);
    this.#at.set(key, now);
    if (this.#at.size > this.#max) this.#at.delete(this.#at.keys().next().value!);
  }

  has(key: string, now = Date.now()): boolean {
    const t = this.#at.get(key);
    if (t === undefined) return false;
    if (now - t <= this.#ttlMs) return true;
    this.#at.delete(key);
    return false;
  }

  get size(): number {
    return this.#at.size;
  }
}

export type OfflineDecision = 'store' | 'drop' | 'skip';

/**
 * What to do with a message for a user who is offline:
 * - "skip": not ours to handle; RFC 6121 §8.5.2.2.1 leaves groupchat,
 *   headline and error messages out of offline storage, and other handlers
 *   (or the router's default) decide their fate.
 * - "drop": a chat or normal message with nothing worth keeping: a bare
 *   chat state notification (XEP-0085 business rules: not for offline storage),
 *   an empty message, or one carrying the XEP-0334 `<no-store/>` hint.
 * - "store": everything else of type chat or normal.
 */
export function offlineDecision(packet: Element): OfflineDecision {
  if (packet.name !== 'message') return 'skip';
  const type = packet.attrs.type ?? 'normal';
  if (type !== 'chat' && type !== 'normal') return 'skip';
  if (packet.getChild('no-store', NS_HINTS) !== undefined) return 'drop';
  if (packet.getChild('store', NS_HINTS) !== undefined) return 'store';
  if (packet.getChild('body') !== undefined) return 'store';
  // No body: keep it only if it carries something other than chat states
  // and the thread/hint bookkeeping that goes along with them.
  for (const child of packet.getChildren()) {
    const ns = child.attrs.xmlns;
    if (ns === NS_CHATSTATES || ns === NS_HINTS) continue;
    if (child.name === 'thread' || child.name === 'subject') continue;
    return 'store';
  }
  return 'drop';
}

/**
 * An ISO 8601 UTC timestamp in the XEP-0082 DateTime profile
 * ("2002-09-10T23:08:25.123Z"), as XEP-0203 §3 asks for `stamp`.
 */
export function delayStamp(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * A copy of `packet` with a XEP-0203 `<delay/>` saying the server `domain`
 * kept it since `ms`. Earlier delay elements added by others stay (§3 allows
 * several, one per entity that delayed it).
 */
export function withDelay(packet: Element, domain: string, ms: number): Element {
  // A shallow copy: the children are shared, not walked, so the cost does
  // not grow with the depth of the stanza and the original stays untouched.
  const copy = new Element(packet.name, packet.attrs, packet.children.slice());
  copy.c('delay', { xmlns: NS_DELAY, from: domain, stamp: delayStamp(ms) });
  return copy;
}

/** Messages mod_offline could not keep (a failed write), each bounced to its sender. Petrel's; MongooseIM has none. */
export const OFFLINE_STORE_FAILURES = 'petrel_mod_offline_store_failures_total';

function offlineFailures(registry: Registry, hosts: readonly string[]): Counter<string> {
  const c = (registry.getSingleMetric(OFFLINE_STORE_FAILURES) as Counter<string> | undefined)
    ?? new Counter({ name: OFFLINE_STORE_FAILURES, help: 'Offline messages that could not be stored and were bounced to their senders', labelNames: ['host_type'], registers: [registry] });
  for (const h of hosts) c.inc({ host_type: h }, 0);
  return c;
}

/**
 * Whether a store error means it is out of space or another resource, so that
 * "try again later" is the honest answer: SQLite's SQLITE_FULL (13), a file
 * system's ENOSPC or EDQUOT, PostgreSQL's class 53 (insufficient resources:
 * disk_full, out_of_memory, too_many_connections).
 */
export function isResourceShortage(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { errcode?: unknown; code?: unknown };
  if (e.errcode === 13) return true;
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return true;
  return typeof e.code === 'string' && /^53[0-9A-Z]{3}$/.test(e.code);
}

/** A stored message as the stanza and addresses to bounce it with; none when it cannot be read back. */
function bounceOf(m: OfflineMessage, to: JID, logger: Logger): Array<{ packet: Element; from: JID; to: JID }> {
  const from = tryParseJid(m.from);
  if (from === null) return [];
  try {
    return [{ packet: parseElement(m.xml), from, to }];
  } catch (err) {
    logger.error({ what: 'offline_message_unreadable', user: to.bare, err }, 'a stored offline message could not be parsed');
    return [];
  }
}

export interface OfflineData extends ModuleData {
  readonly store: OfflineStore;
}

/** Petrel's own (MongooseIM has no metric of mod_offline): messages stored, and refused because the user's store was full. */
function offlineMetrics(registry: Registry, hosts: readonly string[]): { stored: Counter; refused: Counter } {
  const make = (name: string, help: string) =>
    (registry.getSingleMetric(name) as Counter | undefined) ?? new Counter({ name, help, labelNames: ['host_type'], registers: [registry] });
  const stored = make('petrel_offline_messages_stored_total', 'messages stored for offline users');
  const refused = make('petrel_offline_messages_refused_total', 'messages for offline users bounced with resource-constraint: the user\'s offline store was full');
  for (const h of hosts) {
    // Exported once incremented: inc(0) makes the series exist from start-up.
    stored.labels({ host_type: h }).inc(0);
    refused.labels({ host_type: h }).inc(0);
  }
  return { stored, refused };
}

export const definition: ModuleDefinition<OfflineOpts, OfflineData> = {
  name: 'mod_offline',
  configSpec: section(
    {
      max_messages: int({ default: 100, min: 1 }),
      max_bytes: int({ default: 1_048_576, min: 1 }),
      // MongooseIM's: the access rule giving each user's limit; max_messages applies where it gives no number.
      access_max_user_messages: str({ nonEmpty: true, default: 'max_user_offline_messages' }),
      backend: storeBackendSpec(),
    },
    { default: true },
  ),
  async openData(stores, opts) {
    const store = await stores.open(OFFLINE_STORE, opts.backend, 'modules.mod_offline.backend');
    const onRemoved = (p: HookCatalogue['user_removed']) => {
      p.removals.push(store.removeUser(p.user, p.server));
    };
    const hooks = [
      { hook: 'user_removed', host: '*', priority: PRIORITY, handler: onRemoved, owner: 'mod_offline' },
    ] satisfies [HookRegistration<'user_removed'>];
    return { backend: opts.backend, store, hooks: () => hooks };
  },
  create(ctx, opts, data): ModuleInstance {
    const logger = ctx.logger;
    const store = data.store;
    // XEP-0160 §3: a server that stores messages offline says so in disco#info.
    ctx.features.add(NS_MSGOFFLINE);

    // One promise chain per user: stores, limit checks and hand-overs for the
    // same user run one after another, in arrival order, so the count seen by
    // the limit check is always the count the store will have, and a message
    // stored just before the user comes online is part of what is handed over.
    const chains = new Map<string, Promise<void>>();
    const enqueue = (key: string, job: () => Promise<void>): Promise<void> => {
      const prev = chains.get(key) ?? Promise.resolve();
      const next = prev.then(job).catch((err: unknown) => {
        logger.error({ what: 'offline_job_failed', user: key, err }, 'offline storage operation failed');
      });
      chains.set(key, next);
      void next.finally(() => {
        if (chains.get(key) === next) chains.delete(key);
      });
      return next;
    };

    const metrics = offlineMetrics(ctx.metrics, ctx.hosts);
    /** Users this node stored for lately (onRemoteAvailable). */
    const storedHere = new RecentSet(STORED_HERE_MAX, STORED_HERE_MS);

    /** MongooseIM's get_max_user_messages: the rule's number for the user, else max_messages (0 = no limit). */
    const limitFor = (user: string, domain: string): number =>
      ctx.access.has(opts.access_max_user_messages)
        ? numericValue(ctx.access.match(opts.access_max_user_messages, { local: user, domain, resource: '' }), opts.max_messages)
        : opts.max_messages;

    const onOfflineMessage = (p: HookCatalogue['offline_message']) => {
      const decision = offlineDecision(p.packet);
      if (decision === 'skip') return;
      if (decision === 'drop') return STOP;
      const { from, to, packet } = p;
      const user = to.local;
      const domain = to.domain;
      const stamped = withDelay(packet, domain, p.acc.timestamp);
      stamped.attrs.from = from.full;
      stamped.attrs.to = to.full;
      const xml = stamped.toString();
      const timestamp = p.acc.timestamp;
      // Known from now, while the write waits on the chain.
      storedHere.add(to.bare);
      const stored = enqueue(to.bare, async () => {
        try {
          const { count: n, chars } = await store.usage(user, domain);
          const limit = limitFor(user, domain);
          if ((limit > 0 && n >= limit) || chars + xml.length > opts.max_bytes) {
            metrics.refused.labels({ host_type: domain }).inc();
            logger.info({ what: 'offline_limit_reached', user: to.bare, count: n, chars }, 'offline storage full, message bounced');
            // RFC 6120 §8.3.3.18: the user's store is full for now; retry later.
            ctx.router.routeError(packet, from, to, 'resource-constraint', 'wait');
            return;
          }
          await store.store(user, domain, { xml, from: from.full, timestamp });
          metrics.stored.labels({ host_type: domain }).inc();
        } catch (err) {
          // Not kept: the sender is told, never left to believe it was.
          storeFailed(err, to.bare, [{ packet, from, to }]);
          return;
        }
        // Routing found no available session, but one may have become
        // available since (on another node, or here while routing waited)
        // and read the store before this write: it gets it now, in a job of
        // its own, so that the sender's wait (acc.hold) ends at the write,
        // whatever pace the recipient reads at.
        const online = ctx.sessions.byBare(to.bare).find((s) => s.available && s.priority >= 0);
        if (online !== undefined) void enqueue(to.bare, () => deliver(online.jid));
      });
      // Whoever waits for the message to be safe (acc.hold) waits for its write, or its bounce.
      p.acc.hold?.(stored);
      return STOP;
    };

    const failures = offlineFailures(ctx.metrics, ctx.hosts);
    /** A write to the store failed: each message it held bounces to its sender. */
    const storeFailed = (err: unknown, user: string, lost: Array<{ packet: Element; from: JID; to: JID }>): void => {
      const shortage = isResourceShortage(err);
      logger.error({ what: 'offline_store_failed', user, count: lost.length, err: String(err), shortage }, 'an offline message could not be stored; bounced to its sender');
      for (const { packet, from, to } of lost) {
        failures.inc({ host_type: to.domain });
        // RFC 6120 §8.3.3.18 for a store out of space (try later), §8.3.3.6 for any other failure.
        if (shortage) ctx.router.routeError(packet, from, to, 'resource-constraint', 'wait', 'the offline store is full');
        else ctx.router.routeError(packet, from, to, 'internal-server-error', 'wait', 'the offline store could not keep the message');
      }
    };

    /**
     * Puts back, for the next login, messages read from the store for a
     * session that ended before it was given them (oldest first, and nothing
     * else for the user is written meanwhile: this runs on the user's chain,
     * so the order stays). A bounded amount per turn, as for the hand-over;
     * what cannot be written back bounces to its sender.
     */
    const keep = async (jid: JID, rest: readonly OfflineMessage[]): Promise<void> => {
      let spent = 0;
      for (let i = 0; i < rest.length; i++) {
        const m = rest[i]!;
        if (spent > 0 && spent + m.xml.length > OFFLINE_BATCH) {
          await nextTurn();
          spent = 0;
        }
        try {
          await store.store(jid.local, jid.domain, m);
        } catch (err) {
          storeFailed(err, jid.bare, rest.slice(i).flatMap((r) => bounceOf(r, jid, logger)));
          return;
        }
        spent += m.xml.length;
      }
    };

    const deliver = async (jid: JID): Promise<void> => {
      // XEP-0160 §3: hand over to the first resource that comes online with
      // a non-negative priority; a negative one never receives messages
      // addressed to the bare JID (RFC 6121 §8.5.2.1.1).
      const session = ctx.sessions.byFull(jid.full);
      if (session === undefined || session.priority < 0) return;
      const messages = await store.popAll(jid.local, jid.domain);
      if (messages.length === 0) return;
      const target = ctx.sessions.byFull(jid.full);
      if (target === undefined) {
        // The session ended while the store answered: keep them for next time.
        await keep(jid, messages);
        return;
      }
      // Handed over a bounded amount per turn of the event loop: at most
      // OFFLINE_BATCH code units parsed or written (a message longer than
      // that is parsed a piece per turn and written in a turn of its own),
      // then other work runs (setImmediate: other users' I/O, even when the
      // connection took everything at once, as a socket's buffer does), and
      // the next message is written only once the connection has taken what
      // it was given. So however much is stored, and however costly it is to
      // read back, no turn is held for long; the client's output never holds
      // more than a batch (or one message), so a client that reads is never
      // dropped as a slow reader while it drains its store; and each message
      // is written once, in order.
      const ready = async (): Promise<boolean> =>
        (target.drained === undefined || (await target.drained())) && ctx.sessions.byFull(jid.full) === target;
      /** Code units parsed or written in this turn. */
      let spent = 0;
      /** A turn passed since the session was last seen ready: it may have ended meanwhile. */
      let yielded = false;
      const pause = async (): Promise<void> => {
        await nextTurn();
        spent = 0;
        yielded = true;
      };
      let delivered = 0;
      for (let i = 0; i < messages.length; i++) {
        const xml = messages[i]!.xml;
        const parser = new ElementParser();
        for (let at = 0; at < xml.length;) {
          if (spent >= OFFLINE_BATCH) await pause();
          const n = Math.min(xml.length - at, OFFLINE_BATCH - spent);
          parser.write(n === xml.length ? xml : xml.slice(at, at + n));
          at += n;
          spent += n;
        }
        const el = parser.close();
        if (el instanceof ParseElementError) {
          logger.error({ what: 'offline_message_unreadable', user: jid.bare, err: el }, 'a stored offline message could not be parsed');
          continue;
        }
        // Writing it costs about its length again: in a turn of its own if this one cannot take it.
        if (spent > 0 && spent + xml.length > OFFLINE_BATCH) await pause();
        if (yielded) {
          yielded = false;
          if (!(await ready())) {
            // The session ended: what it was not given is kept for next time.
            await keep(jid, messages.slice(i));
            logger.debug({ what: 'offline_delivery_interrupted', jid: jid.full, count: delivered, kept: messages.length - i }, 'the session ended during the offline hand-over');
            return;
          }
        }
        target.send(el, true);
        delivered++;
        spent += xml.length;
      }
      logger.debug({ what: 'offline_delivered', jid: jid.full, count: delivered }, 'offline messages delivered');
    };

    const onAvailable = (p: HookCatalogue['user_available']) => {
      const jid = p.jid;
      enqueue(jid.bare, () => deliver(jid));
    };

    // A cluster: a user coming online on another node has that node hand
    // over what the store holds; a message this node decided to store before
    // it learned of that session may be written after that hand-over read
    // the store. Those writes are on this user's chain here, so a hand-over
    // queued behind them, to that session, gets them now rather than at the
    // next login. Only for users this node stored for lately.
    const onRemoteAvailable = (p: HookCatalogue['remote_user_available']) => {
      const jid = p.jid;
      if (!storedHere.has(jid.bare)) return;
      enqueue(jid.bare, () => deliver(jid));
    };

    const hooks: HookRegistration<any>[] = [
      { hook: 'offline_message', host: '*', priority: PRIORITY, handler: onOfflineMessage, owner: 'mod_offline' },
      { hook: 'user_available', host: '*', priority: PRIORITY, handler: onAvailable, owner: 'mod_offline' },
      { hook: 'remote_user_available', host: '*', priority: PRIORITY, handler: onRemoteAvailable, owner: 'mod_offline' },
    ] satisfies [HookRegistration<'offline_message'>, HookRegistration<'user_available'>, HookRegistration<'remote_user_available'>];

    return {
      hooks: () => hooks,
      async stop() {
        // Let pending writes reach the store before it is closed.
        while (chains.size > 0) await Promise.allSettled([...chains.values()]);
      },
    };
  },
};
