// A webhook receiver that counts what it accepted, for the cluster tests: a
// real node:http listener on loopback, keyed by each request's webhook-id.
//
// "Accepted" is precise: the listener wrote a 2xx answer and the response
// was handed to a connection that was still open ('finish' on the
// response). A request whose connection closed before it was answered (its
// sender died, or gave up) is "aborted", never accepted; a 503 is "refused".
// An event accepted twice is a duplicate delivery; the tests assert there is
// none.
import http from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export type Mode =
  /** 2xx, except where `refuse` says 503. */
  | 'answer'
  /** Holds every request unanswered until `release()`. */
  | 'hold';

export class CountingWebhook {
  port = 0;
  mode: Mode = 'answer';
  /** webhook-id → how many times it was accepted. */
  readonly accepted = new Map<string, number>();
  /** webhook-id → the body it carried (the same on every attempt). */
  readonly bodyOf = new Map<string, string>();
  /** webhook-id → attempts seen (answered or not). */
  readonly attempts = new Map<string, number>();
  refused = 0;
  /** webhook-ids of requests whose connection closed before they were answered. */
  readonly aborted: string[] = [];
  /** Which attempts get a 503 while in 'answer' mode; default: none. */
  refuse: (id: string, attempt: number) => boolean = () => false;
  #held: Array<{ id: string; res: http.ServerResponse; answered: boolean }> = [];
  #server: http.Server;
  #waiters: Array<() => void> = [];

  constructor() {
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.#onRequest(req, res, Buffer.concat(chunks).toString('utf8')));
    });
    this.#server.keepAliveTimeout = 60_000;
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const id = String(req.headers['webhook-id']);
    const n = this.attempts.get(id) ?? 0;
    this.attempts.set(id, n + 1);
    this.bodyOf.set(id, body);
    const entry = { id, res, answered: false };
    res.once('close', () => {
      if (!entry.answered) {
        this.aborted.push(id);
        this.#wake();
      }
    });
    if (this.mode === 'hold') {
      this.#held.push(entry);
      this.#wake();
      return;
    }
    entry.answered = true;
    if (this.refuse(id, n)) {
      this.refused++;
      res.writeHead(503, { 'retry-after': '0' }).end('busy');
      this.#wake();
      return;
    }
    res.once('finish', () => {
      this.accepted.set(id, (this.accepted.get(id) ?? 0) + 1);
      this.#wake();
    });
    res.writeHead(200).end('ok');
  }

  /** Requests held right now (their connections still open). */
  get held(): number {
    return this.#held.filter((h) => !h.res.destroyed).length;
  }

  /** Back to 'answer' mode; every request still held is answered 503 (so none of them counts as accepted). */
  release(): void {
    this.mode = 'answer';
    for (const h of this.#held.splice(0)) {
      if (h.res.destroyed) continue;
      h.answered = true;
      this.refused++;
      h.res.writeHead(503, { 'retry-after': '0' }).end('busy');
    }
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Events accepted at least once whose body matches. */
  acceptedMatching(re: RegExp): string[] {
    return [...this.accepted.keys()].filter((id) => re.test(this.bodyOf.get(id) ?? ''));
  }

  /** webhook-ids accepted more than once. */
  duplicates(): string[] {
    return [...this.accepted].filter(([, n]) => n > 1).map(([id]) => id);
  }

  until(pred: () => boolean, timeoutMs = 20_000, what = 'the expected requests'): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`webhook: no ${what} within ${timeoutMs} ms (accepted ${this.accepted.size}, refused ${this.refused}, aborted ${this.aborted.length}, held ${this.held})`)),
        timeoutMs,
      );
      const check = () => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        } else this.#waiters.push(check);
      };
      check();
    });
  }

  async up(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        this.port = (this.#server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  async down(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }
}

/** A stable "sometimes": about one event in three is refused with 503 on its first attempt. */
export function refuseFirstOfEveryThird(id: string, attempt: number): boolean {
  return attempt === 0 && createHash('sha256').update(id).digest()[0]! % 3 === 0;
}
