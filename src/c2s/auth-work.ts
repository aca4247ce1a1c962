// Password hashing (PBKDF2) is the most a client can make the server compute
// with a few bytes: every SCRAM exchange for a user kept in plain text and
// every PLAIN login costs `scram_iterations` rounds on libuv's thread pool,
// which file and DNS work share. WorkLimit bounds how much of it runs at
// once, server-wide; each connection has at most one piece running or
// waiting (SaslNegotiation), so the queue is never longer than the
// connections, which the connection limits bound.

export class WorkLimit {
  /** Pieces allowed to run at once; 0: no limit. */
  readonly max: number;
  #running = 0;
  #waiting: Array<() => void> = [];

  constructor(max: number) {
    this.max = max;
  }

  get running(): number {
    return this.#running;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** Runs `work` once fewer than `max` pieces run; its result or rejection. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.max > 0 && this.#running >= this.max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await work();
    } finally {
      // The slot passes straight to the next waiter, so #running stays at max while any wait.
      const next = this.#waiting.shift();
      if (next !== undefined) next();
      else this.#running--;
    }
  }
}
