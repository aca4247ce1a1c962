// XEP-0199 XMPP Ping. The server answers a ping addressed to it with an
// empty result (§4.2 "Client-to-Server Pings"). With send_pings it also
// pings clients (§4.3 "Server-to-Client Pings") that have sent nothing for
// ping_interval seconds, and a client that does not answer within
// ping_req_timeout seconds is, with timeout_action = "kill", disconnected as
// dead: a half-open TCP connection (a phone that lost its network) would
// otherwise keep a session that takes messages nobody receives. Its
// undelivered messages, and the ones sent to the user afterwards, go to
// another resource or to offline storage. Options and metrics are
// MongooseIM's (mod_ping).
import { Counter, type Registry } from 'prom-client';
import { bool, int, section, str } from '../config/schema.ts';
import type { HookRegistration } from '../hooks/hooks.ts';
import type { HookCatalogue } from '../hooks/catalogue.ts';
import { StanzaError } from '../xmpp/errors.ts';
import { NS_PING } from '../xmpp/ns.ts';
import { Element } from '../xmpp/xml.ts';
import type { ModuleDefinition, ModuleInstance } from './types.ts';

export interface PingOpts {
  send_pings: boolean;
  /** Seconds of silence from a client before it is pinged. */
  ping_interval: number;
  /** Seconds the server waits for the answer. */
  ping_req_timeout: number;
  timeout_action: 'none' | 'kill';
}

/** MongooseIM's metric names (events mod_ping_ping_response, mod_ping_ping_response_timeout). */
export const PING_RESPONSE = 'mod_ping_ping_response_count';
export const PING_RESPONSE_TIMEOUT = 'mod_ping_ping_response_timeout_count';

interface Pinged {
  /** When the client last sent anything (ms). */
  lastActive: number;
  /** The id of the ping waiting for its answer, and when it was sent; '' when none waits. */
  pendingId: string;
  sentAt: number;
}

function counter(registry: Registry, name: string, help: string): Counter<string> {
  return (registry.getSingleMetric(name) as Counter<string> | undefined) ?? new Counter({ name, help, labelNames: ['host_type'], registers: [registry] });
}

let pingCounter = 0;

export const definition: ModuleDefinition<PingOpts> = {
  name: 'mod_ping',
  configSpec: section(
    {
      send_pings: bool({ default: false }),
      ping_interval: int({ min: 1, default: 60 }),
      ping_req_timeout: int({ min: 1, default: 32 }),
      timeout_action: str({ oneOf: ['none', 'kill'], default: 'none' }),
    },
    { default: true },
  ),
  create(ctx, opts): ModuleInstance {
    // XEP-0199 §8: a supporting entity advertises the feature in disco#info.
    ctx.features.add(NS_PING);
    const iqHandlers = () => [
      {
        xmlns: NS_PING,
        scope: 'server' as const,
        // §4.2: the answer is an IQ result with no payload. A ping is
        // only ever a "get"; anything else does not fit the protocol.
        handler: (req: { type: string }) => {
          if (req.type !== 'get') throw new StanzaError('bad-request', 'modify');
          return undefined;
        },
      },
    ];
    // Declared whether or not the server pings, so that dashboards see the series (at zero) either way.
    const responses = counter(ctx.metrics, PING_RESPONSE, 'Answers to the server\'s pings');
    const timeouts = counter(ctx.metrics, PING_RESPONSE_TIMEOUT, 'Server pings left unanswered for ping_req_timeout');
    for (const h of ctx.hosts) {
      responses.inc({ host_type: h }, 0);
      timeouts.inc({ host_type: h }, 0);
    }
    if (!opts.send_pings) return { iqHandlers };
    const interval = opts.ping_interval * 1000;
    const timeout = opts.ping_req_timeout * 1000;
    /** Bound sessions by full JID. */
    const sessions = new Map<string, Pinged>();

    const onRegister = (p: HookCatalogue['sm_register_connection']) => {
      sessions.set(p.jid.full, { lastActive: Date.now(), pendingId: '', sentAt: 0 });
    };
    const onRemove = (p: HookCatalogue['sm_remove_connection']) => {
      sessions.delete(p.jid.full);
    };
    // Every stanza from the client shows the path works; the answer to a ping
    // (a result, or an error from a client without XEP-0199, §4.3) ends its wait.
    const onSend = (p: HookCatalogue['user_send_packet']) => {
      const e = sessions.get(p.from.full);
      if (e === undefined) return;
      e.lastActive = Date.now();
      if (e.pendingId !== '' && p.packet.name === 'iq' && p.packet.attrs.id === e.pendingId) {
        const type = p.packet.attrs.type;
        if (type === 'result' || type === 'error') {
          e.pendingId = '';
          responses.inc({ host_type: p.from.domain });
        }
      }
    };

    const sweep = () => {
      const now = Date.now();
      for (const [full, e] of sessions) {
        if (e.pendingId !== '') {
          if (now - e.sentAt < timeout) continue;
          const session = ctx.sessions.byFull(full);
          const domain = session?.jid.domain ?? full.slice(full.indexOf('@') + 1, full.indexOf('/'));
          timeouts.inc({ host_type: domain });
          ctx.logger.info({ what: 'ping_timeout', jid: full, ms: timeout, action: opts.timeout_action }, 'no answer to a ping');
          e.pendingId = '';
          e.lastActive = now;
          if (opts.timeout_action === 'kill') {
            sessions.delete(full);
            session?.disconnect(`no answer to a ping within ${opts.ping_req_timeout} s`);
          }
          continue;
        }
        if (now - e.lastActive < interval) continue;
        const session = ctx.sessions.byFull(full);
        if (session === undefined) {
          sessions.delete(full);
          continue;
        }
        const id = 'ping-' + (++pingCounter).toString(36);
        e.pendingId = id;
        e.sentAt = now;
        const iq = new Element('iq', { type: 'get', id, from: session.jid.domain, to: full });
        iq.c('ping', { xmlns: NS_PING });
        session.send(iq);
      }
    };
    // A quarter of the shorter period: a ping or a timeout is at most that late.
    const tick = Math.max(250, Math.min(interval, timeout) / 4);
    let timer: NodeJS.Timeout | null = null;

    const hooks: HookRegistration<any>[] = [
      { hook: 'sm_register_connection', host: '*', priority: 50, handler: onRegister, owner: 'mod_ping' },
      { hook: 'sm_remove_connection', host: '*', priority: 50, handler: onRemove, owner: 'mod_ping' },
      { hook: 'user_send_packet', host: '*', priority: 50, handler: onSend, owner: 'mod_ping' },
    ] satisfies [HookRegistration<'sm_register_connection'>, HookRegistration<'sm_remove_connection'>, HookRegistration<'user_send_packet'>];
    return {
      iqHandlers,
      hooks: () => hooks,
      start() {
        timer = setInterval(sweep, tick);
        timer.unref();
      },
      stop() {
        if (timer !== null) clearInterval(timer);
        timer = null;
      },
    };
  },
};
