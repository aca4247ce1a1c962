// The group commit of the outbox, for both stores: appends and settle ops are
// gathered and written together, one transaction per batch, by a store's
// `BatchWriter` (SQLite: the writer thread; PostgreSQL: one multi-row
// INSERT). While a batch is written the next one gathers, so under light load
// a row is written at the next tick, and under heavy load the batches grow
// instead of the transactions multiplying. A full batch (maxRows rows or
// maxBytes payload bytes) is written at once, up to maxInFlight batches at a
// time.
//
// One failure policy, whatever the store:
// - nothing accepted is forgotten: the settle ops of a failed write go back
//   to the queue and are written later (alone first, after retryMs);
// - the rows of a failed write are tried again without ops, and a rows-only
//   write that fails is split in halves, each tried again at once; so one
//   row the database refuses cannot fail the rows batched with it, and only
//   a row that failed alone is refused (its append rejects, and the caller
//   says so).
// - a row that failed alone for a reason that is not its own (the store says
//   which errors are transient: a statement timeout, a lock, a lost
//   connection) is not refused at once: it waits retryMs (longer each time)
//   and is tried again with the others that did, up to loneRetries times. So
//   rows batched with one that made the store slow (a huge payload, a lock)
//   are not refused for it; a row the database refuses for itself is.
// A store that cannot be written at all therefore refuses each new row after
// a few tries (about 2 log2(batch) quick writes, then loneRetries spaced
// ones), and keeps its settle ops.
//
// Fair share: with an owner for each row (ownerOf) and maxRowsPerOwner, a
// batch holds at most that many rows of one owner; the owner's other rows
// wait, in their order, for the next batches, and the rows behind them go
// first. The rows looked at for a batch are bounded (FAIR_SCAN batches'
// worth), so a long queue of one owner's rows costs no more per batch.
//
// Settle ops alone do not make a batch at once: they wait for the next rows,
// or settleDelayMs, or maxOps of them. Nobody waits for them except a claim
// (settled()), which needs them written first.
import { DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_ROWS, SETTLE_DELAY_MS, type BatchLimits } from './types.ts';

/** Writes `rows` and applies `ops` in one transaction; resolves with the rows' ids in order. */
export type BatchWriter<R, O> = (rows: R[], ops: O[]) => Promise<number[]>;

export interface GroupCommitOptions<R = unknown> extends BatchLimits {
  /** Batches written at once at most (1: the next waits for the commit). */
  maxInFlight?: number;
  /** Longest settle ops wait for rows to ride with. */
  settleDelayMs?: number;
  /** Settle ops that make a batch on their own at once. */
  maxOps?: number;
  /** ms before settle ops whose write failed are tried again. */
  retryMs?: number;
  /** A write failed; what it held is kept (ops), tried again or split (rows). */
  onWriteFailed?(err: Error, rows: number, ops: number): void;
  /** Whether an error says nothing about the rows written (timeout, lock, connection): a row that failed alone with it is tried again later. */
  transient?(err: Error): boolean;
  /** Times a row that failed alone with a transient error is tried again before it is refused. */
  loneRetries?: number;
  /** Who a row is charged to, for maxRowsPerOwner (undefined: nobody, never held back). */
  ownerOf?(r: R): string | undefined;
}

/** Rows looked at for one batch's fair share, in batches' worth (maxRows each). */
const FAIR_SCAN = 8;

export const DEFAULT_MAX_OPS = 4096;
export const DEFAULT_RETRY_MS = 1000;
export const DEFAULT_LONE_RETRIES = 3;

interface Join {
  n: number;
  resolve(): void;
  reject(e: Error): void;
}

/** Rows written or to be written together, with their callers' promises. */
export interface Rows<R> {
  rows: R[];
  res: Array<(id: number) => void>;
  rej: Array<(e: Error) => void>;
  /** Per row, the times it failed alone with a transient error (absent: none). */
  tries?: number[];
}

const sliceRows = <R>(b: Rows<R>, from: number, to?: number): Rows<R> => ({
  rows: b.rows.slice(from, to),
  res: b.res.slice(from, to),
  rej: b.rej.slice(from, to),
  tries: b.tries?.slice(from, to),
});

const done = (j: Join) => {
  if (--j.n === 0) j.resolve();
};

export class GroupCommit<R, O> {
  readonly #write: BatchWriter<R, O>;
  readonly #sizeOf: (r: R) => number;
  readonly #maxRows: number;
  readonly #maxBytes: number;
  readonly #maxInFlight: number;
  readonly #settleDelayMs: number;
  readonly #maxOps: number;
  readonly #retryMs: number;
  readonly #onWriteFailed: GroupCommitOptions['onWriteFailed'];
  readonly #transient: GroupCommitOptions['transient'];
  readonly #loneRetries: number;
  readonly #ownerOf: GroupCommitOptions<R>['ownerOf'];
  readonly #perOwner: number;
  /** Rows that failed alone with a transient error, waiting to be tried again together. */
  #parked: Rows<R> = { rows: [], res: [], rej: [], tries: [] };
  #parkTimer: NodeJS.Timeout | null = null;

  #rows: R[] = [];
  #res: Array<(id: number) => void> = [];
  #rej: Array<(e: Error) => void> = [];
  #bytes = 0;
  #ops: O[] = [];
  /** settled() calls waiting for the pending ops. */
  #opsJoins: Join[] = [];
  /** Rows of failed writes, to be tried again without ops (front first). */
  #suspects: Array<Rows<R>> = [];
  /** Writes under way, with the settled() calls waiting for their ops. */
  #inFlight = new Set<{ ops: number; joins: Join[] }>();
  #scheduled = false;
  #opsTimer: NodeJS.Timeout | null = null;
  /** Settle ops have waited settleDelayMs, or someone waits for them. */
  #opsDue = false;
  /** Settle ops failed last time: they wait for retryMs, then go alone. */
  #opsBackoff: NodeJS.Timeout | null = null;
  #opsAlone = false;
  #lastError: Error | null = null;
  #failuresInDrain = 0;
  /** In this drain, the settle ops have had their write of their own after a failure. */
  #opsAloneInDrain = false;
  #draining = false;
  #idle: Array<() => void> = [];
  #closed = false;

  constructor(write: BatchWriter<R, O>, sizeOf: (r: R) => number, o: GroupCommitOptions<R> = {}) {
    this.#write = write;
    this.#sizeOf = sizeOf;
    this.#maxRows = Math.max(1, o.maxRows ?? DEFAULT_BATCH_MAX_ROWS);
    this.#maxBytes = Math.max(1, o.maxBytes ?? DEFAULT_BATCH_MAX_BYTES);
    this.#maxInFlight = Math.max(1, o.maxInFlight ?? 1);
    this.#settleDelayMs = o.settleDelayMs ?? SETTLE_DELAY_MS;
    this.#maxOps = o.maxOps ?? DEFAULT_MAX_OPS;
    this.#retryMs = o.retryMs ?? DEFAULT_RETRY_MS;
    this.#onWriteFailed = o.onWriteFailed;
    this.#transient = o.transient;
    this.#loneRetries = o.loneRetries ?? DEFAULT_LONE_RETRIES;
    this.#ownerOf = o.ownerOf;
    this.#perOwner = o.ownerOf === undefined ? Infinity : Math.max(1, o.maxRowsPerOwner ?? Infinity);
  }

  /** Parks a row that failed alone with a transient error; all parked rows are tried again together. */
  #park(b: Rows<R>, tries: number): void {
    const p = this.#parked;
    p.rows.push(b.rows[0]!);
    p.res.push(b.res[0]!);
    p.rej.push(b.rej[0]!);
    p.tries!.push(tries);
    if (this.#parkTimer !== null) return;
    this.#parkTimer = setTimeout(() => {
      this.#parkTimer = null;
      this.#unpark();
      this.#pump();
    }, this.#retryMs * tries);
    this.#parkTimer.unref();
  }

  /** Parked rows go back to the front of the rows to try again. */
  #unpark(): void {
    if (this.#parkTimer !== null) clearTimeout(this.#parkTimer);
    this.#parkTimer = null;
    const p = this.#parked;
    if (p.rows.length === 0) return;
    this.#parked = { rows: [], res: [], rej: [], tries: [] };
    this.#suspects.unshift(p);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Adds `row` to the next batch; resolves with its id once committed, rejects when it failed alone. */
  append(row: R): Promise<number> {
    if (this.#closed) return Promise.reject(new Error('outbox is closed'));
    return new Promise<number>((resolve, reject) => {
      this.#rows.push(row);
      this.#res.push(resolve);
      this.#rej.push(reject);
      this.#bytes += this.#sizeOf(row);
      if (this.#rows.length >= this.#maxRows || this.#bytes >= this.#maxBytes) this.#pump();
      else this.#schedule();
    });
  }

  /** Queues a settle op; it is written with a later batch, and kept until it is. */
  settle(op: O): void {
    if (this.#closed) return;
    this.#ops.push(op);
    if (this.#ops.length >= this.#maxOps) this.#schedule();
    else if (this.#opsTimer === null) {
      this.#opsTimer = setTimeout(() => {
        this.#opsTimer = null;
        this.#opsDue = true;
        this.#pump();
      }, this.#settleDelayMs);
      this.#opsTimer.unref();
    }
  }

  /**
   * Resolves once the settle ops given so far are written (those pending and
   * those in writes under way), not waiting for what comes meanwhile;
   * rejects when their write fails (they are kept and tried again).
   */
  settled(): Promise<void> {
    let n = 0;
    for (const w of this.#inFlight) if (w.ops > 0) n++;
    const pending = this.#ops.length > 0;
    if (pending && this.#opsBackoff !== null) return Promise.reject(this.#lastError ?? new Error('the outbox could not be written'));
    if (pending) n++;
    if (n === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const j: Join = { n, resolve, reject };
      for (const w of this.#inFlight) if (w.ops > 0) w.joins.push(j);
      if (pending) {
        this.#opsJoins.push(j);
        this.#opsDue = true;
        this.#pump();
      }
    });
  }

  /** Writes everything pending; gives up on what fails (the ops stay unwritten, failed rows are refused). */
  async drain(): Promise<void> {
    this.#draining = true;
    this.#unpark();
    this.#failuresInDrain = 0;
    this.#opsAloneInDrain = false;
    this.#opsDue = true;
    if (this.#opsBackoff !== null) {
      clearTimeout(this.#opsBackoff);
      this.#opsBackoff = null;
    }
    try {
      for (;;) {
        this.#pump();
        if (this.#inFlight.size === 0) return;
        await new Promise<void>((r) => this.#idle.push(r));
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Refuses what is still pending and every later append; pending ops are dropped (the store releases its claims). */
  close(): void {
    this.#closed = true;
    if (this.#opsTimer !== null) clearTimeout(this.#opsTimer);
    if (this.#opsBackoff !== null) clearTimeout(this.#opsBackoff);
    this.#opsTimer = this.#opsBackoff = null;
    const err = new Error('outbox is closed');
    for (const f of this.#rej) f(err);
    for (const s of this.#suspects) for (const f of s.rej) f(err);
    if (this.#parkTimer !== null) clearTimeout(this.#parkTimer);
    this.#parkTimer = null;
    for (const f of this.#parked.rej) f(err);
    this.#parked = { rows: [], res: [], rej: [], tries: [] };
    for (const j of this.#opsJoins) j.reject(err);
    this.#rows = [];
    this.#res = [];
    this.#rej = [];
    this.#suspects = [];
    this.#ops = [];
    this.#opsJoins = [];
    this.#bytes = 0;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #opsReady(): boolean {
    return this.#ops.length > 0 && this.#opsBackoff === null && (this.#opsDue || this.#draining || this.#ops.length >= this.#maxOps);
  }

  /** Starts the writes there is room and reason for. */
  #pump(): void {
    while (this.#inFlight.size < this.#maxInFlight && !this.#closed) {
      const s = this.#suspects.shift();
      if (s !== undefined) {
        this.#start(s, []);
        continue;
      }
      if (this.#draining && this.#failuresInDrain > 0) {
        // Closing after a failure: the settle ops get one write of their own
        // (what failed may have been a row batched with them), then the rows
        // left are tried once each; ops that still cannot be written are given
        // up, and their events are sent again after the restart.
        if (this.#ops.length > 0 && !this.#opsAloneInDrain) {
          this.#opsAloneInDrain = true;
          this.#start({ rows: [], res: [], rej: [] }, this.#takeOps());
          continue;
        }
        if (this.#rows.length === 0) break;
        this.#start(this.#take(), []);
        continue;
      }
      const full = this.#rows.length >= this.#maxRows || this.#bytes >= this.#maxBytes;
      // With a write under way only a full batch goes at once; the rest gathers.
      if (this.#inFlight.size > 0 && !full && !(this.#opsReady() && this.#ops.length >= this.#maxOps)) break;
      const opsReady = this.#opsReady() || (this.#rows.length > 0 && this.#ops.length > 0 && this.#opsBackoff === null);
      if (this.#opsAlone && opsReady) {
        this.#start({ rows: [], res: [], rej: [] }, this.#takeOps());
        continue;
      }
      if (this.#rows.length === 0 && !opsReady) break;
      const rows = this.#take();
      this.#start(rows, opsReady ? this.#takeOps() : []);
    }
    if (this.#inFlight.size === 0 && this.#idle.length > 0) {
      const w = this.#idle;
      this.#idle = [];
      for (const f of w) f();
    }
  }

  /** The first rows that fit in one batch (at most maxRowsPerOwner of an owner, see takeFair). */
  #take(): Rows<R> {
    if (this.#perOwner < this.#rows.length) {
      const fair = takeFair({ rows: this.#rows, res: this.#res, rej: this.#rej }, this.#ownerOf!, this.#perOwner, this.#maxRows, this.#maxBytes, this.#sizeOf);
      if (fair !== null) {
        this.#bytes -= fair.bytes;
        return fair.batch;
      }
    }
    const all = this.#rows;
    let n = 0;
    let bytes = 0;
    if (all.length <= this.#maxRows && this.#bytes <= this.#maxBytes) {
      n = all.length;
      bytes = this.#bytes;
    } else {
      while (n < all.length && n < this.#maxRows) {
        const b = this.#sizeOf(all[n]!);
        if (n > 0 && bytes + b > this.#maxBytes) break;
        bytes += b;
        n++;
      }
    }
    let out: Rows<R>;
    if (n === all.length) {
      out = { rows: all, res: this.#res, rej: this.#rej };
      this.#rows = [];
      this.#res = [];
      this.#rej = [];
    } else out = { rows: all.splice(0, n), res: this.#res.splice(0, n), rej: this.#rej.splice(0, n) };
    this.#bytes -= bytes;
    return out;
  }

  #takeOps(): O[] {
    const ops = this.#ops;
    this.#ops = [];
    this.#opsDue = false;
    if (this.#opsTimer !== null) clearTimeout(this.#opsTimer);
    this.#opsTimer = null;
    return ops;
  }

  #start(batch: Rows<R>, ops: O[]): void {
    const w = { ops: ops.length, joins: ops.length > 0 ? this.#opsJoins : [] };
    if (ops.length > 0) this.#opsJoins = [];
    this.#inFlight.add(w);
    let p: Promise<number[]>;
    try {
      p = this.#write(batch.rows, ops);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (ids) => {
        this.#inFlight.delete(w);
        if (ops.length > 0) this.#opsAlone = false;
        const res = batch.res;
        for (let i = 0; i < res.length; i++) res[i]!(ids[i]!);
        for (const j of w.joins) done(j);
        this.#pump();
      },
      (e: unknown) => {
        this.#inFlight.delete(w);
        const err = e instanceof Error ? e : new Error(String(e));
        this.#lastError = err;
        if (this.#draining) this.#failuresInDrain++;
        this.#onWriteFailed?.(err, batch.rows.length, ops.length);
        for (const j of w.joins) j.reject(err);
        if (ops.length > 0) {
          // Kept, ahead of those given since; tried alone once retryMs has passed.
          this.#ops = this.#closed ? [] : ops.concat(this.#ops);
          this.#opsAlone = true;
          if (!this.#closed && !this.#draining && this.#opsBackoff === null) {
            this.#opsBackoff = setTimeout(() => {
              this.#opsBackoff = null;
              this.#opsDue = true;
              this.#pump();
            }, this.#retryMs);
            this.#opsBackoff.unref();
          }
        }
        const n = batch.rows.length;
        if (n > 0) {
          if (this.#closed) {
            for (const f of batch.rej) f(new Error('outbox is closed'));
          } else if (ops.length > 0) {
            // The ops may be what failed: the rows are tried again on their own.
            this.#suspects.unshift(batch);
          } else if (n === 1) {
            const tries = (batch.tries?.[0] ?? 0) + 1;
            if (!this.#draining && tries <= this.#loneRetries && this.#transient?.(err) === true) this.#park(batch, tries);
            else batch.rej[0]!(err);
          } else {
            const h = n >> 1;
            this.#suspects.unshift(sliceRows(batch, 0, h), sliceRows(batch, h));
          }
        }
        this.#pump();
      },
    );
  }
}

/**
 * Takes one batch of the queued rows with at most `perOwner` rows of each
 * owner, in queue order, out of `q` (the rows left keep their order); null,
 * and `q` untouched, when the batch is the queue's first rows anyway (no
 * owner over its share among them). Looks at FAIR_SCAN × maxRows rows at
 * most; the rows past the batch are moved down in place.
 */
export function takeFair<R>(
  q: Rows<R>,
  ownerOf: (r: R) => string | undefined,
  perOwner: number,
  maxRows: number,
  maxBytes: number,
  sizeOf: (r: R) => number,
): { batch: Rows<R>; bytes: number } | null {
  const { rows, res, rej } = q;
  const counts = new Map<string, number>();
  const scan = Math.min(rows.length, maxRows * FAIR_SCAN);
  /** Whether each row looked at is taken, once the first one is held back. */
  let taken: boolean[] | null = null;
  let n = 0;
  let bytes = 0;
  let i = 0;
  for (; i < scan && n < maxRows; i++) {
    const r = rows[i]!;
    const b = sizeOf(r);
    if (n > 0 && bytes + b > maxBytes) break;
    const o = ownerOf(r);
    if (o !== undefined) {
      const c = counts.get(o) ?? 0;
      if (c >= perOwner) {
        if (taken === null) taken = new Array<boolean>(i).fill(true);
        taken.push(false);
        continue;
      }
      counts.set(o, c + 1);
    }
    taken?.push(true);
    n++;
    bytes += b;
  }
  if (taken === null) return null;
  const batch: Rows<R> = { rows: new Array(n), res: new Array(n), rej: new Array(n) };
  // The rows held back move to the front, then the rows not looked at follow them.
  let t = 0;
  let w = 0;
  for (let k = 0; k < i; k++) {
    if (taken[k]) {
      batch.rows[t] = rows[k]!;
      batch.res[t] = res[k]!;
      batch.rej[t++] = rej[k]!;
    } else {
      rows[w] = rows[k]!;
      res[w] = res[k]!;
      rej[w++] = rej[k]!;
    }
  }
  const left = rows.length - n;
  rows.copyWithin(w, i);
  res.copyWithin(w, i);
  rej.copyWithin(w, i);
  rows.length = res.length = rej.length = left;
  return { batch, bytes };
}
