// mod_event_pusher: turns hooks into events and runs the push_event hook, to
// which every configured backend is attached (MongooseIM's
// mod_event_pusher + mod_event_pusher_hook_translator). Petrel has one
// backend, http.
//
//   user_send_message   (a user sent a message)           → chat event, dir "in"
//   filter_local_packet (a message about to reach a user) → chat event, dir "out"
//   user_available / unset_presence                       → presence event online / offline
//
// Only <message/> stanzas of type chat, groupchat, headline or normal (no
// type means normal, RFC 6121 §5.2.2) become chat events; error messages do not.
import { Element } from '../../xmpp/xml.ts';
import type { HookRegistration } from '../../hooks/hooks.ts';
import type { Acc, PushEvent } from '../../hooks/catalogue.ts';
import type { JID } from '../../xmpp/jid.ts';
import type { ModuleContext, ModuleDefinition, ModuleInstance } from '../types.ts';
import { join } from 'node:path';
import { SQLITE_FILE } from '../../storage/index.ts';
import { openSqliteOutbox } from '../../storage/outbox-sqlite.ts';
import { eventPusherSpec, type EventPusherOpts } from './config.ts';
import { createHttpBackend, type HttpBackend } from './http/backend.ts';

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

export async function createEventPusher(ctx: ModuleContext, opts: EventPusherOpts): Promise<ModuleInstance & { http?: HttpBackend }> {
  const logger = ctx.logger.child({ module: NAME });
  const http =
    opts.handlers.length > 0
      ? await createHttpBackend(
          {
            pools: ctx.pools,
            configDir: ctx.config.configDir,
            logger,
            metrics: ctx.metrics,
            hosts: ctx.hosts,
            // The configured store (modules.mod_event_pusher.outbox_backend); by default the
            // instance's own store file, written by its own thread.
            openOutbox: ctx.openOutbox ?? (() => openSqliteOutbox(join(ctx.config.general.data_dir, SQLITE_FILE))),
            outboxMaxEvents: opts.outbox_max_events,
          },
          opts.handlers,
        )
      : undefined;
  const hooks = ctx.hooks;

  const push = (acc: Acc, event: PushEvent) => {
    hooks.run('push_event', acc.hostType, { acc, event });
  };

  const presence = (jid: JID, status: 'online' | 'offline') => {
    const el = new Element('presence', status === 'offline' ? { type: 'unavailable' } : undefined);
    push(ctx.router.newAcc(jid, jid, el), { kind: 'presence', jid, status });
  };

  const regs: HookRegistration<any>[] = [
    {
      hook: 'user_send_message',
      host: '*',
      priority: PRIO_TRANSLATOR,
      owner: NAME,
      handler: (p: { acc: Acc; from: JID; to: JID; packet: Element }) => {
        const type = chatType(p.packet);
        if (type !== undefined) push(p.acc, { kind: 'chat', direction: 'in', from: p.from, to: p.to, type, packet: p.packet });
      },
    } satisfies HookRegistration<'user_send_message'>,
    {
      hook: 'filter_local_packet',
      host: '*',
      priority: PRIO_FILTER_LOCAL,
      owner: NAME,
      handler: (p) => {
        const type = chatType(p.packet);
        if (type !== undefined) push(p.acc, { kind: 'chat', direction: 'out', from: p.from, to: p.to, type, packet: p.packet });
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
  if (http !== undefined) {
    regs.push({
      hook: 'push_event',
      host: '*',
      priority: PRIO_BACKEND,
      owner: NAME,
      handler: (p) => http.handle(p.acc, p.event),
    } satisfies HookRegistration<'push_event'>);
  }

  return {
    http,
    hooks: () => regs,
    async stop() {
      await http?.close();
    },
  };
}

export const definition: ModuleDefinition<EventPusherOpts> = {
  name: NAME,
  configSpec: eventPusherSpec,
  create: createEventPusher,
};
