/**
 * The sim's charging cables (sim/world.ts, cables): current flows only to the car holding a
 * station's cable. A second car that switches on "plugged into" a station already charging
 * another gets nothing (before, both metered the one station's energy, and the chaos run at
 * 30 EVs x 8 stations counted the second car's session as lost with 17 kWh unpaid).
 */
import { describe, expect, it } from 'vitest';
import { SIM_CONTROL } from '../drivers/simcontrol.js';
import { SimMeterModel } from '../sim/meter/model.js';
import { cables, type Device } from '../sim/world.js';

const STATION = `0x${'ab'.repeat(20)}`;

function device(name: string, role: 'ev' | 'hcs', address: string): Device & { model: SimMeterModel } {
  const model = new SimMeterModel({ profile: 'sdm630' });
  model.linked = true;
  return { name, role, address, model, meter: { model } } as unknown as Device & { model: SimMeterModel };
}

/** Plugs a car into `to` and switches it on, as the EV agent does over Modbus. */
function plugIn(car: SimMeterModel, to: string): void {
  const hex = to.slice(2);
  for (let i = 0; i < SIM_CONTROL.plugWords; i++)
    car.writeRegister(SIM_CONTROL.plugFirst + i, Number.parseInt(hex.slice(i * 4, i * 4 + 4), 16));
  car.writeRegister(SIM_CONTROL.enable, 1);
}

describe('the sim’s cables', () => {
  it('feed one car per station: the one that came first, until it lets go', () => {
    const hcs = device('HCS1', 'hcs', STATION);
    const first = device('EV1', 'ev', `0x${'01'.repeat(20)}`);
    const second = device('EV2', 'ev', `0x${'02'.repeat(20)}`);
    // EV2 comes later in the device list than EV1, and EV1 later than the station.
    const devices = [hcs, second, first];
    hcs.model.writeRegister(SIM_CONTROL.enable, 1);
    plugIn(first.model, STATION);
    cables(devices);
    expect(first.model.charging).toBe(true);
    plugIn(second.model, STATION);
    cables(devices);
    expect(hcs.model.charging).toBe(true);
    expect(first.model.charging).toBe(true);
    expect(second.model.charging).toBe(false);
    // The first car lets go: the cable is the second's.
    first.model.writeRegister(SIM_CONTROL.enable, 0);
    cables(devices);
    expect(first.model.charging).toBe(false);
    expect(second.model.charging).toBe(true);
  });

  it('follow a car moved to another station (the plug registers written again)', () => {
    const other = `0x${'cd'.repeat(20)}`;
    const hcs1 = device('HCS1', 'hcs', STATION);
    const hcs2 = device('HCS2', 'hcs', other);
    const car = device('EV1', 'ev', `0x${'01'.repeat(20)}`);
    const devices = [hcs1, hcs2, car];
    hcs1.model.writeRegister(SIM_CONTROL.enable, 1);
    hcs2.model.writeRegister(SIM_CONTROL.enable, 1);
    plugIn(car.model, STATION);
    cables(devices);
    expect([hcs1.model.charging, hcs2.model.charging]).toEqual([true, false]);
    // Unplugged (all zeros), then plugged into the other station, word by word.
    plugIn(car.model, `0x${'00'.repeat(20)}`);
    cables(devices);
    expect(car.model.pluggedTo).toBe(`0x${'00'.repeat(20)}`);
    expect([hcs1.model.charging, car.model.charging]).toEqual([false, false]);
    plugIn(car.model, other);
    cables(devices);
    expect(car.model.pluggedTo).toBe(other);
    expect([hcs1.model.charging, hcs2.model.charging, car.model.charging]).toEqual([false, true, true]);
  });
});
