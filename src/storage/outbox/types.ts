// The durable outbox of mod_event_pusher, for every backend: events waiting
// to be delivered, and the dead-letter table of those that never were. The
// storage layer keeps a row's payload as opaque bytes: what they mean (an
// HTTP request, a push notification, an AMQP message) is the business of
// the backend that wrote them and of its sender.
//
// A row: handler key, host type, event id, payload, attempts, created_at,
// next attempt, claimed, last error. Two stores implement OutboxStore, the
// embedded SQLite file (sqlite.ts, written from its own thread) and
// PostgreSQL (postgres.ts); both batch their writes through the one
// group-commit queue of group-commit.ts, with one failure policy.
//
// What each method guarantees (both stores; test/unit/storage/outbox-contract*
// checks it on both, failures included):
//
// - append(row): the row is added to the next batch. The promise resolves
//   with the row's id once the transaction holding it is committed, and only
//   then. A batch that fails is retried split in halves, so that rows written
//   with a row the database refuses are still committed; the promise rejects
//   only when the row failed alone (or the store is closed). Ids grow in the
//   order of the appends of one store.
// - settle(op): never fails and never blocks. The op is written with a later
//   batch (at the latest SETTLE_DELAY_MS after, or with the next appends). A
//   write that fails keeps it, and it is tried again: an accepted op is not
//   forgotten while the store is open. Ops on one row are applied in the
//   order they were given. Should the process die first, the event is sent
//   again (at-least-once, same event id).
// - claim(handler, now, limit, maxBytes): first waits until the ops given
//   before the call are written (a row just rescheduled is seen as
//   rescheduled), then takes up to `limit` rows of `handler` that are
//   unclaimed and due at `now`, oldest due first (then by id), and no more
//   than fit in `maxBytes` payload bytes (the first always goes: a row takes
//   what is left of the bound as long as some is), marks them claimed and
//   returns them. A row is claimed by one caller at a time, across processes for
//   PostgreSQL. Rejects when the ops before it could not be written.
// - depth(): rows per handler key, after the ops given before the call.
// - bytes(): payload bytes of every row, after the ops given before the call.
// - close(): writes what is pending (giving up on what fails), releases
//   every claim of this store and closes; later appends reject.
//
// `OutboxAdmin` is what `petrel deliveries` uses on either store, beside a
// running server.

/** An event to store. */
export interface NewOutboxRow {
  /** Stable key of the handler (a backend names its handlers' keys). */
  handler: string;
  hostType: string;
  /** The event's id, the same on every attempt (the HTTP backend's `webhook-id`). */
  eventId: string;
  /** What the backend's sender needs to deliver the event; opaque here. */
  payload: Uint8Array;
  /** Milliseconds since the epoch; also the first due time. */
  createdAt: number;
  /** Taken by this server at once (its sender has room for it and takes it after the commit). */
  claimed: boolean;
  /** Who the event is charged to (the sender's bare JID), for the fair share of a batch; not stored. */
  owner?: string;
}

/** A stored event, as a claim returns it. */
export interface OutboxRow {
  id: number;
  handler: string;
  hostType: string;
  eventId: string;
  payload: Uint8Array;
  /** Attempts made so far. */
  attempts: number;
  createdAt: number;
}

/** An outbox row as either store's driver returns it (PostgreSQL gives BIGINTs as strings). */
export interface StoredOutboxRow {
  id: number | string;
  handler: string;
  host_type: string;
  event_id: string;
  payload: Uint8Array;
  attempts: number | string;
  created_at: number | string;
}

export function outboxRowOf(r: StoredOutboxRow): OutboxRow {
  return {
    id: Number(r.id),
    handler: r.handler,
    hostType: r.host_type,
    eventId: r.event_id,
    payload: r.payload,
    attempts: Number(r.attempts),
    createdAt: Number(r.created_at),
  };
}

/** What became of a claimed row. Applied in order, in one transaction with the appends of the same batch. */
export type SettleOp =
  | { op: 'delivered'; id: number }
  | { op: 'retry'; id: number; attempts: number; nextAt: number; error: string }
  | { op: 'dead'; id: number; attempts: number; error: string; at: number }
  | { op: 'release'; id: number };

export interface HandlerCounts {
  /** Rows in the outbox (waiting, retrying and in flight). */
  queued: number;
  /** Rows a running server has claimed: being sent, or about to be. */
  inFlight: number;
  /** Rows that failed at least once and wait for their next attempt. */
  retrying: number;
  deadLettered: number;
}

export interface DeadLetter {
  eventId: string;
  handler: string;
  attempts: number;
  lastError: string;
  /** When it was dead-lettered (ms since the epoch). */
  deadAt: number;
  createdAt: number;
}

/** Selects dead letters by event id, or all of them. */
export type DeadLetterSelector = { all: true } | { ids: readonly string[] };

export interface OutboxStore {
  /** See the guarantees above. */
  append(row: NewOutboxRow): Promise<number>;
  settle(op: SettleOp): void;
  claim(handler: string, now: number, limit: number, maxBytes?: number): Promise<OutboxRow[]>;
  depth(): Promise<Map<string, number>>;
  /** Payload bytes of every row (optional: a store without it is bounded by rows only). */
  bytes?(): Promise<number>;
  close(): Promise<void>;
}

/** What `petrel deliveries` reads and changes, whichever store holds the outbox. */
export interface OutboxAdmin {
  /** Both tables counted at one instant. */
  counts(): Promise<Map<string, HandlerCounts>>;
  /** Oldest dead-lettered first. */
  deadLetters(): Promise<DeadLetter[]>;
  /** Moves dead letters back to the outbox, due at `now`, attempts reset, payload unchanged; returns the event ids moved. */
  replay(sel: DeadLetterSelector, now: number): Promise<string[]>;
  /** Deletes dead letters; returns the event ids deleted. */
  purge(sel: DeadLetterSelector): Promise<string[]>;
  close(): Promise<void>;
}

/** How batches are bounded (mod_event_pusher's outbox_batch_max_rows / outbox_batch_max_bytes / outbox_batch_max_rows_per_user). */
export interface BatchLimits {
  /** Rows in one transaction at most. */
  maxRows?: number;
  /**
   * Rows of one owner (NewOutboxRow.owner) in one transaction at most: the
   * rest of its rows wait for the next batches, and the rows of others go
   * first. A user sending as fast as it can then fills a share of each
   * batch, not whole batches that everyone else's rows wait behind.
   */
  maxRowsPerOwner?: number;
  /** Payload bytes in one transaction at most (a larger row goes alone). */
  maxBytes?: number;
}

export const DEFAULT_BATCH_MAX_ROWS = 512;
export const DEFAULT_BATCH_MAX_BYTES = 4 * 1024 * 1024;
/** Default of modules.mod_event_pusher.outbox_owner_timeout (PostgreSQL outbox): ms before PostgreSQL ends the connections of a server that went silent. */
export const DEFAULT_OWNER_TIMEOUT_MS = 30_000;
export const DEFAULT_BATCH_MAX_ROWS_PER_OWNER = 64;
/** Longest a settle op waits for appends to ride with. */
export const SETTLE_DELAY_MS = 50;
/** Milliseconds a SQLite connection waits for another one's write lock. */
export const OUTBOX_BUSY_TIMEOUT_MS = 5000;
