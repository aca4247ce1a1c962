// The RabbitMQ backend's sender: publishes stored events through one
// connection of the [outgoing_pools.rabbit.event_pusher] pool
// (outgoing/rabbit.ts), on the server's thread or in the sender thread
// (createSender is what that thread loads). Each event is published
// persistent, with the id stored with it as its message-id, so a consumer can
// tell a re-sent event (after a confirm timeout or a reconnect) from a new one.
//
// What it reports to the backend (SenderReport), as flat lists:
//   C_CONN, kind (0 opened, 1 closed, 2 failed), error ('' when none)
//   C_PUB, host type, outcome (0 ok, 1 failed, 2 timeout), microseconds, bytes
import type { RabbitPoolConfig } from '../../../outgoing/types.ts';
import { createRabbitPublisher, type PublishOutcome } from '../../../outgoing/rabbit.ts';
import type { BackendSender, DeliveryItem, SenderReport, SendResult } from '../delivery/types.ts';
import type { ExchangeOpts } from './config.ts';
import { decodeRabbitPayload, MAX_SHORTSTR } from './payload.ts';

export interface RabbitSenderInit {
  poolTag: string;
  pool: RabbitPoolConfig;
  exchanges: ExchangeOpts[];
}

export const C_CONN = 0;
export const C_PUB = 1;
export const CONN_KINDS = ['opened', 'closed', 'failed'] as const;
export const PUB_OUTCOMES = ['ok', 'failed', 'timeout'] as const;

const enc = new TextEncoder();

function resultOf(r: PublishOutcome): SendResult {
  if (r.ok) return { kind: 'delivered', status: 'ok', timeMs: r.timeMs };
  if (r.reason === 'nack') return { kind: 'retry', status: 'nack', error: 'the broker refused the message (negative acknowledgement)' };
  if (r.reason === 'timeout') return { kind: 'retry', status: 'timeout', error: r.message };
  if (r.reason === 'closed') return { kind: 'retry', status: 'closed', error: r.message };
  return { kind: 'retry', status: 'channel_error', error: r.message };
}

export function createRabbitSender(init: RabbitSenderInit, report: (r: SenderReport) => void): BackendSender {
  const pub = createRabbitPublisher(init.poolTag, init.pool, init.exchanges, (e) => {
    if (e.kind === 'opened') report([C_CONN, 0, '']);
    else if (e.kind === 'closed') report([C_CONN, 1, e.error ?? '']);
    else if (e.kind === 'failed') report([C_CONN, 2, e.error]);
    else report([C_CONN, 2, `declaring exchange ${JSON.stringify(e.exchange)} failed: ${e.error}`]);
  });
  return {
    async deliver(_handler: number, item: DeliveryItem): Promise<SendResult> {
      let m;
      try {
        m = decodeRabbitPayload(item.payload);
      } catch (e) {
        return { kind: 'final', status: 'bad_payload', error: `stored event cannot be read: ${(e as Error).message}` };
      }
      if (enc.encode(m.routingKey).length > MAX_SHORTSTR) {
        return { kind: 'final', status: 'routing_key_too_long', error: `routing key longer than ${MAX_SHORTSTR} bytes, which AMQP cannot carry` };
      }
      const body = Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength);
      const r = await pub.publish(m.exchange, m.routingKey, body, { persistent: true, messageId: item.eventId });
      if (r.ok) report([C_PUB, item.hostType, 0, Math.round(r.timeMs * 1000), r.size]);
      else if (r.reason === 'timeout') report([C_PUB, item.hostType, 2, 0, 0]);
      else if (r.reason !== 'closed') report([C_PUB, item.hostType, 1, 0, 0]);
      return resultOf(r);
    },
    close: () => pub.close(),
  };
}

/** Entry point of the sender thread (BackendSenderSpec.thread). */
export function createSender(init: unknown, report: (r: SenderReport) => void): BackendSender {
  return createRabbitSender(init as RabbitSenderInit, report);
}
