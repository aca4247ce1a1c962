// What an HTTP attempt's outcome means for the event. Retried: no connection
// (refused, reset), TLS failure, timeout, 5xx, 429 and 408 (RFC 9110
// §15.5.9 and RFC 6585 §4 invite a retry). 410 Gone (RFC 9110 §15.5.11: the
// resource is gone, likely for good) disables the endpoint. Every other
// status, 3xx included (redirects are not followed), is final. When to try
// again is the delivery engine's retry policy (delivery/retry.ts).
import type { HttpOutcome } from '../../../outgoing/types.ts';

export { backoffMs, DEFAULT_RETRY, type RetryPolicy } from '../delivery/retry.ts';

export type Verdict = 'delivered' | 'retry' | 'final' | 'gone';

export function verdictOf(o: HttpOutcome): Verdict {
  switch (o.kind) {
    case 'ok':
      return 'delivered';
    case 'timeout':
    case 'refused':
    case 'tls':
    case 'error':
      return 'retry';
    case 'http_status': {
      const s = o.status;
      if (s === 410) return 'gone';
      if (s >= 500 || s === 429 || s === 408) return 'retry';
      return 'final';
    }
  }
}

/**
 * The wait a `Retry-After` header asks for, in milliseconds (RFC 9110
 * §10.2.3: delay-seconds or an HTTP-date), or undefined when absent or unreadable.
 */
export function retryAfterMs(o: HttpOutcome, nowMs: number): number | undefined {
  if (o.kind !== 'http_status' && o.kind !== 'ok') return undefined;
  let v = o.headers['retry-after'];
  if (Array.isArray(v)) v = v[0];
  if (typeof v !== 'string') return undefined;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const at = Date.parse(t);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}
