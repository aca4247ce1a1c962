// A spiral as exometer keeps it (MongooseIM's "spiral" metric): the sum of the
// last 60 seconds ("one") beside the running total ("count"). Sixty
// one-second buckets in a ring; a bucket is reset lazily when its second
// comes round again, so recording is O(1) with no timer.
export class Spiral {
  readonly #window: number;
  readonly #buckets: Float64Array;
  readonly #seconds: Float64Array;
  #total = 0;

  constructor(windowSeconds = 60) {
    this.#window = windowSeconds;
    this.#buckets = new Float64Array(windowSeconds);
    this.#seconds = new Float64Array(windowSeconds).fill(-Infinity);
  }

  add(n = 1, nowMs = Date.now()): void {
    const sec = Math.floor(nowMs / 1000);
    const i = sec % this.#window;
    if (this.#seconds[i] !== sec) {
      this.#seconds[i] = sec;
      this.#buckets[i] = 0;
    }
    this.#buckets[i]! += n;
    this.#total += n;
  }

  /** Sum over the last `windowSeconds` seconds, the current one included. */
  one(nowMs = Date.now()): number {
    const sec = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let i = 0; i < this.#window; i++) {
      const age = sec - this.#seconds[i]!;
      if (age >= 0 && age < this.#window) sum += this.#buckets[i]!;
    }
    return sum;
  }

  /** Everything ever added. */
  get count(): number {
    return this.#total;
  }
}
