// Log lines of repeated failures, at most one a window (a second by default):
// the first of a window is logged at once, the others are counted, and when
// the window closes a summary line gives their number. So a burst cannot
// flood the log, and no failure goes unlogged: the last ones of a burst are
// in the summary, not lost with the next line that never comes.

export interface LogLimiter {
  /** One occurrence: true when it is to be logged now; otherwise it is counted for the summary. */
  admit(): boolean;
  /** Logs the summary of what was counted so far, if anything (at shutdown). */
  flush(): void;
}

export function logLimiter(summary: (suppressed: number, windowMs: number) => void, windowMs = 1000, now: () => number = Date.now): LogLimiter {
  let last = -Infinity;
  let suppressed = 0;
  let timer: NodeJS.Timeout | null = null;

  const close = () => {
    timer = null;
    if (suppressed === 0) return;
    const n = suppressed;
    suppressed = 0;
    // The summary is this window's line: what comes in the next one is counted again.
    last = now();
    summary(n, windowMs);
  };

  return {
    admit() {
      const t = now();
      if (t - last >= windowMs && timer === null) {
        last = t;
        return true;
      }
      suppressed++;
      if (timer === null) {
        timer = setTimeout(close, Math.max(0, last + windowMs - t));
        timer.unref();
      }
      return false;
    },
    flush() {
      if (timer !== null) clearTimeout(timer);
      close();
    },
  };
}
