// The event pusher's sender inside the SQLite outbox's writer thread (loaded
// there by SqliteOutbox.attach): the handlers' pools are opened here from the
// same configuration (`workers` connections each, the same TLS options and
// timeouts), and rows are sent as soon as their batch is committed, without
// a round trip through the server's thread.
//
// What the server's thread must see (metrics, attempts for the backend's
// counters and logs, depth changes, log lines) is gathered into one flat list
// and posted once per tick; applyReports replays it there.
import { createHttpPool } from '../../../outgoing/http.ts';
import type { HttpOutcome, HttpPool, HttpPoolConfig } from '../../../outgoing/types.ts';
import type { NewOutboxRow } from '../../../storage/outbox.ts';
import type { OutboxExtension, OutboxHost } from '../../../storage/outbox-worker.ts';
import type { DeliveryRequest } from './deliverer.ts';
import { createSender, type AttemptReport, type DeliveryReporter, type Sender } from './outbox-sender.ts';
import type { RetryPolicy } from './retry.ts';
import { createSigner } from './signing.ts';

export interface SenderInit {
  handlers: Array<{
    index: number;
    key: string;
    url: string;
    poolTag: string;
    poolConfig: HttpPoolConfig;
    retry: RetryPolicy;
    signingKeys?: readonly Uint8Array[];
  }>;
  pageSize?: number;
  pollMs?: number;
}

export type SenderRequest = { type: 'start' } | { type: 'close'; graceMs: number };

// Codes of the flat report list; each is followed by a fixed number of fields.
const R_METRIC = 0; // index in METRIC_CALLS, host type, handler, third argument ('' when none)
const R_OK = 1; // handler, host type, webhook-id, status, time ms, attempt
const R_FAILED = 2; // handler, host type, webhook-id, JSON of { outcome, report }
const R_REMOVED = 3; // handler key
const R_LOG = 4; // level, JSON of the record, message

const METRIC_CALLS = ['attempt', 'response', 'retry', 'deadLettered'] as const;

/** Replays, on the server's thread, what the sender in the writer thread reported. */
export function applyReports(m: unknown, rep: DeliveryReporter): void {
  if (!Array.isArray(m)) {
    const e = m as { type?: string; error?: string };
    if (e.type === 'store_error') rep.log.error({ what: 'event_pusher_outbox_write_failed', err: e.error }, 'could not write settled events to the outbox');
    else rep.log.error({ what: 'event_pusher_sender_failed', err: e.error }, 'the sender in the outbox thread failed after a commit; the events of that batch are sent after a restart');
    return;
  }
  const r = m as Array<string | number>;
  for (let i = 0; i < r.length; ) {
    switch (r[i++]) {
      case R_METRIC:
        // attempt and retry ignore the third argument.
        rep.metrics[METRIC_CALLS[r[i] as number]!](r[i + 1] as string, r[i + 2] as number, r[i + 3] as string);
        i += 4;
        break;
      case R_OK: {
        const req = requestOf(r[i] as number, r[i + 1] as string, r[i + 2] as string);
        const outcome: HttpOutcome = { kind: 'ok', status: r[i + 3] as number, headers: {}, body: '', timeMs: r[i + 4] as number };
        rep.onAttempt(req, outcome, { attempt: r[i + 5] as number, verdict: 'delivered' });
        i += 6;
        break;
      }
      case R_FAILED: {
        const req = requestOf(r[i] as number, r[i + 1] as string, r[i + 2] as string);
        const f = JSON.parse(r[i + 3] as string) as { outcome: HttpOutcome; report: AttemptReport };
        rep.onAttempt(req, f.outcome, f.report);
        i += 4;
        break;
      }
      case R_REMOVED:
        rep.removed(r[i++] as string);
        break;
      case R_LOG: {
        const level = r[i] as 'warn' | 'error';
        rep.log[level](JSON.parse(r[i + 1] as string) as object, r[i + 2] as string);
        i += 3;
        break;
      }
      default:
        return;
    }
  }
}

function requestOf(handler: number, hostType: string, webhookId: string): DeliveryRequest {
  return { handler, hostType, webhookId, path: '', headers: [], body: '' };
}

/** Called in the writer thread by SqliteOutbox.attach. */
export function attachOutboxExtension(host: OutboxHost, init: SenderInit): OutboxExtension {
  let out: Array<string | number> = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (out.length === 0) return;
    const batch = out;
    out = [];
    host.post(batch);
  };
  const push = (...fields: Array<string | number>) => {
    for (const f of fields) out.push(f);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };

  const reporter: DeliveryReporter = {
    metrics: {
      attempt: (ht, h) => push(R_METRIC, 0, ht, h, ''),
      response: (ht, h, status) => push(R_METRIC, 1, ht, h, status),
      retry: (ht, h) => push(R_METRIC, 2, ht, h, ''),
      deadLettered: (ht, h, reason) => push(R_METRIC, 3, ht, h, reason),
    },
    onAttempt(req, outcome, report) {
      if (outcome.kind === 'ok' && report.verdict === 'delivered' && report.deadLettered === undefined) {
        push(R_OK, req.handler, req.hostType, req.webhookId, outcome.status, outcome.timeMs, report.attempt);
      } else {
        // Response headers and body stay here: the server's thread logs the status and reason only.
        const o: HttpOutcome = outcome.kind === 'ok' || outcome.kind === 'http_status' ? { ...outcome, headers: {}, body: '' } : outcome;
        push(R_FAILED, req.handler, req.hostType, req.webhookId, JSON.stringify({ outcome: o, report }));
      }
    },
    removed: (key) => push(R_REMOVED, key),
    log: {
      warn: (obj, msg) => push(R_LOG, 'warn', JSON.stringify(obj), msg),
      error: (obj, msg) => push(R_LOG, 'error', JSON.stringify(obj), msg),
    },
  };

  const pools = new Map<string, HttpPool>();
  const sender: Sender = createSender({
    store: { settle: (op) => host.settle(op), claim: async (handler, now, limit) => host.claim(handler, now, limit) },
    reporter,
    pageSize: init.pageSize,
    pollMs: init.pollMs,
  });
  for (const h of init.handlers) {
    let pool = pools.get(h.poolTag);
    if (pool === undefined) pools.set(h.poolTag, (pool = createHttpPool(h.poolTag, h.poolConfig)));
    const keys = h.signingKeys;
    sender.add({ index: h.index, key: h.key, url: h.url, pool, retry: h.retry, signer: keys !== undefined && keys.length > 0 ? createSigner(keys) : undefined });
  }

  const hot: boolean[] = [];
  return {
    beforeWrite(rows: NewOutboxRow[]) {
      hot.length = rows.length;
      for (let i = 0; i < rows.length; i++) hot[i] = rows[i]!.claimed = sender.admit(rows[i]!.handler);
    },
    afterWrite(rows: NewOutboxRow[], ids: number[]) {
      for (let i = 0; i < rows.length; i++) sender.written(rows[i]!.handler, rows[i]!, ids[i]!, hot[i]!);
    },
    writeFailed(rows: NewOutboxRow[]) {
      for (let i = 0; i < rows.length; i++) sender.writeFailed(rows[i]!.handler, hot[i]!);
    },
    request(body: unknown) {
      const m = body as SenderRequest;
      if (m.type === 'start') return sender.start();
      return (async () => {
        await sender.close(m.graceMs);
        flush();
        // Requests still in flight past the grace end with the thread.
        for (const p of pools.values()) void p.close();
        return null;
      })();
    },
  };
}
