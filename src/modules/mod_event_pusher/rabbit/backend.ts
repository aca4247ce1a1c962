// The RabbitMQ backend of mod_event_pusher (MongooseIM's
// mod_event_pusher_rabbit): presence changes and chat / groupchat messages
// with a body become JSON messages published to the configured exchanges.
// Payloads and routing keys are MongooseIM's:
//
//   presence   {"present":true|false,"user_id":"<full JID>"}          key <bare JID>
//   (group)chat {"from_user_id":"<JID>","message":"<body>","to_user_id":"<JID>"}
//              key <bare JID of the sender>.<sent_topic>    (direction "in")
//                  <bare JID of the recipient>.<recv_topic> (direction "out")
//
// (jiffy writes an Erlang map's keys in sorted order, hence the order here.)
// Unlike MongooseIM, every event goes through the durable outbox: a message a
// user sends is routed once its event is committed, and the event leaves the
// outbox once published (once confirmed by the broker with confirms_enabled).
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { fail } from '../../../config/schema.ts';
import type { Acc, Barrier, PushEvent } from '../../../hooks/catalogue.ts';
import type { OutgoingPools } from '../../../outgoing/types.ts';
import type { DurableQueue, EnqueueRefusal, OutboxAccess, SendResult } from '../delivery/types.ts';
import { DEFAULT_RETRY } from '../delivery/retry.ts';
import { configuredExchanges, RABBIT_POOL_TAG, type ExchangeOpts, type MsgExchangeOpts, type RabbitOpts } from './config.ts';
import { rabbitMetrics } from './metrics.ts';
import { encodeRabbitPayload } from './payload.ts';
import { C_CONN, C_PUB, CONN_KINDS, createRabbitSender, PUB_OUTCOMES, type RabbitSenderInit } from './sender.ts';

export interface RabbitBackendDeps {
  pools: OutgoingPools;
  logger: Logger;
  metrics: Registry;
  hosts: readonly string[];
  outbox: OutboxAccess;
}

/** Key of the backend's rows in the outbox. */
export const RABBIT_HANDLER_KEY = `rabbit:${RABBIT_POOL_TAG}`;

export function presenceMessage(jid: string, online: boolean): string {
  return `{"present":${online},"user_id":${JSON.stringify(jid)}}`;
}

export function chatMessage(from: string, to: string, body: string): string {
  return `{"from_user_id":${JSON.stringify(from)},"message":${JSON.stringify(body)},"to_user_id":${JSON.stringify(to)}}`;
}

export async function createRabbitBackend(deps: RabbitBackendDeps, opts: RabbitOpts) {
  const pool = deps.pools.rabbit(RABBIT_POOL_TAG);
  if (pool === undefined) {
    fail(opts.tomlPath, `needs the RabbitMQ pool [outgoing_pools.rabbit.${RABBIT_POOL_TAG}], which is not defined`);
  }
  const log = deps.logger;
  const metrics = rabbitMetrics(deps.metrics, pool.scope, RABBIT_POOL_TAG, deps.hosts);
  const exchanges: ExchangeOpts[] = configuredExchanges(opts);
  const conn = { up: false, failures: 0, lastLog: 0 };

  const onReport = (r: readonly (string | number)[]) => {
    for (let i = 0; i < r.length; ) {
      if (r[i] === C_CONN) {
        const kind = CONN_KINDS[r[i + 1] as number]!;
        const error = r[i + 2] as string;
        metrics.connection(kind);
        if (kind === 'opened') {
          conn.up = true;
          log.info({ what: 'rabbit_connection_established', pool_tag: RABBIT_POOL_TAG, host: pool.connection.host, port: pool.connection.port, failed_attempts: conn.failures },
            'connected to RabbitMQ');
          conn.failures = 0;
        } else if (kind === 'closed') {
          if (conn.up) log.warn({ what: 'rabbit_connection_closed', pool_tag: RABBIT_POOL_TAG, reason: error || undefined }, 'the RabbitMQ connection closed; events wait in the outbox until it is open again');
          conn.up = false;
        } else {
          conn.failures++;
          // The first failure, then one line every 30 s while it lasts.
          const now = Date.now();
          if (conn.failures === 1 || now - conn.lastLog >= 30_000) {
            conn.lastLog = now;
            log.warn({ what: 'rabbit_connection_failed', pool_tag: RABBIT_POOL_TAG, host: pool.connection.host, port: pool.connection.port, reason: error, failed_attempts: conn.failures, retry_in_ms: pool.connection.reconnect.delay },
              'could not connect to RabbitMQ; trying again');
          }
        }
        i += 3;
      } else if (r[i] === C_PUB) {
        metrics.published(r[i + 1] as string, PUB_OUTCOMES[r[i + 2] as number]!, r[i + 3] as number, r[i + 4] as number);
        i += 5;
      } else return;
    }
  };

  let failLogged = 0;
  const attempted = (item: { hostType: string; eventId: string }, r: SendResult) => {
    if (r.kind === 'delivered') return;
    const now = Date.now();
    if (now - failLogged < 1000 && r.kind === 'retry') return;
    failLogged = now;
    log.warn({ what: 'rabbit_message_sent_failed', pool_tag: RABBIT_POOL_TAG, host_type: item.hostType, event_id: item.eventId, reason: r.status, error: r.error },
      r.kind === 'retry' ? 'publishing to RabbitMQ failed; the event is tried again' : 'publishing to RabbitMQ failed for good; the event is dead-lettered');
  };

  const queue: DurableQueue = deps.outbox.handler(
    { backend: 'rabbit', index: 0, key: RABBIT_HANDLER_KEY, lane: RABBIT_HANDLER_KEY, concurrency: pool.workers, retry: DEFAULT_RETRY, logFields: { pool_tag: RABBIT_POOL_TAG } },
    {
      attempted: (item, r) => attempted(item, r),
      dropped: (hostType, eventId, reason) => {
        if (reason !== 'closed') return;
        log.warn({ what: 'rabbit_event_dropped', host_type: hostType, event_id: eventId, reason }, 'an event came while the server was stopping and was not kept');
      },
    },
  );
  const init: RabbitSenderInit = { poolTag: RABBIT_POOL_TAG, pool, exchanges };
  deps.outbox.sender('rabbit', {
    local: (report) => createRabbitSender(init, report),
    thread: { url: new URL('./sender.ts', import.meta.url).href, init },
    onReport,
  });

  /** The commit of the stored event, or the reason it was refused. */
  const store = (acc: Acc, exchange: string, key: string, body: string, owner: string): Promise<void> | EnqueueRefusal =>
    queue.enqueue(acc.hostType, randomUUID(), encodeRabbitPayload(exchange, key, body), owner);

  const chat = (x: MsgExchangeOpts | undefined, acc: Acc, event: Extract<PushEvent, { kind: 'chat' }>, barrier: Barrier): Barrier => {
    if (x === undefined) return barrier;
    const body = event.packet.getChild('body');
    // Messages without a body (chat states, markers) are not published, as in MongooseIM.
    if (body === undefined) return barrier;
    const key = event.direction === 'in' ? `${event.from.bare}.${x.sent_topic}` : `${event.to.bare}.${x.recv_topic}`;
    const stored = store(acc, x.name, key, chatMessage(event.from.full, event.to.full, body.text()), event.from.bare);
    if (typeof stored === 'string') {
      // The sender has used up its share of the outbox: a message it is sending is bounced (index.ts).
      if (stored === 'user_full' && event.direction === 'in') event.refused = stored;
      return barrier;
    }
    // Only a message a user sent can still be held.
    if (event.direction !== 'in') return barrier;
    return barrier === undefined ? stored : Promise.all([barrier, stored]);
  };

  return {
    handle(acc: Acc, event: PushEvent, barrier: Barrier): Barrier {
      if (event.kind === 'presence') {
        const x = opts.presence_exchange;
        if (x !== undefined) store(acc, x.name, event.jid.bare, presenceMessage(event.jid.full, event.status === 'online'), event.jid.bare);
        return barrier;
      }
      if (event.type === 'chat') return chat(opts.chat_msg_exchange, acc, event, barrier);
      if (event.type === 'groupchat') return chat(opts.groupchat_msg_exchange, acc, event, barrier);
      return barrier;
    },
    async close() {
      // The sender (and its connection) is closed by the delivery engine.
    },
  };
}
