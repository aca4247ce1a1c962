// The HTTP backend's sender (delivery/types.ts): decodes a stored request
// (payload.ts), signs it for this attempt, posts it through the handler's
// pool and classifies the outcome (retry.ts). On the server's thread it uses
// the server's pools; in the sender thread `createSender` opens twins of
// them from the same configuration (`workers` connections each, the same
// TLS options and timeouts).
import { createHttpPool } from '../../../outgoing/http.ts';
import type { HttpOutcome, HttpPool, HttpPoolConfig } from '../../../outgoing/types.ts';
import type { BackendSender, DeliveryItem, SendResult } from '../delivery/types.ts';
import { payloadDecoder, type HttpPayload } from './payload.ts';
import { retryAfterMs, verdictOf } from './retry.ts';
import { createSigner, signedHeaders, type Signer } from './signing.ts';

export interface HttpSenderHandler {
  /** The handler's number in the configuration. */
  index: number;
  pool: HttpPool;
  signer?: Signer;
}

/** What the sender thread needs to send for the HTTP handlers (structured-cloned). */
export interface HttpSenderInit {
  handlers: Array<{ index: number; poolTag: string; poolConfig: HttpPoolConfig; signingKeys?: readonly Uint8Array[] }>;
}

/** `HTTP <status>`, or `<kind>: <message>` when there was no answer: the stored last error. */
export function errorText(o: HttpOutcome): string {
  if (o.kind === 'ok' || o.kind === 'http_status') return `HTTP ${o.status}`;
  return `${o.kind}: ${o.message}`;
}

/** The engine's reading of an HTTP outcome. */
export function resultOf(o: HttpOutcome, nowMs: number): SendResult {
  const status = o.kind === 'ok' || o.kind === 'http_status' ? String(o.status) : o.kind;
  switch (verdictOf(o)) {
    case 'delivered':
      return { kind: 'delivered', status, timeMs: o.kind === 'ok' ? o.timeMs : 0 };
    case 'final':
      return { kind: 'final', status, error: errorText(o) };
    case 'gone':
      // RFC 9110 §15.5.11: the handler's endpoint itself is gone.
      return { kind: 'gone', status, error: errorText(o), scope: 'handler' };
    case 'retry': {
      const afterMs = retryAfterMs(o, nowMs);
      return afterMs === undefined ? { kind: 'retry', status, error: errorText(o) } : { kind: 'retry', status, error: errorText(o), afterMs };
    }
  }
}

/** The HttpOutcome a result stands for, without the response's headers and body (for the backend's metrics and logs). */
export function outcomeOf(r: SendResult): HttpOutcome {
  const code = /^\d+$/.test(r.status) ? Number(r.status) : undefined;
  if (r.kind === 'delivered') return { kind: 'ok', status: code ?? 200, headers: {}, body: '', timeMs: r.timeMs };
  if (code !== undefined) return { kind: 'http_status', status: code, headers: {}, body: '', timeMs: 0 };
  const kind = (['timeout', 'refused', 'tls'] as const).find((k) => k === r.status) ?? 'error';
  const prefix = r.status + ': ';
  return { kind, message: r.error.startsWith(prefix) ? r.error.slice(prefix.length) : r.error };
}

export function createHttpSender(handlers: readonly HttpSenderHandler[], ownPools: readonly HttpPool[] = []): BackendSender {
  const byIndex = new Map<number, { h: HttpSenderHandler; decode: (p: Uint8Array) => HttpPayload }>();
  for (const h of handlers) byIndex.set(h.index, { h, decode: payloadDecoder() });
  return {
    async deliver(index: number, item: DeliveryItem): Promise<SendResult> {
      const x = byIndex.get(index);
      if (x === undefined) return { kind: 'final', status: 'error', error: `error: no HTTP handler ${index}` };
      let req: HttpPayload;
      try {
        req = x.decode(item.payload);
      } catch (err) {
        return { kind: 'final', status: 'error', error: `error: ${(err as Error).message}` };
      }
      let headers: ReadonlyArray<readonly [string, string]> = req.addEventId ? [...req.headers, ['webhook-id', item.eventId]] : req.headers;
      if (x.h.signer !== undefined) headers = signedHeaders(x.h.signer, headers, item.eventId, req.body, Date.now());
      let outcome: HttpOutcome;
      try {
        outcome = await x.h.pool.post(req.path, headers, req.body);
      } catch (err) {
        outcome = { kind: 'error', message: String(err) };
      }
      return resultOf(outcome, Date.now());
    },
    async close() {
      for (const p of ownPools) void p.close();
    },
  };
}

/** Called in the sender thread (BackendSenderSpec.url). */
export function createSender(init: HttpSenderInit): BackendSender {
  const pools = new Map<string, HttpPool>();
  const handlers: HttpSenderHandler[] = [];
  for (const h of init.handlers) {
    let pool = pools.get(h.poolTag);
    if (pool === undefined) pools.set(h.poolTag, (pool = createHttpPool(h.poolTag, h.poolConfig)));
    const keys = h.signingKeys;
    handlers.push({ index: h.index, pool, signer: keys !== undefined && keys.length > 0 ? createSigner(keys) : undefined });
  }
  return createHttpSender(handlers, [...pools.values()]);
}
