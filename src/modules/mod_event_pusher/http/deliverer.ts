// Delivery of prepared requests for "best_effort" handlers (MongooseIM's
// behaviour): the hook handler only enqueues, and the in-memory queue below
// sends in the background through the handler's pool. "at_least_once"
// handlers go through mod_event_pusher's outbox instead (delivery/).
import type { HttpHeaders, HttpOutcome, HttpPool } from '../../../outgoing/types.ts';
import { idleOrTimeout } from '../delivery/engine.ts';

export interface DeliveryRequest {
  /** Index of the handler in the configuration. */
  handler: number;
  hostType: string;
  /** The handler's path (the pool adds its path_prefix). */
  path: string;
  headers: HttpHeaders;
  body: string | Uint8Array;
  /** Standard Webhooks `webhook-id`, also present in `headers`. */
  webhookId: string;
}

export interface Deliverer {
  /**
   * Never blocks and never throws; a request that cannot be kept is reported
   * through onDropped.
   */
  enqueue(req: DeliveryRequest): void | Promise<void>;
  /** Requests waiting or in flight. */
  readonly size: number;
  /** Stops taking requests; waits up to `graceMs` for those already taken. */
  close(graceMs?: number): Promise<void>;
}

export interface MemoryDelivererOptions {
  pool: HttpPool;
  /** Requests in flight at once (the pool's workers). */
  concurrency: number;
  /** Requests kept waiting before new ones are dropped. */
  maxQueue: number;
  /** Body bytes (UTF-16 code units of a string body) kept waiting before new requests are dropped; one request alone is always taken. */
  maxQueueBytes?: number;
  onResult(req: DeliveryRequest, outcome: HttpOutcome): void;
  onDropped(req: DeliveryRequest, reason: 'queue_full' | 'closed'): void;
  /** The headers to send, computed when the request goes out (signatures carry the time of sending). */
  headersFor?(req: DeliveryRequest): HttpHeaders;
}

export const DEFAULT_MAX_QUEUE = 10_000;

/** What a request's body costs the queue: bytes, or code units of a string (what it takes in memory). */
const sizeOf = (req: DeliveryRequest) => (typeof req.body === 'string' ? req.body.length : req.body.byteLength);

/** An in-memory FIFO drained by up to `concurrency` requests at a time. Bounded; lost on restart. */
export function createMemoryDeliverer(o: MemoryDelivererOptions): Deliverer {
  let queue: DeliveryRequest[] = [];
  let head = 0;
  let inFlight = 0;
  let queuedBytes = 0;
  const maxBytes = o.maxQueueBytes ?? Infinity;
  let closed = false;
  let idle: (() => void) | null = null;

  const pump = () => {
    while (inFlight < o.concurrency && head < queue.length) {
      const req = queue[head]!;
      queue[head++] = undefined as unknown as DeliveryRequest;
      queuedBytes -= sizeOf(req);
      if (head > 1024 && head * 2 > queue.length) {
        queue = queue.slice(head);
        head = 0;
      }
      inFlight++;
      o.pool.post(req.path, o.headersFor ? o.headersFor(req) : req.headers, req.body).then(
        (outcome) => done(req, outcome),
        (err) => done(req, { kind: 'error', message: String(err) }),
      );
    }
  };

  const done = (req: DeliveryRequest, outcome: HttpOutcome) => {
    inFlight--;
    try {
      o.onResult(req, outcome);
    } finally {
      pump();
      if (idle !== null && inFlight === 0 && head >= queue.length) idle();
    }
  };

  return {
    enqueue(req) {
      if (closed) return o.onDropped(req, 'closed');
      if (queue.length - head >= o.maxQueue) return o.onDropped(req, 'queue_full');
      const size = sizeOf(req);
      if (queuedBytes + size > maxBytes && queue.length > head) return o.onDropped(req, 'queue_full');
      queuedBytes += size;
      queue.push(req);
      if (inFlight < o.concurrency) pump();
    },
    get size() {
      return queue.length - head + inFlight;
    },
    async close(graceMs = 5000) {
      closed = true;
      if (inFlight === 0 && head >= queue.length) return;
      await idleOrTimeout(graceMs, (f) => {
        idle = f;
      });
      for (let i = head; i < queue.length; i++) o.onDropped(queue[i]!, 'closed');
      queue = [];
      head = 0;
      queuedBytes = 0;
    },
  };
}

