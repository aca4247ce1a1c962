// Quantiles of the values observed over a recent sliding window, exposed to
// Prometheus as a summary (`{quantile="…"}` series plus `_sum` and `_count`).
// prom-client's Summary keeps a t-digest per age bucket and pays for it on
// every observation (about 1.8 µs); this keeps a fixed-size uniform sample
// (reservoir sampling, Vitter's algorithm R) per age bucket instead, so an
// observation is a few array writes, and the sorting happens when the
// quantiles are read. With 1,024 samples per bucket, the quantiles up to the
// 99th are within about a percentile rank of the exact ones; below 1,024
// observations per bucket they are exact.
import type { Registry } from 'prom-client';

export interface RecentQuantilesOptions {
  name: string;
  help: string;
  /** Name of the one label (e.g. host_type). */
  labelName: string;
  quantiles: readonly number[];
  /** Length of the window, seconds. */
  maxAgeSeconds: number;
  /** The window is made of this many buckets; the oldest is dropped as a whole. */
  ageBuckets: number;
  /** Samples kept per bucket. */
  samplesPerBucket?: number;
  registers?: Registry[];
  now?: () => number;
}

export interface RecentQuantilesChild {
  observe(v: number): void;
}

interface Bucket {
  /** Start of the bucket's interval, ms. */
  start: number;
  /** Observations in the interval. */
  seen: number;
  samples: Float64Array;
}

class Series implements RecentQuantilesChild {
  readonly buckets: Bucket[] = [];
  sum = 0;
  count = 0;
  #current: Bucket | undefined;
  #end = 0;
  readonly #owner: RecentQuantiles;

  constructor(owner: RecentQuantiles) {
    this.#owner = owner;
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    let b = this.#current;
    const t = this.#owner.now();
    if (b === undefined || t >= this.#end) b = this.#rotate(t);
    const k = b.samples.length;
    if (b.seen < k) b.samples[b.seen] = v;
    else {
      const j = Math.floor(Math.random() * (b.seen + 1));
      if (j < k) b.samples[j] = v;
    }
    b.seen++;
  }

  #rotate(t: number): Bucket {
    const o = this.#owner;
    const start = t - (t % o.bucketMs);
    this.drop(t);
    // The oldest dropped bucket's array is reused, so steady traffic allocates nothing.
    const old = this.buckets.length >= o.ageBuckets ? this.buckets.shift() : undefined;
    const b: Bucket = old ?? { start, seen: 0, samples: new Float64Array(o.samplesPerBucket) };
    b.start = start;
    b.seen = 0;
    this.buckets.push(b);
    this.#current = b;
    this.#end = start + o.bucketMs;
    return b;
  }

  /** Forgets the buckets that ended before the window reaching back from `t`. */
  drop(t: number): void {
    const o = this.#owner;
    const from = t - o.bucketMs * o.ageBuckets;
    while (this.buckets.length > 0 && this.buckets[0]!.start + o.bucketMs <= from) {
      const b = this.buckets.shift()!;
      if (b === this.#current) this.#current = undefined;
    }
  }

  quantiles(qs: readonly number[], t: number): number[] {
    this.drop(t);
    let n = 0;
    for (const b of this.buckets) n += Math.min(b.seen, b.samples.length);
    if (n === 0) return qs.map(() => NaN);
    // Each kept sample stands for seen/kept observations of its bucket.
    const values = new Float64Array(n);
    const weights = new Float64Array(n);
    let i = 0;
    let total = 0;
    for (const b of this.buckets) {
      const kept = Math.min(b.seen, b.samples.length);
      const w = b.seen / kept;
      for (let j = 0; j < kept; j++) {
        values[i] = b.samples[j]!;
        weights[i++] = w;
      }
      total += b.seen;
    }
    const order = Array.from({ length: n }, (_, k) => k).sort((a, b) => values[a]! - values[b]!);
    const out: number[] = [];
    for (const q of qs) {
      // The smallest value whose cumulative weight reaches q of the total.
      const want = q * total;
      let acc = 0;
      let v = values[order[n - 1]!]!;
      for (let k = 0; k < n; k++) {
        acc += weights[order[k]!]!;
        if (acc >= want) {
          v = values[order[k]!]!;
          break;
        }
      }
      out.push(v);
    }
    return out;
  }
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** A summary over a sliding window, read and written like prom-client's (labels(...).observe). */
export class RecentQuantiles {
  readonly name: string;
  readonly help: string;
  readonly type = 'summary';
  readonly aggregator = 'sum';
  readonly labelName: string;
  readonly quantiles: readonly number[];
  readonly bucketMs: number;
  readonly ageBuckets: number;
  readonly samplesPerBucket: number;
  readonly now: () => number;
  readonly #series = new Map<string, Series>();

  constructor(o: RecentQuantilesOptions) {
    this.name = o.name;
    this.help = o.help;
    this.labelName = o.labelName;
    this.quantiles = [...o.quantiles];
    this.ageBuckets = Math.max(1, Math.floor(o.ageBuckets));
    this.bucketMs = Math.max(1, Math.floor((o.maxAgeSeconds * 1000) / this.ageBuckets));
    this.samplesPerBucket = Math.max(1, Math.floor(o.samplesPerBucket ?? 1024));
    this.now = o.now ?? Date.now;
    // prom-client's Registry takes any object with a name and get(); it formats the values.
    for (const r of o.registers ?? []) r.registerMetric(this as never);
  }

  labels(value: string): RecentQuantilesChild {
    let s = this.#series.get(value);
    if (s === undefined) this.#series.set(value, (s = new Series(this)));
    return s;
  }

  reset(): void {
    this.#series.clear();
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    const t = this.now();
    const values: MetricValue[] = [];
    for (const [label, s] of this.#series) {
      const qs = s.quantiles(this.quantiles, t);
      for (let i = 0; i < qs.length; i++) values.push({ labels: { quantile: this.quantiles[i]!, [this.labelName]: label }, value: qs[i]! });
      values.push({ metricName: this.name + '_sum', labels: { [this.labelName]: label }, value: s.sum });
      values.push({ metricName: this.name + '_count', labels: { [this.labelName]: label }, value: s.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
