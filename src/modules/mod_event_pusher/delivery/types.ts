// The seam between mod_event_pusher's delivery engine and its backends. The
// engine (engine.ts, outbox.ts) stores events in the outbox, claims them,
// keeps the concurrency, retries with backoff, dead-letters and settles; it
// knows nothing of HTTP or AMQP. A backend gives it, per handler, an
// EngineHandler, and a BackendSender that delivers one stored event and
// classifies what happened:
//
//   delivered          the event is done (deleted from the outbox)
//   retry              tried again after the retry policy's backoff, or
//                      after `afterMs` when the endpoint asked for longer;
//                      dead-lettered once max_attempts or max_age is reached
//   final              dead-lettered at once (the endpoint refused it for good)
//   gone (event)       the event's own endpoint is gone (a device token):
//                      dead-lettered, and the sender's gone() is told
//   gone (handler)     the handler's whole endpoint is gone (HTTP 410): the
//                      event stays in the outbox, nothing more is sent for
//                      the handler until a restart, and gone() is told
//
// The sender runs where mod_event_pusher's sender_thread says: on the
// server's thread (`local()`), or in the sender thread, where the module at
// `BackendSenderSpec.thread.url` is loaded and its `createSender(init)`
// called (init is structured-cloned: options, keys, pool settings; no functions).
import type { RetryPolicy } from './retry.ts';

/** A stored event being delivered. */
export interface DeliveryItem {
  /** Row id in the outbox. */
  id: number;
  /** The handler's number in its backend (metric label, logs). */
  handler: number;
  hostType: string;
  /** The id stored with the event, the same on every attempt (HTTP: webhook-id). */
  eventId: string;
  /** What the backend stored (its own encoding). */
  payload: Uint8Array;
  /** Attempts made before this one. */
  attempts: number;
  createdAt: number;
}

export type SendResult =
  | { kind: 'delivered'; status: string; timeMs: number }
  | { kind: 'retry'; status: string; error: string; afterMs?: number }
  | { kind: 'final'; status: string; error: string }
  | { kind: 'gone'; status: string; error: string; scope: 'event' | 'handler' };
// `status`: a short label for petrel_event_pusher_delivery_responses_total
// (HTTP: the status code, or timeout / refused / tls / error); `error`: what
// is stored as the row's last error and shown by petrel deliveries.

/** What a backend gives the engine to send its events. */
export interface BackendSender {
  /** Sends one event of the backend's handler `handler`; never rejects (a thrown error counts as a retry). */
  deliver(handler: number, item: DeliveryItem): Promise<SendResult>;
  /** A `gone` result was applied. */
  gone?(handler: number, item: DeliveryItem, result: Extract<SendResult, { kind: 'gone' }>): void;
  /** Stops; requests still in flight may be abandoned. */
  close(): Promise<void>;
}

/**
 * What a sender tells its backend about itself, on the server's thread
 * (e.g. its connections opened and closed, for the backend's metrics): a
 * flat list of strings and numbers, so that it crosses threads cheaply.
 */
export type SenderReport = ReadonlyArray<string | number>;

/** How a backend's sender is built on either thread. */
export interface BackendSenderSpec {
  /** The sender on the server's thread; `report` reaches onReport. */
  local(report: (r: SenderReport) => void): BackendSender;
  /**
   * How the sender thread builds it: the module at `url` exports
   * `createSender(init: unknown, report: (r: SenderReport) => void): BackendSender | Promise<BackendSender>`,
   * called with `init` (structured-cloned). Absent when the backend cannot
   * send from another thread (its pools were not made from the configuration).
   */
  thread?: { url: string; init: unknown };
  /** Gets what the sender reported, wherever it runs. */
  onReport?(r: SenderReport): void;
}

/** One handler of a backend delivering through the outbox. */
export interface EngineHandler {
  /** Backend name (key of the backend registry). */
  backend: string;
  /** The handler's number in its backend. */
  index: number;
  /** Stable key of the handler's rows in the outbox, unique across backends. */
  key: string;
  /** Handlers with the same lane share its `concurrency` (HTTP: the pool). */
  lane: string;
  concurrency: number;
  retry: RetryPolicy;
  /** Added to the engine's log lines about this handler (e.g. { url }). */
  logFields: Readonly<Record<string, string | number>>;
}

/** What happened to one attempt, for the backend's metrics and logs. */
export interface AttemptReport {
  attempt: number;
  /** Set when the event will be tried again. */
  nextAttemptInMs?: number;
  /** Set when the event moved to the dead-letter table. */
  deadLettered?: 'attempts' | 'max_age' | 'final' | 'gone';
}

/** Told to the backend on the server's thread, wherever its sender runs. */
export interface HandlerEvents {
  /** After each attempt. */
  attempted(item: { handler: number; hostType: string; eventId: string }, result: SendResult, report: AttemptReport): void;
  /**
   * An event that could not be kept: outbox full (outbox_max_events or
   * outbox_max_bytes), its sender's share used up (outbox_max_events_per_user
   * or outbox_max_bytes_per_user), write refused, or closing.
   */
  dropped(hostType: string, eventId: string, reason: 'outbox_full' | 'user_full' | 'store_error' | 'closed'): void;
}

/** Why enqueue refused an event at once. */
export type EnqueueRefusal = 'outbox_full' | 'user_full' | 'closed';

/** A handler's way into the outbox, on the push_event path. */
export interface DurableQueue {
  /**
   * Never blocks and never throws. Returns a promise that resolves once the
   * event is committed (it never rejects; a refusal goes to `dropped`), or,
   * when it was refused at once, why (also told to `dropped`). `owner` is
   * the user whose share of the outbox the event counts against (the
   * sender's bare JID); without one only the outbox's own bounds apply.
   * An event that would take the outbox past its ceiling
   * (outbox_high_water_bytes) is written once deliveries make room (flow.ts).
   */
  enqueue(hostType: string, eventId: string, payload: Uint8Array, owner?: string): Promise<void> | EnqueueRefusal;
  /** Events of the handler in the outbox. */
  readonly size: number;
}

/** What a backend registers its durable handlers and its sender with. */
export interface OutboxAccess {
  handler(h: EngineHandler, events: HandlerEvents): DurableQueue;
  sender(backend: string, spec: BackendSenderSpec): void;
}
