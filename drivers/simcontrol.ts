/**
 * The simulated meter's control block (served by sim/meter/model.ts; real meters have nothing
 * here): holding register 0x7F00 = charging on (1) or off (0), 0x7F01 = charging power in units
 * of 100 W (e.g. 110 = 11 kW), 0x7F02..0x7F0B = the 20-byte address of the station an EV's meter
 * is plugged into (sim/world.ts links the two meters: current flows only while both switches are
 * on, as through a real cable). Coil 0x7F00 mirrors 0x7F00. With `charger: "sim-control"` the
 * agent switches the simulated load through it; `mbpoll` can too.
 */
import type { Meter } from './types.js';

export const SIM_CONTROL = {
  enable: 0x7f00,
  powerHectoWatt: 0x7f01,
  plugFirst: 0x7f02,
  plugWords: 10,
} as const;

/** A 0x address as the plug registers' ten big-endian words. */
export function plugWords(address: string): number[] {
  const hex = address.slice(2).padStart(40, '0');
  return Array.from({ length: SIM_CONTROL.plugWords }, (_, i) =>
    Number.parseInt(hex.slice(4 * i, 4 * i + 4), 16),
  );
}

/**
 * Switches the simulated charge on (at `kw`) or off. An EV names the station it is plugged into
 * (`plugTo`), which the simulated cable needs. Power first, then the switch: the meter starts at
 * the power it was given.
 */
export async function switchSimCharge(
  meter: Pick<Meter, 'writeRegisters'>,
  on: boolean,
  kw = 0,
  plugTo?: string,
): Promise<void> {
  if (plugTo) await meter.writeRegisters(SIM_CONTROL.plugFirst, plugWords(plugTo));
  if (on) await meter.writeRegisters(SIM_CONTROL.powerHectoWatt, [Math.round(kw * 10)]);
  await meter.writeRegisters(SIM_CONTROL.enable, [on ? 1 : 0]);
}
