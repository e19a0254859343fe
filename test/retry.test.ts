/** The one retry helper (drivers/retry.ts): backoff, jitter, limits. Pure logic, no timers worth waiting for. */
import { describe, expect, it } from 'vitest';
import { Backoff, backoffMs, retry } from '../drivers/retry.js';

describe('backoff with jitter', () => {
  it('doubles from the base up to the cap, moved by at most the jitter either way', () => {
    const o = { baseMs: 100, maxMs: 1000, jitter: 0.25 };
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffMs(a, o, () => 0.5))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(backoffMs(1, o, () => 0)).toBe(150);
    expect(backoffMs(1, o, () => 1)).toBe(250);
    expect(backoffMs(0, { baseMs: 100, maxMs: 100, jitter: 0 }, Math.random)).toBe(100);
  });

  it('spreads many devices apart', () => {
    const waits = new Set(Array.from({ length: 50 }, () => backoffMs(3, { baseMs: 100, maxMs: 10_000 })));
    expect(waits.size).toBeGreaterThan(10);
  });

  it('counts its own attempts and starts over after a success', () => {
    const b = new Backoff({ baseMs: 10, maxMs: 1000, jitter: 0 });
    expect([b.next(), b.next(), b.next()]).toEqual([10, 20, 40]);
    b.reset();
    expect(b.next()).toBe(10);
  });
});

describe('retry', () => {
  const fast = { baseMs: 1, maxMs: 2 };

  it('tries again while the error is retryable, then returns', async () => {
    let calls = 0;
    const retried: number[] = [];
    const out = await retry(
      async () => {
        if (++calls < 3) throw new Error('away');
        return 'ok';
      },
      { ...fast, retryable: () => true, onRetry: (_e, _w, attempt) => retried.push(attempt) },
    );
    expect(out).toBe('ok');
    expect(retried).toEqual([0, 1]);
  });

  it('throws an answer (not retryable) at once', async () => {
    let calls = 0;
    const fn = async () => {
      calls++;
      throw new Error('reverted');
    };
    await expect(retry(fn, { ...fast, retryable: () => false })).rejects.toThrow('reverted');
    expect(calls).toBe(1);
  });

  it('gives up after its retries, with the error giveUp makes', async () => {
    let calls = 0;
    const fn = async () => {
      calls++;
      throw new Error('away');
    };
    await expect(
      retry(fn, { ...fast, retries: 2, retryable: () => true, giveUp: (e) => new Error(`gave up: ${e}`) }),
    ).rejects.toThrow('gave up: Error: away');
    expect(calls).toBe(3);
  });

  it('gives up when the next wait would pass the budget', async () => {
    let calls = 0;
    const fn = async () => {
      calls++;
      throw new Error('away');
    };
    await expect(
      retry(fn, { baseMs: 1000, maxMs: 1000, budgetMs: 10, retryable: () => true }),
    ).rejects.toThrow('away');
    expect(calls).toBe(1);
  });
});
