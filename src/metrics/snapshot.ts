// What `petrel metrics` shows: MongooseIM's table for the HTTP backend
// ([Host, mod_event_pusher_http, sent|failed] spirals and the response_time
// histogram), computed from the Prometheus metrics of the running server.
// The counters are sampled every second into spirals, so "one" is the count
// of the last minute and "count" the total since start.
import type { Registry } from 'prom-client';
import {
  RESPONSE_TIME_RECENT,
  SENT_COUNT,
  SENT_FAILURE_COUNT,
} from '../modules/mod_event_pusher/http/metrics.ts';
import { Spiral } from './spiral.ts';

export interface SpiralSnapshot {
  /** Last 60 seconds. */
  one: number;
  /** Since the server started. */
  count: number;
}

export interface HistogramSnapshot {
  /** Successful requests in the last 60 seconds. */
  n: number;
  /** Mean since start, microseconds (null before the first success). */
  mean: number | null;
  /** Quantiles over the last 60 seconds, microseconds (null when there were none). */
  percentiles: Record<'50' | '75' | '90' | '95' | '99' | '999', number | null>;
}

export interface HostMetricsSnapshot {
  hostType: string;
  sent: SpiralSnapshot;
  failed: SpiralSnapshot;
  responseTime: HistogramSnapshot;
}

/** One series of a server metric, by its MongooseIM name. */
export interface ServerMetricValue {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricsSnapshot {
  /** ISO-8601. */
  takenAt: string;
  hosts: HostMetricsSnapshot[];
  /** The server's own metrics in MongooseIM's names (SERVER_METRICS), current values. */
  server?: ServerMetricValue[];
}

/** What `petrel metrics` lists of the server itself: MongooseIM's names, in this order (docs/metrics.md). */
export const SERVER_METRICS = [
  'sm_session_count', 'sm_unique_sessions_count', 'sm_session_logins', 'sm_session_logouts', 'c2s_auth_failed_count',
  'xmpp_element_in_message_count', 'xmpp_element_in_iq_count', 'xmpp_element_in_presence_count', 'xmpp_element_in_error_count',
  'xmpp_element_out_message_count', 'xmpp_element_out_iq_count', 'xmpp_element_out_presence_count', 'xmpp_element_out_error_count',
  'tcp_data_in_byte_size', 'tls_data_in_byte_size',
] as const;

interface MetricValue { value: number; labels: Record<string, string | number>; metricName?: string }

async function values(registry: Registry, name: string): Promise<MetricValue[]> {
  const m = registry.getSingleMetric(name);
  if (m === undefined) return [];
  const got = await m.get();
  return got.values as MetricValue[];
}

const QUANTILE_KEYS: Record<string, keyof HistogramSnapshot['percentiles']> = {
  '0.5': '50', '0.75': '75', '0.9': '90', '0.95': '95', '0.99': '99', '0.999': '999',
};

class CounterSpirals {
  readonly spirals = new Map<string, Spiral>();
  readonly #last = new Map<string, number>();
  readonly #name: string;

  constructor(name: string) {
    this.#name = name;
  }

  async sample(registry: Registry, nowMs: number): Promise<void> {
    for (const v of await values(registry, this.#name)) {
      const host = String(v.labels.host_type ?? 'global');
      const prev = this.#last.get(host) ?? 0;
      this.#last.set(host, v.value);
      let s = this.spirals.get(host);
      if (s === undefined) this.spirals.set(host, (s = new Spiral()));
      // A counter only goes down when reset; start again from its new value.
      s.add(v.value >= prev ? v.value - prev : v.value, nowMs);
    }
  }
}

export class MetricsSampler {
  readonly #registry: Registry;
  readonly #sent = new CounterSpirals(SENT_COUNT);
  readonly #failed = new CounterSpirals(SENT_FAILURE_COUNT);
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> | undefined;

  constructor(registry: Registry) {
    this.#registry = registry;
  }

  /** Samples now and then every `intervalMs`; the timer does not keep the process alive. */
  start(intervalMs = 1000): void {
    if (this.#timer !== undefined) return;
    void this.sample();
    this.#timer = setInterval(() => void this.sample(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  sample(nowMs = Date.now()): Promise<void> {
    // One sample at a time: two overlapping reads would count a delta twice.
    const run = async () => {
      await this.#sent.sample(this.#registry, nowMs);
      await this.#failed.sample(this.#registry, nowMs);
    };
    const next = (this.#busy ?? Promise.resolve()).then(run, run);
    this.#busy = next.catch(() => {});
    return next;
  }

  async snapshot(nowMs = Date.now()): Promise<MetricsSnapshot> {
    await this.sample(nowMs);
    const recent = await values(this.#registry, RESPONSE_TIME_RECENT);
    const hostTypes = new Set<string>([...this.#sent.spirals.keys(), ...this.#failed.spirals.keys()]);
    const hosts: HostMetricsSnapshot[] = [];
    for (const hostType of [...hostTypes].sort()) {
      const spiral = (s: Spiral | undefined): SpiralSnapshot => ({ one: s?.one(nowMs) ?? 0, count: s?.count ?? 0 });
      const sent = spiral(this.#sent.spirals.get(hostType));
      const percentiles: HistogramSnapshot['percentiles'] = { '50': null, '75': null, '90': null, '95': null, '99': null, '999': null };
      let sum = 0;
      let count = 0;
      for (const v of recent) {
        if (String(v.labels.host_type) !== hostType) continue;
        if (v.metricName?.endsWith('_sum')) sum = v.value;
        else if (v.metricName?.endsWith('_count')) count = v.value;
        else {
          const key = QUANTILE_KEYS[String(v.labels.quantile)];
          if (key !== undefined && Number.isFinite(v.value) && sent.one > 0) percentiles[key] = v.value;
        }
      }
      hosts.push({
        hostType,
        sent,
        failed: spiral(this.#failed.spirals.get(hostType)),
        responseTime: { n: sent.one, mean: count > 0 ? sum / count : null, percentiles },
      });
    }
    const server: ServerMetricValue[] = [];
    for (const name of SERVER_METRICS) {
      for (const v of await values(this.#registry, name)) {
        const labels: Record<string, string> = {};
        for (const [k, x] of Object.entries(v.labels)) if (k !== 'connection_type') labels[k] = String(x);
        server.push({ name, labels, value: v.value });
      }
    }
    return { takenAt: new Date(nowMs).toISOString(), hosts, server };
  }
}

function fmtMicros(us: number | null): string {
  if (us === null) return '-';
  if (us >= 1_000_000) return (us / 1_000_000).toFixed(2) + ' s';
  if (us >= 1000) return (us / 1000).toFixed(1) + ' ms';
  return Math.round(us) + ' µs';
}

function pad(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

/**
 * The table printed by `petrel metrics`, one block of three rows per host
 * type, named as in MongooseIM's documentation.
 */
export function formatMetricsTable(s: MetricsSnapshot): string {
  const server = formatServerTable(s);
  if (s.hosts.length === 0) return server + `No mod_event_pusher_http metrics yet (taken ${s.takenAt}).`;
  return server + formatPusherTable(s);
}

/** The server's metrics by their MongooseIM Prometheus names, one row per series. */
function formatServerTable(s: MetricsSnapshot): string {
  if (s.server === undefined || s.server.length === 0) return '';
  const rows: string[][] = [['Name', 'Labels', 'Value']];
  for (const v of s.server) {
    const labels = Object.entries(v.labels).map(([k, x]) => `${k}=${x}`).join(',') || '-';
    rows.push([v.name, labels, String(v.value)]);
  }
  return pad(rows) + '\n\n';
}

function formatPusherTable(s: MetricsSnapshot): string {
  const rows: string[][] = [['Name', 'Type', 'Value']];
  for (const h of s.hosts) {
    const p = h.responseTime.percentiles;
    rows.push([`[${h.hostType}, mod_event_pusher_http, sent]`, 'spiral', `one=${h.sent.one} count=${h.sent.count}`]);
    rows.push([`[${h.hostType}, mod_event_pusher_http, failed]`, 'spiral', `one=${h.failed.one} count=${h.failed.count}`]);
    rows.push([
      `[${h.hostType}, mod_event_pusher_http, response_time]`,
      'histogram',
      `n=${h.responseTime.n} mean=${fmtMicros(h.responseTime.mean)} median=${fmtMicros(p['50'])} 75=${fmtMicros(p['75'])} ` +
        `90=${fmtMicros(p['90'])} 95=${fmtMicros(p['95'])} 99=${fmtMicros(p['99'])} 999=${fmtMicros(p['999'])}`,
    ]);
  }
  return pad(rows) + `\n\none: last 60 s; count: since start; response_time percentiles over the last 60 s, successful requests only (taken ${s.takenAt}).`;
}
