// The push backend of mod_event_pusher (MongooseIM's mod_event_pusher_push,
// XEP-0357 Push Notifications), publishing to virtual pubsub hosts only:
// each notification becomes a MongoosePush request
// (mod_push_service_mongoosepush) stored in the outbox, so it is retried,
// dead-lettered and listed like every other event, never lost.
//
// - Enable / disable IQs (urn:xmpp:push:0) keep the account's registrations
//   in the backend's store (store.ts), at most max_registrations each.
// - A chat or groupchat message about to reach a user (push_event, direction
//   "out": MongooseIM's trigger) with a non-empty body, for a user with no
//   session at all (MongooseIM's ejabberd_sm:is_offline/1), is notified to
//   every registration of the recipient (plugin_defaults). only_offline and
//   only_with_body turn either condition off.
// - With mod_event_pusher_push_plugin_enhanced, a message handed to offline
//   storage (offline_message, before mod_offline) is notified too, although
//   the user still has sessions: the unacknowledged messages of a stream that
//   was not resumed take that path. Each stanza is notified once
//   (MongooseIM's published_services in the accumulator).
// - A 410 from MongoosePush (device not registered) removes the
//   registration, as MongooseIM's disable_node does.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { fail } from '../../../config/schema.ts';
import type { PetrelConfig } from '../../../config/types.ts';
import { checkStoreBackend } from '../../../storage/select.ts';
import type { HookRegistration } from '../../../hooks/hooks.ts';
import type { Acc, ChatEvent } from '../../../hooks/catalogue.ts';
import { httpPoolOrigin } from '../../../outgoing/http.ts';
import type { IqHandlerSpec, IqRequest, SessionsApi } from '../../../routing/types.ts';
import { StanzaError } from '../../../xmpp/errors.ts';
import type { JID } from '../../../xmpp/jid.ts';
import { NS_PUSH } from '../../../xmpp/ns.ts';
import type { Element } from '../../../xmpp/xml.ts';
import { NAME as MONGOOSEPUSH, type MongoosePushOpts } from '../../mod_push_service_mongoosepush/config.ts';
import { buildNotification, type Summary } from '../../mod_push_service_mongoosepush/notification.ts';
import { createMongoosePushSender, encodeRequest, type MongoosePushSenderInit } from '../../mod_push_service_mongoosepush/sender.ts';
import type { BackendContext, BackendInstance } from '../backends.ts';
import type { DurableQueue } from '../delivery/types.ts';
import { isVirtualPubsubHost, PLUGIN_ENHANCED, type PushOpts } from './config.ts';
import { pushMetrics, type PushMetrics } from './metrics.ts';
import { parsePushRequest } from './request.ts';
import type { PushStore, Registration } from './store.ts';

/** Before mod_offline (50), which stops the hook once it stored the message. */
const PRIO_OFFLINE = 40;

/** The outbox key of the MongoosePush handler. */
export function pushHandlerKey(mp: MongoosePushOpts): string {
  return `push:mongoosepush:${mp.pool_name}`;
}

/**
 * The stored event's id: a digest unique to (stanza, registration), then the
 * registration itself, so that the answer to any attempt (a 410 from any
 * thread, after any restart) names what to disable.
 */
export function pushEventId(ref: string, to: JID, reg: Registration): string {
  const who = JSON.stringify([to.local, to.domain, reg.pubsub, reg.node, reg.form.device_id ?? '']);
  const digest = createHash('sha256').update(ref).update('\0').update(who).digest('base64url').slice(0, 22);
  return `${digest}.${Buffer.from(who, 'utf8').toString('base64url')}`;
}

export function registrationOfEventId(id: string): { user: string; domain: string; pubsub: string; node: string; deviceId: string } | undefined {
  const dot = id.indexOf('.');
  if (dot < 0) return undefined;
  try {
    const v = JSON.parse(Buffer.from(id.slice(dot + 1), 'base64url').toString('utf8')) as unknown;
    if (!Array.isArray(v) || v.length !== 5 || !v.every((x) => typeof x === 'string')) return undefined;
    return { user: v[0], domain: v[1], pubsub: v[2], node: v[3], deviceId: v[4] };
  } catch {
    return undefined;
  }
}

/** At most one log line a second per `what`, with the number kept quiet since. */
function rateLimitedLog(log: Logger): (what: string, fields: Record<string, unknown>, msg: string) => void {
  const last = new Map<string, { at: number; quiet: number }>();
  return (what, fields, msg) => {
    const now = Date.now();
    const s = last.get(what) ?? { at: 0, quiet: 0 };
    last.set(what, s);
    if (now - s.at < 1000) {
      s.quiet++;
      return;
    }
    log.warn({ what, ...fields, ...(s.quiet > 0 ? { suppressed: s.quiet } : {}) }, msg);
    s.at = now;
    s.quiet = 0;
  };
}

/**
 * What the backend needs elsewhere: its store's pool, mod_push_service_mongoosepush
 * when there are virtual pubsub hosts, and that module's HTTP pool.
 */
export function checkPush(opts: PushOpts, config: PetrelConfig): void {
  checkStoreBackend(config, opts.backend, `${opts.tomlPath}.backend`);
  const mp = config.modules[MONGOOSEPUSH] as MongoosePushOpts | undefined;
  if (opts.virtual_pubsub_hosts.length > 0 && mp === undefined) {
    fail(`${opts.tomlPath}.virtual_pubsub_hosts`, `notifications to the virtual pubsub hosts are sent to MongoosePush: configure [modules.${MONGOOSEPUSH}] (pool_name = "...")`);
  }
  if (mp !== undefined && config.outgoing_pools.http?.[mp.pool_name] === undefined) {
    fail(`modules.${MONGOOSEPUSH}.pool_name`, `no outgoing pool ${JSON.stringify(mp.pool_name)} (define [outgoing_pools.http.${mp.pool_name}])`);
  }
}

export interface PushData {
  store: PushStore;
}

export function createPushBackend(ctx: BackendContext, opts: PushOpts): BackendInstance {
  const log = ctx.logger.child({ backend: 'push' });
  const warn = rateLimitedLog(log);
  const data = ctx.data as PushData | undefined;
  if (data === undefined) throw new Error('the push backend was created without its store');
  const store = data.store;
  const sessions: SessionsApi = ctx.sessions;
  const metrics: PushMetrics = pushMetrics(ctx.metrics, ctx.hosts);
  checkPush(opts, ctx.config);
  const mp = ctx.config.modules[MONGOOSEPUSH] as MongoosePushOpts | undefined;

  let queue: DurableQueue | null = null;
  if (mp !== undefined) {
    const pool = ctx.pools.http(mp.pool_name);
    if (pool === undefined) fail(`modules.${MONGOOSEPUSH}.pool_name`, `no outgoing pool ${JSON.stringify(mp.pool_name)} (define [outgoing_pools.http.${mp.pool_name}])`);
    const url = pool.url(`${mp.api_version}/notification/`);
    queue = ctx.outbox.handler(
      {
        backend: 'push', index: 0, key: pushHandlerKey(mp), lane: `mongoosepush:${mp.pool_name}`,
        concurrency: mp.max_http_connections > 0 ? mp.max_http_connections : Math.max(1, pool.workers),
        retry: mp.retry, logFields: { url },
      },
      {
        attempted: (item, r, report) => {
          if (r.kind === 'delivered') return metrics.notification(item.hostType, 'delivered');
          if (r.kind === 'gone') return deviceGone(item.hostType, item.eventId);
          metrics.notification(item.hostType, r.kind === 'retry' && report.deadLettered === undefined ? 'retried' : 'failed');
          warn('push_send_failed', { host_type: item.hostType, event_id: item.eventId, status: r.status, error: r.error, attempt: report.attempt,
            ...(report.nextAttemptInMs !== undefined ? { next_attempt_in_ms: report.nextAttemptInMs } : {}),
            ...(report.deadLettered !== undefined ? { dead_lettered: report.deadLettered } : {}) },
          'MongoosePush did not take a push notification');
        },
        dropped: (hostType, eventId, reason) => {
          metrics.notification(hostType, 'dropped');
          if (reason === 'closed') warn('push_dropped', { host_type: hostType, event_id: eventId, reason }, 'push notification not stored: the server is stopping');
        },
      },
    );
    const origin = httpPoolOrigin(pool);
    const init: MongoosePushSenderInit | undefined = origin === undefined ? undefined : { poolTag: origin.tag, poolConfig: origin.cfg };
    ctx.outbox.sender('push', {
      local: () => createMongoosePushSender(pool),
      thread: init === undefined ? undefined : { url: new URL('../../mod_push_service_mongoosepush/sender.ts', import.meta.url).href, init },
    });
  }

  const deviceGone = (hostType: string, eventId: string) => {
    metrics.notification(hostType, 'device_not_registered');
    const reg = registrationOfEventId(eventId);
    if (reg === undefined) return;
    // Only while the node still names that device: a client that enabled it again with a new token keeps it.
    store.list(reg.user, reg.domain).then(
      (regs) => {
        const same = regs.some((r) => r.pubsub === reg.pubsub && r.node === reg.node && (r.form.device_id ?? '') === reg.deviceId);
        return same ? store.disable(reg.user, reg.domain, reg.pubsub, reg.node) : 0;
      },
    ).then(
      (n) => {
        if (n > 0) metrics.disabled(hostType, 'device_not_registered');
        log.warn({ what: 'push_registration_disabled', host_type: hostType, user: `${reg.user}@${reg.domain}`, pubsub: reg.pubsub, node: reg.node,
          reason: 'device_not_registered', removed: n }, 'MongoosePush answered 410: the device is not registered; its push registration is removed');
      },
      (err: unknown) => log.error({ what: 'push_disable_failed', err: String(err) }, 'could not remove a push registration'),
    );
  };

  /** Stanzas already notified (MongooseIM: published_services in the accumulator). */
  const notified = new WeakSet<Acc>();

  const publish = (acc: Acc, from: JID, to: JID, packet: Element, body: string, reg: Registration) => {
    const hostType = to.domain;
    const pubsub = reg.pubsub;
    const at = pubsub.lastIndexOf('@');
    if (queue === null || mp === undefined || !isVirtualPubsubHost(opts, to.domain, at < 0 ? pubsub : pubsub.slice(at + 1))) {
      // Enabled under a configuration that had this host; it is not served now.
      metrics.notification(hostType, 'unreachable');
      return warn('push_service_unreachable', { pubsub, node: reg.node }, 'a push registration names a pubsub service that is not a virtual pubsub host; nothing sent');
    }
    const summary: Summary = {
      'message-count': '1',
      // MongooseIM's sender_id/2: the bare JID for chat, the full (room occupant) JID for groupchat.
      'last-message-sender': packet.attrs.type === 'groupchat' ? from.full : from.bare,
      'last-message-body': body,
    };
    const built = buildNotification(mp.api_version, summary, reg.form);
    if (!built.ok) {
      metrics.notification(hostType, 'invalid');
      return warn('make_notification_failed', { user: to.bare, pubsub, node: reg.node, error: built.error }, 'push notification not made');
    }
    const r = queue.enqueue(hostType, pushEventId(acc.ref, to, reg), encodeRequest(built.path, built.body));
    if (r !== undefined) metrics.notification(hostType, 'queued');
  };

  /** Starts the notifications of one stanza; nothing waits for them. */
  const notify = (acc: Acc, from: JID, to: JID, packet: Element, goingOffline: boolean) => {
    if (notified.has(acc)) return;
    const type = packet.attrs.type;
    if (type !== 'chat' && type !== 'groupchat') return;
    const bodyEl = packet.getChild('body');
    const body = bodyEl?.text() ?? '';
    // MongooseIM: no <body/>, or an empty one, is no notification.
    if (opts.only_with_body && body === '') return;
    if (opts.only_offline && !goingOffline && sessions.byBare(to.bare).length > 0) return;
    notified.add(acc);
    const bare = to.bareJid();
    store.list(bare.local, bare.domain).then(
      (regs) => {
        for (const reg of regs) publish(acc, from, bare, packet, body, reg);
      },
      (err: unknown) => log.error({ what: 'push_lookup_failed', user: bare.bare, err: String(err) }, 'could not read the push registrations'),
    );
  };

  const onIq = async (req: IqRequest): Promise<undefined> => {
    const hostType = req.from.domain;
    if (req.to.local !== '' && req.to.bare !== req.from.bare) {
      metrics.request(hostType, 'refused');
      throw new StanzaError('forbidden', 'auth', 'push notifications are enabled for one\'s own account only');
    }
    // MongooseIM answers a get with not-allowed.
    if (req.type === 'get') throw new StanzaError('not-allowed', 'cancel');
    const r = parsePushRequest(req.payload);
    const user = req.from.bareJid();
    if (r.kind === 'bad_request') {
      metrics.request(hostType, 'bad_request');
      throw new StanzaError('bad-request', 'modify', r.text);
    }
    if (r.kind === 'disable') {
      await store.disable(user.local, user.domain, r.pubsub.bare, r.node);
      metrics.request(hostType, 'disabled');
      return undefined;
    }
    if (!isVirtualPubsubHost(opts, user.domain, r.pubsub.domain)) {
      metrics.request(hostType, 'refused');
      // A real pubsub service elsewhere would be reached over server-to-server, which Petrel does not have.
      throw new StanzaError('feature-not-implemented', 'cancel',
        `${r.pubsub.domain} is not one of this server's virtual pubsub hosts (virtual_pubsub_hosts); publishing to another pubsub service needs server-to-server, which this server does not have`);
    }
    const size = Buffer.byteLength(r.node) + Buffer.byteLength(JSON.stringify(r.form));
    if (size > opts.max_registration_size) {
      metrics.request(hostType, 'limit');
      throw new StanzaError('not-acceptable', 'modify', `the node and publish-options take ${size} bytes; at most ${opts.max_registration_size} are kept (max_registration_size)`);
    }
    const res = await store.enable(user.local, user.domain, { pubsub: r.pubsub.bare, node: r.node, form: r.form }, opts.max_registrations);
    if (res === 'limit') {
      metrics.request(hostType, 'limit');
      throw new StanzaError('resource-constraint', 'cancel', `an account keeps at most ${opts.max_registrations} push registrations (max_registrations); disable one first`);
    }
    metrics.request(hostType, 'enabled');
    return undefined;
  };

  ctx.features.add(NS_PUSH);
  const hooks: HookRegistration<any>[] = [];
  if (opts.plugin_module === PLUGIN_ENHANCED) {
    hooks.push({
      hook: 'offline_message', host: '*', priority: PRIO_OFFLINE, owner: 'mod_event_pusher',
      handler: (p) => notify(p.acc, p.from, p.to, p.packet, true),
    } satisfies HookRegistration<'offline_message'>);
  }

  return {
    handle(acc, event, barrier) {
      // MongooseIM's trigger: a chat or groupchat message on its way to the recipient.
      if (event.kind === 'chat' && event.direction === 'out') {
        const e: ChatEvent = event;
        notify(acc, e.from, e.to, e.packet, false);
      }
      // Never holds the message: notifications start once it is on its way.
      return barrier;
    },
    hooks: () => hooks,
    iqHandlers: (): IqHandlerSpec[] => [
      { xmlns: NS_PUSH, scope: 'user', handler: onIq },
      { xmlns: NS_PUSH, scope: 'server', handler: onIq },
    ],
    async close() {},
  };
}
