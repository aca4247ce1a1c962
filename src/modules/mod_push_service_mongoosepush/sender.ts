// The sender of MongoosePush requests (delivery/types.ts BackendSender): a
// stored request is `path NUL body` (UTF-8). The answer is read as
// mod_push_service_mongoosepush:http_notification/5 reads it, with retries
// MongooseIM does not make:
//   2xx                          delivered
//   410                          the device is not registered: gone (scope event);
//                                the push backend then disables the registration
//   408, 429, 5xx, no answer     tried again (the retry policy)
//   any other status             final ("possible API mismatch"), dead-lettered
// In the sender thread `createSender` opens a twin of the pool from its configuration.
import { createHttpPool } from '../../outgoing/http.ts';
import type { HttpOutcome, HttpPool, HttpPoolConfig } from '../../outgoing/types.ts';
import type { BackendSender, DeliveryItem, SendResult } from '../mod_event_pusher/delivery/types.ts';

const HEADERS: ReadonlyArray<readonly [string, string]> = Object.freeze([['content-type', 'application/json']] as const);

export function encodeRequest(path: string, body: string): Uint8Array {
  return Buffer.from(path + '\0' + body, 'utf8');
}

export function decodeRequest(p: Uint8Array): { path: string; body: Uint8Array } {
  const b = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  const z = b.indexOf(0);
  if (z <= 0) throw new Error('unreadable stored MongoosePush request');
  return { path: b.toString('utf8', 0, z), body: b.subarray(z + 1) };
}

export function resultOf(o: HttpOutcome): SendResult {
  if (o.kind === 'ok') return { kind: 'delivered', status: String(o.status), timeMs: o.timeMs };
  if (o.kind !== 'http_status') return { kind: 'retry', status: o.kind, error: `${o.kind}: ${o.message}` };
  const s = o.status;
  const status = String(s);
  if (s === 410) return { kind: 'gone', status, error: 'HTTP 410: device not registered', scope: 'event' };
  if (s >= 500 || s === 429 || s === 408) return { kind: 'retry', status, error: `HTTP ${s}` };
  return { kind: 'final', status, error: `HTTP ${s}: possible API mismatch` };
}

export interface MongoosePushSenderInit {
  poolTag: string;
  poolConfig: HttpPoolConfig;
}

export function createMongoosePushSender(pool: HttpPool, own = false): BackendSender {
  return {
    async deliver(_handler: number, item: DeliveryItem): Promise<SendResult> {
      let req: { path: string; body: Uint8Array };
      try {
        req = decodeRequest(item.payload);
      } catch (err) {
        return { kind: 'final', status: 'error', error: `error: ${(err as Error).message}` };
      }
      let o: HttpOutcome;
      try {
        o = await pool.post(req.path, HEADERS, req.body);
      } catch (err) {
        o = { kind: 'error', message: String(err) };
      }
      return resultOf(o);
    },
    async close() {
      if (own) void pool.close();
    },
  };
}

/** Called in the sender thread (BackendSenderSpec.thread.url). */
export function createSender(init: MongoosePushSenderInit): BackendSender {
  return createMongoosePushSender(createHttpPool(init.poolTag, init.poolConfig), true);
}
