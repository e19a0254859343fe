/**
 * The chaos run's goal (sim/chaos.ts, issue 15): nothing lost, nothing billed twice, nobody
 * overpaid, and unpaid energy at most one receipt interval per EV session killed mid-charge.
 */
import { describe, expect, it } from 'vitest';
import { goalMet } from '../sim/chaos.js';

const clean = { lost: 0, doubleBilled: 0, overpaidWh: 0, unpaidWh: 0, unpaidBoundWh: 0 };

describe('the chaos goal', () => {
  it('holds for a clean run, and for unpaid energy within the killed EV sessions’ receipt intervals', () => {
    expect(goalMet(clean)).toBe(true);
    // Two EV sessions killed mid-charge, receipts every 500 Wh: up to 1,000 Wh may go unpaid.
    expect(goalMet({ ...clean, unpaidWh: 1000, unpaidBoundWh: 1000 })).toBe(true);
  });

  it.each([
    ['a lost session', { lost: 1 }],
    ['a session billed twice', { doubleBilled: 1 }],
    ['a driver overpaid', { overpaidWh: 1 }],
    ['unpaid beyond the bound', { unpaidWh: 1001, unpaidBoundWh: 1000 }],
    ['unpaid with no EV killed', { unpaidWh: 1 }],
  ])('fails for %s', (_what, bad) => {
    expect(goalMet({ ...clean, ...bad })).toBe(false);
  });
});
