// When to try a failed delivery again: the retry policy of a handler, the
// same for every backend (the backend says whether a failure is worth a
// retry, and may ask for a longer wait).
import { int, section, type Spec } from '../../../config/schema.ts';

export interface RetryPolicy {
  /** Every attempt counts, the first included. */
  max_attempts: number;
  /** Milliseconds. */
  initial_delay: number;
  max_delay: number;
  /** Milliseconds after the event was stored beyond which it is not tried again. */
  max_age: number;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ max_attempts: 8, initial_delay: 1000, max_delay: 300_000, max_age: 86_400_000 });

/** The `retry` table of a handler or service that delivers through the outbox, with DEFAULT_RETRY's values. */
export function retrySpec(): Spec {
  return section(
    {
      max_attempts: int({ min: 1, default: DEFAULT_RETRY.max_attempts }),
      initial_delay: int({ min: 0, default: DEFAULT_RETRY.initial_delay }),
      max_delay: int({ min: 0, default: DEFAULT_RETRY.max_delay }),
      max_age: int({ min: 1, default: DEFAULT_RETRY.max_age }),
    },
    { default: true },
  );
}

/**
 * Exponential backoff with full jitter: a uniformly random wait between 0 and
 * min(max_delay, initial_delay × 2^(attempts − 1)), so that many events failing
 * together do not come back together.
 */
export function backoffMs(p: RetryPolicy, attempts: number, random: () => number = Math.random): number {
  const ceiling = Math.min(p.max_delay, p.initial_delay * 2 ** Math.min(attempts - 1, 40));
  return Math.floor(random() * ceiling);
}
