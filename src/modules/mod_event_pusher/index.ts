// mod_event_pusher: turns hooks into events and runs the push_event hook, to
// which every configured backend is attached (MongooseIM's
// mod_event_pusher + mod_event_pusher_hook_translator). The backends come
// from the registry in backends.ts (http today); the module owns their
// common outbox (outbox_backend) and delivery engine (delivery/), and says
// where the senders run (sender_thread).
//
//   user_send_message   (a user sent a message)           → chat event, dir "in"
//   filter_local_packet (a message about to reach a user) → chat event, dir "out"
//   user_available / unset_presence                       → presence event online / offline
//
// Only <message/> stanzas of type chat, groupchat, headline or normal (no
// type means normal, RFC 6121 §5.2.2) become chat events; error messages do not.
import { Element } from '../../xmpp/xml.ts';
import { STOP, type HookRegistration } from '../../hooks/hooks.ts';
import type { Acc, Barrier, ChatEvent, PushEvent } from '../../hooks/catalogue.ts';
import type { JID } from '../../xmpp/jid.ts';
import type { IqHandlerSpec, ModuleContext, ModuleData, ModuleDefinition, ModuleInstance } from '../types.ts';
import type { StoreAccess } from '../../storage/types.ts';
import type { ConfigError } from '../../config/schema.ts';
import { join } from 'node:path';
import type { PetrelConfig } from '../../config/types.ts';
import { SQLITE_FILE } from '../../storage/index.ts';
import { checkStoreBackend, rdbmsPool } from '../../storage/select.ts';
import { ensurePrivateDir, ensurePrivateFile } from '../../storage/data-dir.ts';
import { openSqliteOutbox } from '../../storage/outbox/sqlite.ts';
import { openPostgresOutbox } from '../../storage/outbox/postgres.ts';
import type { OutboxStore } from '../../storage/outbox/types.ts';
import type { PgPoolSettings } from '../../storage/postgres.ts';
import { BACKENDS, type BackendData, type BackendInstance } from './backends.ts';
import {
  DEFAULT_BEST_EFFORT_MAX_BYTES, DEFAULT_OUTBOX_MAX_BYTES, DEFAULT_OUTBOX_MAX_BYTES_PER_USER, DEFAULT_OUTBOX_MAX_EVENTS, DEFAULT_OUTBOX_MAX_EVENTS_PER_USER,
  DEFAULT_HIGH_WATER_FRACTION, DEFAULT_LOW_WATER_FRACTION, DEFAULT_SENDER_THREAD, eventPusherSpec, type EventPusherOpts,
} from './config.ts';
import { createDeliveryEngine } from './delivery/outbox.ts';
import { createFlowControl } from './delivery/flow.ts';
import { deliveryMetrics } from './delivery/metrics.ts';
import type { Logger } from 'pino';

export type { EventPusherOpts, HandlerOpts } from './config.ts';

const NAME = 'mod_event_pusher';

/** Priorities of MongooseIM's translator (80, 90) and backends (50). */
const PRIO_FILTER_LOCAL = 80;
const PRIO_TRANSLATOR = 90;
const PRIO_BACKEND = 50;

/** The chat type of a message, or undefined when it is not a chat event. */
const CHAT_TYPES: Readonly<Record<string, string>> = { chat: 'chat', groupchat: 'groupchat', headline: 'headline', normal: 'normal' };

export function chatType(packet: Element): string | undefined {
  if (packet.name !== 'message') return undefined;
  const t = packet.attrs.type;
  if (t === undefined) return 'normal';
  return Object.hasOwn(CHAT_TYPES, t) ? CHAT_TYPES[t] : undefined;
}

/** The PostgreSQL settings of the outbox; a ConfigError naming the option when the pool is missing. */
function outboxPgSettings(config: PetrelConfig): PgPoolSettings {
  checkStoreBackend(config, 'rdbms', 'modules.mod_event_pusher.outbox_backend');
  return rdbmsPool(config);
}

/** Opens the module's outbox in its configured store (its own connections). */
function outboxOpener(config: PetrelConfig, opts: EventPusherOpts, logger: Logger): { open(): Promise<OutboxStore>; pg?: PgPoolSettings } {
  const batch = { maxRows: opts.outbox_batch_max_rows, maxBytes: opts.outbox_batch_max_bytes, maxRowsPerOwner: opts.outbox_batch_max_rows_per_user };
  const onWarning = (what: string, message: string) => logger.warn({ what }, message);
  if (opts.outbox_backend === 'rdbms') {
    const pg = outboxPgSettings(config);
    return { pg, open: () => openPostgresOutbox(pg, { ...batch, onWarning, ownerTimeoutMs: opts.outbox_owner_timeout }) };
  }
  // The instance's own store file, written by its own thread; made private
  // first, since that thread's connection may be the one that creates it.
  const file = join(config.general.data_dir, SQLITE_FILE);
  return {
    open: () => {
      ensurePrivateDir(config.general.data_dir);
      ensurePrivateFile(file);
      return openSqliteOutbox(file, { ...batch, onWarning });
    },
  };
}

/** The data mod_event_pusher's backends keep (push: the XEP-0357 registrations), by backend name. */
export interface EventPusherData extends ModuleData {
  readonly backends: ReadonlyMap<string, BackendData>;
}

/** Opens the data of the configured backends that keep some; undefined when none does. */
export async function openEventPusherData(stores: StoreAccess, opts: EventPusherOpts): Promise<EventPusherData | undefined> {
  const backends = new Map<string, BackendData>();
  for (const [name, o] of Object.entries(opts.backends)) {
    const d = await BACKENDS[name]?.openData?.(stores, o);
    if (d !== undefined) backends.set(name, d);
  }
  if (backends.size === 0) return undefined;
  const first = [...backends.values()][0]!;
  return { backend: first.backend, backends, hooks: () => [...backends.values()].flatMap((d) => d.hooks()) };
}

export async function createEventPusher(ctx: ModuleContext, opts: EventPusherOpts, data?: EventPusherData): Promise<ModuleInstance & { backends: ReadonlyMap<string, BackendInstance> }> {
  const logger = ctx.logger.child({ module: NAME });
  const store = opts.outbox_backend === 'rdbms' ? outboxOpener(ctx.config, opts, logger) : undefined;
  const maxBytes = opts.outbox_max_bytes ?? DEFAULT_OUTBOX_MAX_BYTES;
  const perUser = {
    maxEvents: opts.outbox_max_events_per_user ?? DEFAULT_OUTBOX_MAX_EVENTS_PER_USER,
    maxBytes: opts.outbox_max_bytes_per_user ?? DEFAULT_OUTBOX_MAX_BYTES_PER_USER,
  };
  const highBytes = opts.outbox_high_water_bytes ?? Math.floor(maxBytes * DEFAULT_HIGH_WATER_FRACTION);
  const sessions = ctx.sessions;
  const flow = createFlowControl({
    highBytes,
    lowBytes: opts.outbox_low_water_bytes ?? Math.floor(highBytes * DEFAULT_LOW_WATER_FRACTION),
    maxBytes,
    maxEvents: opts.outbox_max_events ?? DEFAULT_OUTBOX_MAX_EVENTS,
    perUser,
    logger,
    registry: ctx.metrics,
    // The events' owner is a sender on this node: its sessions are here.
    throttle: (owner, on) => {
      for (const s of sessions.byBare(owner)) s.throttle?.(on);
    },
  });
  const engine = createDeliveryEngine({
    open: () => (store ?? outboxOpener(ctx.config, opts, logger)).open(),
    pgSettings: store?.pg,
    pgOwnerTimeoutMs: opts.outbox_owner_timeout,
    senderThread: opts.sender_thread ?? DEFAULT_SENDER_THREAD,
    batch: { maxRows: opts.outbox_batch_max_rows, maxBytes: opts.outbox_batch_max_bytes, maxRowsPerOwner: opts.outbox_batch_max_rows_per_user },
    logger,
    metrics: deliveryMetrics(ctx.metrics),
    maxEvents: opts.outbox_max_events ?? DEFAULT_OUTBOX_MAX_EVENTS,
    maxBytes,
    perUser,
    flow,
  });
  const backends = new Map<string, BackendInstance>();
  try {
    for (const [name, o] of Object.entries(opts.backends)) {
      const def = BACKENDS[name];
      if (def === undefined) throw new Error(`mod_event_pusher has no ${name} backend`);
      def.metrics(ctx.metrics, ctx.hosts);
      backends.set(name, await def.create({
        pools: ctx.pools, configDir: ctx.config.configDir, logger, metrics: ctx.metrics, hosts: ctx.hosts, outbox: engine,
        config: ctx.config, sessions: ctx.sessions, features: ctx.features, data: data?.backends.get(name)?.value,
        bestEffortMaxBytes: opts.best_effort_max_bytes ?? DEFAULT_BEST_EFFORT_MAX_BYTES,
      }, o));
    }
    await engine.start();
  } catch (err) {
    for (const b of backends.values()) await b.close().catch(() => {});
    await engine.close(0).catch(() => {});
    throw err;
  }
  const hooks = ctx.hooks;

  /** Runs push_event; returns what the stanza must wait for (the backends' durable writes). */
  const push = (acc: Acc, event: PushEvent, barrier: Barrier): Barrier => {
    const r = hooks.fold('push_event', acc.hostType, { acc, event }, barrier);
    // A handler that stops the event stops it for the later backends only.
    return r === STOP ? barrier : r;
  };

  const presence = (jid: JID, status: 'online' | 'offline') => {
    const el = new Element('presence', status === 'offline' ? { type: 'unavailable' } : undefined);
    push(ctx.router.newAcc(jid, jid, el), { kind: 'presence', jid, status }, undefined);
  };

  const regs: HookRegistration<any>[] = [
    {
      hook: 'user_send_message',
      host: '*',
      priority: PRIO_TRANSLATOR,
      owner: NAME,
      handler: (p, barrier) => {
        const type = chatType(p.packet);
        if (type === undefined) return barrier;
        const event: ChatEvent = { kind: 'chat', direction: 'in', from: p.from, to: p.to, type, packet: p.packet };
        const r = push(p.acc, event, barrier);
        if (event.refused === undefined) return r;
        // The sender's share of the event queue is used up: the message is
        // not routed without its event, and the sender is told, as when
        // offline storage is full (RFC 6120 §8.3.3.18).
        ctx.router.routeError(p.packet, p.from, p.to, 'resource-constraint', 'wait', 'the event queue is full for this sender: the message was not sent; try again later');
        return STOP;
      },
    } satisfies HookRegistration<'user_send_message'>,
    {
      hook: 'filter_local_packet',
      host: '*',
      priority: PRIO_FILTER_LOCAL,
      owner: NAME,
      handler: (p) => {
        const type = chatType(p.packet);
        // Nothing waits for the "out" direction: the message is already on its way.
        if (type !== undefined) push(p.acc, { kind: 'chat', direction: 'out', from: p.from, to: p.to, type, packet: p.packet }, undefined);
      },
    } satisfies HookRegistration<'filter_local_packet'>,
    {
      hook: 'user_available',
      host: '*',
      priority: PRIO_TRANSLATOR,
      owner: NAME,
      handler: (p) => presence(p.jid, 'online'),
    } satisfies HookRegistration<'user_available'>,
    {
      hook: 'unset_presence',
      host: '*',
      priority: PRIO_TRANSLATOR,
      owner: NAME,
      handler: (p) => presence(p.jid, 'offline'),
    } satisfies HookRegistration<'unset_presence'>,
  ];
  const iqs: IqHandlerSpec[] = [];
  for (const b of backends.values()) {
    for (const r of b.hooks?.() ?? []) regs.push(r);
    for (const q of b.iqHandlers?.() ?? []) iqs.push(q);
    regs.push({
      hook: 'push_event',
      host: '*',
      priority: PRIO_BACKEND,
      owner: NAME,
      handler: (p, barrier) => b.handle(p.acc, p.event, barrier),
    } satisfies HookRegistration<'push_event'>);
  }

  return {
    backends,
    hooks: () => regs,
    iqHandlers: () => iqs,
    async stop() {
      for (const b of backends.values()) await b.close();
      await engine.close();
    },
  };
}

export const definition: ModuleDefinition<EventPusherOpts, EventPusherData | undefined> = {
  name: NAME,
  configSpec: eventPusherSpec,
  crossCheck(opts, config) {
    for (const [name, o] of Object.entries(opts.backends)) BACKENDS[name]?.crossCheck?.(o, config);
  },
  openData: openEventPusherData,
  create: createEventPusher,
  async check(opts, ctx) {
    const errors: ConfigError[] = [];
    for (const [name, o] of Object.entries(opts.backends)) {
      const def = BACKENDS[name];
      if (def?.check !== undefined) errors.push(...(await def.check(o, ctx)));
    }
    return errors;
  },
};
