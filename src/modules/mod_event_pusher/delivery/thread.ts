// The delivery engine in the sender thread (sender_thread = "worker"): the
// SQLite outbox's writer thread, where the rows already are (loaded there by
// SqliteOutbox.attach), or a thread of its own with its own PostgreSQL
// connections (pg-thread.ts). Each backend's sender is built here from its
// module and init (BackendSenderSpec), and rows are sent as soon as their
// batch is committed, without a round trip through the server's thread.
//
// What the server's thread must see (metrics, attempts for the backends'
// counters and logs, depth changes, log lines) is gathered into one flat list
// of strings and numbers and posted once per tick; applyReports replays it there.
// The engine's metric calls are counted per label set over the tick and sent
// as counts (metricCounter), not one record per call.
import type { NewOutboxRow } from '../../../storage/outbox/types.ts';
import type { OutboxExtension, OutboxHost } from '../../../storage/outbox/sqlite-worker.ts';
import { createSendLoop, type EngineReporter, type SendLoop } from './engine.ts';
import type { AttemptReport, BackendSender, DeliveryItem, EngineHandler, SenderReport, SendResult } from './types.ts';

export interface ThreadInit {
  backends: Array<{ name: string; url: string; init: unknown }>;
  handlers: EngineHandler[];
  pageSize?: number;
  pageBytes?: number;
  pollMs?: number;
}

export type ThreadRequest = { type: 'start' } | { type: 'close'; graceMs: number } | { type: 'nudge'; keys: string[] };

// Codes of the flat report list; each is followed by a fixed number of fields.
const R_METRIC = 0; // index in METRIC_CALLS, host type, handler, third argument ('' when none), count
const R_ATTEMPT = 1; // see pushAttempt
const R_REMOVED = 2; // handler position, row id, payload bytes
const R_LOG = 3; // level, JSON of the record, message
const R_SENDER = 4; // backend name, number of fields, the fields (a SenderReport)

const METRIC_CALLS = ['attempt', 'response', 'retry', 'deadLettered'] as const;
const KINDS = ['delivered', 'retry', 'final', 'gone'] as const;

/** Replays, on the server's thread, what the engine in the sender thread reported. */
export function applyReports(m: unknown, rep: EngineReporter): void {
  if (!Array.isArray(m)) {
    const e = m as { type?: string; error?: string };
    if (e.type === 'store_error') rep.log.error({ what: 'event_pusher_outbox_write_failed', err: e.error }, 'could not write settled events to the outbox; they are kept and written again');
    else rep.log.error({ what: 'event_pusher_sender_failed', err: e.error }, 'the sender thread failed after a commit; the events of that batch are sent after a restart');
    return;
  }
  const r = m as Array<string | number>;
  for (let i = 0; i < r.length; ) {
    switch (r[i++]) {
      case R_METRIC: {
        const ht = r[i + 1] as string;
        const h = r[i + 2] as string;
        const third = r[i + 3] as string;
        const n = r[i + 4] as number;
        const m = rep.metrics;
        switch (METRIC_CALLS[r[i] as number]) {
          case 'attempt': m.attempt(ht, h, n); break;
          case 'response': m.response(ht, h, third, n); break;
          case 'retry': m.retry(ht, h, n); break;
          case 'deadLettered': m.deadLettered(ht, h, third, n); break;
        }
        i += 5;
        break;
      }
      case R_ATTEMPT: {
        const gi = r[i] as number;
        const kind = KINDS[r[i + 4] as number]!;
        const status = r[i + 5] as string;
        const error = r[i + 7] as string;
        let result: SendResult;
        if (kind === 'delivered') result = { kind, status, timeMs: r[i + 6] as number };
        else if (kind === 'retry') result = (r[i + 8] as number) >= 0 ? { kind, status, error, afterMs: r[i + 8] as number } : { kind, status, error };
        else if (kind === 'final') result = { kind, status, error };
        else result = { kind, status, error, scope: r[i + 9] === 1 ? 'handler' : 'event' };
        const report: AttemptReport = { attempt: r[i + 10] as number };
        if ((r[i + 11] as number) >= 0) report.nextAttemptInMs = r[i + 11] as number;
        if (r[i + 12] !== '') report.deadLettered = r[i + 12] as AttemptReport['deadLettered'];
        const item: DeliveryItem = { id: 0, handler: r[i + 1] as number, hostType: r[i + 2] as string, eventId: r[i + 3] as string, payload: EMPTY, attempts: 0, createdAt: 0 };
        rep.attempted(gi, item, result, report);
        i += 13;
        break;
      }
      case R_REMOVED:
        rep.removed(r[i] as number, r[i + 1] as number, r[i + 2] as number);
        i += 3;
        break;
      case R_SENDER: {
        const n = r[i + 1] as number;
        rep.senderReport(r[i] as string, r.slice(i + 2, i + 2 + n));
        i += 2 + n;
        break;
      }
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

const EMPTY = new Uint8Array(0);

/** How long the sender thread's reports (attempts, removals, metric counts, logs) may wait to go together to the server's thread (ms). */
export const REPORT_DELAY_MS = 20;
/** Report fields waiting that send them at the next turn instead. */
export const REPORT_FLUSH_FIELDS = 8192;

/**
 * When the reports go: REPORT_DELAY_MS after the first one waiting, or at
 * the next turn once REPORT_FLUSH_FIELDS fields wait (under load the turn's
 * reports go together, as before, and what waits stays bounded).
 */
export function reportSchedule(flush: () => void, delayMs = REPORT_DELAY_MS, flushFields = REPORT_FLUSH_FIELDS) {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let immediate: ReturnType<typeof setImmediate> | null = null;
  return {
    request(fields: number): void {
      if (immediate !== null) return;
      if (fields >= flushFields) {
        if (timer !== null) clearTimeout(timer);
        timer = null;
        immediate = setImmediate(flush);
      } else if (timer === null) timer = setTimeout(flush, delayMs);
    },
    cancel(): void {
      if (timer !== null) clearTimeout(timer);
      if (immediate !== null) clearImmediate(immediate);
      timer = immediate = null;
    },
  };
}

/**
 * Metric calls counted per label set until drained: a turn that makes
 * thousands of attempts sends one record per (call, host type, handler,
 * status) instead of one per attempt, and the server's thread increments
 * each counter once by the count.
 */
export interface MetricCounter {
  add(call: number, hostType: string, handler: string, third: string): void;
  /** Appends one R_METRIC record per label set counted since the last drain, and forgets them. */
  drainInto(out: Array<string | number>): void;
}

export function metricCounter(): MetricCounter {
  type Count = { call: number; ht: string; h: string; third: string; n: number };
  // Nested by call, third argument, host type and handler: no key is built per call.
  let byCall: Array<Map<string, Map<string, Map<string, Count>>> | undefined> = [];
  let any = false;
  return {
    add(call, ht, h, third) {
      let a = byCall[call];
      if (a === undefined) byCall[call] = a = new Map();
      let b = a.get(third);
      if (b === undefined) a.set(third, (b = new Map()));
      let c = b.get(ht);
      if (c === undefined) b.set(ht, (c = new Map()));
      const x = c.get(h);
      if (x === undefined) c.set(h, { call, ht, h, third, n: 1 });
      else x.n++;
      any = true;
    },
    drainInto(out) {
      if (!any) return;
      for (const a of byCall) {
        if (a === undefined) continue;
        for (const b of a.values()) for (const c of b.values()) for (const x of c.values()) out.push(R_METRIC, x.call, x.ht, x.h, x.third, x.n);
      }
      byCall = [];
      any = false;
    },
  };
}

/** Runs the engine on `host`'s store; what it reports goes to `host.post`. Called in the thread by SqliteOutbox.attach or pg-thread.ts. */
export async function attachOutboxExtension(host: OutboxHost, init: ThreadInit): Promise<OutboxExtension> {
  let out: Array<string | number> = [];
  const counted = metricCounter();
  const flush = () => {
    reports.cancel();
    counted.drainInto(out);
    if (out.length === 0) return;
    const batch = out;
    out = [];
    host.post(batch);
  };
  // Reports wait up to REPORT_DELAY_MS and go in one message: at a low rate
  // each delivery would otherwise wake the server's thread once more.
  const reports = reportSchedule(flush);
  const later = () => reports.request(out.length);
  const metric = (call: number, ht: string, h: string, third: string) => {
    counted.add(call, ht, h, third);
    later();
  };

  const reporter: EngineReporter = {
    metrics: {
      attempt: (ht, h) => metric(0, ht, h, ''),
      response: (ht, h, status) => metric(1, ht, h, status),
      retry: (ht, h) => metric(2, ht, h, ''),
      deadLettered: (ht, h, reason) => metric(3, ht, h, reason),
    },
    attempted(gi, item, r, report) {
      out.push(
        R_ATTEMPT, gi, item.handler, item.hostType, item.eventId, KINDS.indexOf(r.kind), r.status,
        r.kind === 'delivered' ? r.timeMs : 0,
        r.kind === 'delivered' ? '' : r.error,
        r.kind === 'retry' && r.afterMs !== undefined ? r.afterMs : -1,
        r.kind === 'gone' && r.scope === 'handler' ? 1 : 0,
        report.attempt, report.nextAttemptInMs ?? -1, report.deadLettered ?? '',
      );
      later();
    },
    removed: (gi, id, bytes) => {
      out.push(R_REMOVED, gi, id, bytes);
      later();
    },
    senderReport: (backend, fields) => {
      out.push(R_SENDER, backend, fields.length, ...fields);
      later();
    },
    log: {
      warn: (obj, msg) => {
        out.push(R_LOG, 'warn', JSON.stringify(obj), msg);
        later();
      },
      error: (obj, msg) => {
        out.push(R_LOG, 'error', JSON.stringify(obj), msg);
        later();
      },
    },
  };

  const senders = new Map<string, BackendSender>();
  for (const b of init.backends) {
    const mod = (await import(b.url)) as { createSender(init: unknown, report: (r: SenderReport) => void): BackendSender | Promise<BackendSender> };
    senders.set(b.name, await mod.createSender(b.init, (r) => reporter.senderReport(b.name, r)));
  }
  const loop: SendLoop = createSendLoop({ store: host, reporter, pageSize: init.pageSize, pageBytes: init.pageBytes, pollMs: init.pollMs });
  for (const h of init.handlers) {
    const s = senders.get(h.backend);
    if (s === undefined) throw new Error(`no sender for the ${h.backend} backend`);
    loop.add(h, s);
  }

  const hot: boolean[] = [];
  return {
    beforeWrite(rows: NewOutboxRow[]) {
      hot.length = rows.length;
      for (let i = 0; i < rows.length; i++) hot[i] = rows[i]!.claimed = loop.admit(rows[i]!.handler, rows[i]!.payload.byteLength);
    },
    afterWrite(rows: NewOutboxRow[], ids: number[]) {
      for (let i = 0; i < rows.length; i++) loop.written(rows[i]!.handler, rows[i]!, ids[i]!, hot[i]!);
    },
    writeFailed(rows: NewOutboxRow[]) {
      for (let i = 0; i < rows.length; i++) loop.writeFailed(rows[i]!.handler, hot[i]!, rows[i]!.payload.byteLength);
    },
    request(body: unknown) {
      const m = body as ThreadRequest;
      if (m.type === 'start') return loop.start();
      if (m.type === 'nudge') {
        for (const k of m.keys) loop.nudge(k);
        return null;
      }
      return (async () => {
        // Closes the senders too; requests still in flight past the grace end with the thread.
        await loop.close(m.graceMs);
        flush();
        return null;
      })();
    },
  };
}
