// The NATS bus between the cluster's nodes ([cluster] bus). Subjects:
// petrel.<cluster>.node.<node>.<verb> for requests to one node (deliver,
// kick, snapshot) and petrel.<cluster>.sessions for the session events every
// node follows. Payloads are JSON. NATS keeps the order of one publisher's
// messages, which the session events rely on.
import { connect, type NatsConnection, type Subscription } from 'nats';
import type { Logger } from 'pino';

export type BusReply = { ok: true; [k: string]: unknown } | { ok: false; [k: string]: unknown };

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A request that got no acknowledgement: nobody listens on the subject, or it timed out. */
export class BusUnreachable extends Error {
  readonly code: 'no_responders' | 'timeout' | 'closed';
  constructor(code: 'no_responders' | 'timeout' | 'closed', message: string) {
    super(message);
    this.code = code;
  }
}

export class Bus {
  readonly cluster: string;
  readonly node: string;
  #nc: NatsConnection;
  #subs: Subscription[] = [];
  /** Called once the connection is back after a loss. */
  onReconnect: (() => void) | null = null;

  #logger: Logger;

  private constructor(nc: NatsConnection, cluster: string, node: string, logger: Logger) {
    this.#logger = logger;
    this.#nc = nc;
    this.cluster = cluster;
    this.node = node;
  }

  static async open(url: string, cluster: string, node: string, logger: Logger): Promise<Bus> {
    const nc = await connect({
      servers: url.split(','),
      name: `petrel ${cluster}/${node}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // No Error with a stack trace built up front for every request (the
      // codes of a timeout or of no responders are the same without it).
      noAsyncTraces: true,
    });
    const bus = new Bus(nc, cluster, node, logger);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') logger.warn({ what: 'cluster_bus_disconnected', server: String(s.data) }, 'the cluster bus (NATS) connection was lost; reconnecting');
        else if (s.type === 'reconnect') {
          logger.info({ what: 'cluster_bus_reconnected', server: String(s.data) }, 'the cluster bus (NATS) is connected again');
          bus.onReconnect?.();
        }
      }
    })().catch(() => {});
    return bus;
  }

  nodeSubject(node: string, verb: string): string {
    return `petrel.${this.cluster}.node.${node}.${verb}`;
  }

  get sessionsSubject(): string {
    return `petrel.${this.cluster}.sessions`;
  }

  /** Fire and forget; a failure (the connection closed, a payload past the server's limit) is logged, never thrown at the caller. */
  publish(subject: string, data: unknown): void {
    try {
      this.#nc.publish(subject, enc.encode(JSON.stringify(data)));
    } catch (err) {
      this.#logger.error({ what: 'cluster_publish_failed', subject, err: String(err) }, 'a cluster message could not be published');
    }
  }

  /** The largest message the NATS server takes (its max_payload, 1 MiB by default). */
  get maxPayload(): number {
    const n = this.#nc.info?.max_payload;
    return typeof n === 'number' && n > 0 ? n : 1024 * 1024;
  }

  /** Resolves with the reply; rejects with BusUnreachable when there is none in `timeoutMs`. */
  request(subject: string, data: unknown, timeoutMs: number): Promise<BusReply> {
    return this.requestJson(subject, JSON.stringify(data), timeoutMs);
  }

  /** As request, with the payload already serialised (JSON text). */
  requestJson(subject: string, json: string, timeoutMs: number): Promise<BusReply> {
    // The client's own timer is only a backstop: the timeout is the one below, which gives the socket one more read first.
    const asked = this.#nc.request(subject, enc.encode(json), { timeout: timeoutMs * 2 + 1000 });
    return afterPendingInput(asked, timeoutMs).then(
      (m) => {
        if (m === TIMED_OUT) throw new BusUnreachable('timeout', `no answer on ${subject} within ${timeoutMs} ms`);
        return JSON.parse(dec.decode(m.data)) as BusReply;
      },
      (err: unknown) => {
        const code = (err as { code?: string }).code;
        if (code === '503') throw new BusUnreachable('no_responders', `nobody answers on ${subject}`);
        if (code === 'TIMEOUT') throw new BusUnreachable('timeout', `no answer on ${subject} within ${timeoutMs} ms`);
        throw new BusUnreachable('closed', `the request on ${subject} failed: ${(err as Error).message}`);
      },
    );
  }

  /**
   * Calls `handle` for each message of `subject`, in order; a request
   * (a message with a reply subject) is answered with what it returns.
   */
  subscribe(subject: string, handle: (data: any) => unknown, onError: (err: unknown) => void): void {
    const sub = this.#nc.subscribe(subject, {
      callback: (err, m) => {
        if (err !== null) {
          onError(err);
          return;
        }
        let reply: unknown;
        try {
          reply = handle(JSON.parse(dec.decode(m.data)));
        } catch (e) {
          onError(e);
          reply = { ok: false, error: String(e) };
        }
        if (m.reply === undefined || m.reply === '') return;
        try {
          m.respond(enc.encode(JSON.stringify(reply ?? { ok: true })));
        } catch (e) {
          onError(e);
        }
      },
    });
    this.#subs.push(sub);
  }

  /** Lets what was published go out, then closes. */
  async close(): Promise<void> {
    try {
      await this.#nc.drain();
    } catch {
      await this.#nc.close().catch(() => {});
    }
  }
}

const TIMED_OUT: unique symbol = Symbol('timed out');

/**
 * `p`, or TIMED_OUT if it has not settled `ms` after the call. A process
 * that stalled (a long pause of its own: a stop signal, the machine
 * swapping, a slow garbage collection) runs its expired timers before it
 * reads the input that came meanwhile, so a reply waiting in the socket
 * would count as missing and a node that did answer as silent. The timeout
 * waits for one turn of input (setImmediate runs after the poll phase)
 * before it counts.
 */
export function afterPendingInput<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => setImmediate(() => {
      if (settled) return;
      settled = true;
      resolve(TIMED_OUT);
    }), ms);
    p.then(
      (v) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

