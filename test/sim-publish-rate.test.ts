/**
 * The flood bench's reading of the broker's running publish count (sim/broker.ts publishRate):
 * the average over the window and the slowest second. Pure logic.
 */
import { describe, expect, it } from 'vitest';
import { publishRate } from '../sim/broker.js';

describe('publishRate', () => {
  const samples: [number, number][] = [
    [0, 100],
    [1000, 100],
    [2000, 10_100],
    [3000, 20_100],
    [4000, 28_100],
    [5000, 38_100],
    [6000, 38_100],
  ];

  it('averages from the first to the last sample inside the window, and finds the slowest interval', () => {
    expect(publishRate(samples, 1000, 5000)).toEqual({ perSecond: 9500, minPerSecond: 8000, seconds: 4 });
  });

  it('leaves out samples outside the window (the quiet seconds before and after)', () => {
    expect(publishRate(samples, 1500, 5500)).toEqual({
      perSecond: 28_000 / 3,
      minPerSecond: 8000,
      seconds: 3,
    });
  });

  it('says it cannot tell from fewer than two samples', () => {
    expect(publishRate(samples, 2500, 3500).perSecond).toBeNaN();
  });
});
