/**
 * The power an EV draws over a charging session: a ramp-up while the car and the wallbox agree
 * the current (IEC 61851 allows the car seconds to follow a new duty cycle), constant power, and a
 * taper near full as the battery management moves from constant current to constant voltage.
 */

/** Usual wallbox settings: 16 A / 32 A on one phase or three, 230 V. */
export const CHARGING_PRESETS_KW = [3.7, 7.4, 11, 22] as const;

export interface ChargingPlan {
  kw: number;
  /** Energy after which the car is full; none = charge until stopped. */
  targetWh?: number;
  /** Seconds (simulated) from 0 to full power. Default 8. */
  rampS?: number;
  /** Fraction of the target after which power tapers. Default 0.8. */
  taperFrom?: number;
}

/** Lowest power during the taper, as a fraction of the set power (balancing current at the very end). */
const TAPER_FLOOR = 0.08;

export function chargingPowerW(plan: ChargingPlan, elapsedS: number, deliveredWh: number): number {
  const full = plan.kw * 1000;
  if (plan.targetWh !== undefined && deliveredWh >= plan.targetWh) return 0;
  const ramp = Math.min(1, Math.max(0, elapsedS) / (plan.rampS ?? 8));
  let taper = 1;
  if (plan.targetWh !== undefined) {
    const from = plan.taperFrom ?? 0.8;
    const fraction = deliveredWh / plan.targetWh;
    if (fraction > from) taper = Math.max(TAPER_FLOOR, (1 - fraction) / (1 - from));
  }
  return full * ramp * taper;
}
