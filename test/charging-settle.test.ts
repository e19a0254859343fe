/** The final reading waits for the current to stop (agent/roles/charging.ts, settledReading). */
import { describe, expect, it } from 'vitest';
import { settledReading } from '../agent/roles/charging.js';

const fast = { everyMs: 5, maxMs: 200 };
/** A meter that reads `values` in turn, then its last value for ever. */
const meter = (values: number[]) => {
  let i = 0;
  const read = async () => values[Math.min(i++, values.length - 1)]!;
  return { read, reads: () => i };
};

describe('settledReading', () => {
  it('reads on while the energy still rises after the switch-off, and ends at the first repeat', async () => {
    const m = meter([1000, 1040, 1061, 1061, 1061]);
    expect(await settledReading(m.read, () => true, fast)).toBe(1061);
    expect(m.reads()).toBe(4);
  });

  it('a meter already still needs two reads', async () => {
    const m = meter([500]);
    expect(await settledReading(m.read, () => true, fast)).toBe(500);
    expect(m.reads()).toBe(2);
  });

  it('a meter that never stops counting ends at what was read by the deadline', async () => {
    let wh = 0;
    const got = await settledReading(
      async () => (wh += 10),
      () => true,
      { everyMs: 5, maxMs: 50 },
    );
    expect(got).toBe(wh);
    // One read per interval until the deadline, and one more: it did stop.
    expect(wh / 10).toBeLessThanOrEqual(50 / 5 + 1);
  });

  it('keeps the last good reading when the meter fails, goes implausible or runs backwards', async () => {
    let n = 0;
    const failing = async () => {
      if (n++ > 0) throw new Error('timeout');
      return 700;
    };
    expect(await settledReading(failing, () => true, fast)).toBe(700);
    expect(
      await settledReading(
        async () => 700,
        () => false,
        fast,
      ),
    ).toBeUndefined();
    expect(await settledReading(meter([900, 850]).read, () => true, fast)).toBe(900);
    const dead = async () => Promise.reject(new Error('gone'));
    expect(await settledReading(dead, () => true, fast)).toBeUndefined();
  });
});
