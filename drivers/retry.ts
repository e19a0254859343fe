/**
 * The one retry helper: exponential backoff with jitter, for everything that waits for something
 * away (a meter on a noisy line, the chain node, the MQTT broker, a simulated driver finding every
 * station busy). Jitter spreads the retries of many devices that lost the same thing at the same
 * moment, so they do not all come back in one burst. It lives in the lowest room (drivers import
 * nothing of ours) so every layer can use it.
 */

export interface BackoffOptions {
  /** The first wait (ms). */
  baseMs: number;
  /** The longest wait (ms). */
  maxMs: number;
  /** Each wait is this many times the last (default 2). */
  factor?: number;
  /** Each wait is moved at random by up to this fraction either way (default 0.25). */
  jitter?: number;
}

/** The wait before retry number `attempt` (0 = the first retry). */
export function backoffMs(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const plain = Math.min(o.maxMs, o.baseMs * (o.factor ?? 2) ** attempt);
  const jitter = o.jitter ?? 0.25;
  return Math.round(plain * (1 - jitter + 2 * jitter * random()));
}

/** A backoff that counts its own attempts: `next()` after a failure, `reset()` after a success. */
export class Backoff {
  private attempt = 0;
  constructor(private readonly options: BackoffOptions) {}
  next(): number {
    return backoffMs(this.attempt++, this.options);
  }
  reset(): void {
    this.attempt = 0;
  }
}

export interface RetryOptions extends BackoffOptions {
  /** Whether this error is worth another try (anything else is thrown at once). */
  retryable: (err: unknown) => boolean;
  /** Retries after the first attempt (default: unlimited, bounded by `budgetMs`). */
  retries?: number;
  /** Gives up when the next wait would end later than this many ms after the start. */
  budgetMs?: number;
  /** Called before each wait (for a log line or a counter). */
  onRetry?: (err: unknown, waitMs: number, attempt: number) => void;
  /** What to throw when the retries or the budget run out (default: the last error). */
  giveUp?: (err: unknown) => unknown;
}

/** Runs `fn` until it succeeds, an error is not retryable, or the retries or the budget run out. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const until = Date.now() + (o.budgetMs ?? Number.POSITIVE_INFINITY);
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!o.retryable(err)) throw err;
      const wait = backoffMs(attempt, o);
      if (attempt >= (o.retries ?? Number.POSITIVE_INFINITY) || Date.now() + wait > until)
        throw o.giveUp ? o.giveUp(err) : err;
      o.onRetry?.(err, wait, attempt);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
