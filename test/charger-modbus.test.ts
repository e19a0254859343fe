/**
 * Modbus wallboxes through their data profiles, against the simulated wallbox serving the same
 * profile: Heidelberg Energy Control over RTU on a socat pty pair, Phoenix EV-ETH and Wallbe over
 * Modbus TCP. Switching, current limits, the state map, the energy register and the watchdog.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ModbusCharger } from '../drivers/chargers/modbus.js';
import { openMeter } from '../drivers/index.js';
import { CHARGER_PROFILES } from '../drivers/chargers/profiles.js';
import { startSimWallbox } from '../sim/charger/modbus.js';
import { SimMeterModel } from '../sim/meter/model.js';
import { waitFor } from '../sim/meter/testing.js';
import { openPtyPair } from '../sim/pty.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(profile: string, via: 'tcp' | 'rtu', failsafeS = 15) {
  const meter = new SimMeterModel({ profile: 'sdm630', initialWh: 123_456 });
  let transport: ConstructorParameters<typeof ModbusCharger>[0]['transport'];
  let wb: Awaited<ReturnType<typeof startSimWallbox>>;
  if (via === 'rtu') {
    const pty = await openPtyPair();
    cleanups.push(() => pty.close());
    wb = await startSimWallbox({ profile, meter, rtu: { path: pty.slave, baudRate: 19200 } });
    transport = { kind: 'rtu', port: pty.master, baudRate: 19200 };
  } else {
    wb = await startSimWallbox({ profile, meter, tcp: { port: 0 } });
    transport = { kind: 'tcp', host: '127.0.0.1', port: wb.port! };
  }
  cleanups.push(() => wb.close());
  const charger = new ModbusCharger({ profile, transport, failsafeS });
  cleanups.push(() => charger.close());
  await charger.open();
  return { charger, wb, model: wb.model, meter, transport };
}

describe.each([
  ['heidelberg-ec', 'rtu'],
  ['phoenix-ev-eth', 'tcp'],
  ['wallbe', 'tcp'],
] as const)('Modbus wallbox %s over %s', (profile, via) => {
  it('maps its states, switches, limits the current and reads its energy register', async () => {
    const { charger, model } = await rig(profile, via);
    expect((await charger.state()).status).toBe('unplugged');
    model.evPlugged = true;
    expect(await charger.state()).toMatchObject({ status: 'plugged', enabled: false });
    await charger.enable(16, '1');
    expect(model.currentA).toBe(16);
    expect(model.offeringKw).toBeCloseTo((16 * 230 * 3) / 1000);
    expect(await charger.state()).toMatchObject({
      status: 'charging',
      enabled: true,
      currentLimitA: 16,
      energyWh: 123_456,
    });
    await charger.setCurrent(10);
    expect(model.currentA).toBe(10);
    // Below the IEC 61851 minimum is refused before anything is written.
    await expect(charger.setCurrent(3)).rejects.toThrow(/below the 6 A/);
    expect(model.currentA).toBe(10);
    await charger.disable();
    expect(model.offeringKw).toBe(0);
    expect((await charger.state()).status).toBe('plugged');
    model.faulted = true;
    const faulted = await charger.state();
    expect(faulted.status).toBe('fault');
    expect(faulted.raw).toMatch(/E|error/);
    const id = await charger.identity();
    expect(id).toMatchObject({
      vendor: CHARGER_PROFILES[profile]!.vendor,
      firmware: expect.stringMatching(/^1/),
    });
  });
});

describe('Modbus wallbox watchdog (failsafe)', () => {
  it('Heidelberg: the agent writes the watchdog and 0 A failsafe; silence stops the charge, traffic keeps it', async () => {
    const { charger, model } = await rig('heidelberg-ec', 'tcp', 1);
    expect(charger.failsafe()).toMatchObject({ configured: true, worstCaseS: 1 });
    model.evPlugged = true;
    await charger.enable(16, '1');
    expect(model.offeringKw).toBeGreaterThan(0);
    // The agent falls silent: the wallbox drops to its failsafe current, 0 A.
    await waitFor(() => model.tripped, 5_000);
    expect(model.offeringKw).toBe(0);
    // It speaks again: the setpoint holds again.
    await charger.keepAlive();
    expect(model.tripped).toBe(false);
    expect(model.offeringKw).toBeGreaterThan(0);
  });

  it('Phoenix EV-ETH has no watchdog register, and says so', async () => {
    const { charger } = await rig('phoenix-ev-eth', 'tcp');
    expect(charger.failsafe()).toMatchObject({ configured: false });
    expect(charger.failsafe().detail).toMatch(/no Modbus watchdog/);
  });

  it('an absent wallbox is an io error naming the profile and the line', async () => {
    const { charger, wb } = await rig('phoenix-ev-eth', 'tcp');
    wb.disappear();
    await expect(charger.state()).rejects.toThrow(/phoenix-ev-eth unit 255 at Modbus TCP 127\.0\.0\.1:\d+/);
  });
});

describe("a wallbox's built-in meter as the billing meter", () => {
  it('Heidelberg over RTU: meter and charger share the one line, the meter profile reads its energy register', async () => {
    const { charger, model, meter, transport } = await rig('heidelberg-ec', 'rtu');
    const billing = await openMeter({ profile: 'heidelberg-ec', unitId: 1, transport });
    cleanups.push(() => billing.close());
    model.evPlugged = true;
    meter.startCharging(11, { timeScale: 10 });
    const [wh, st] = await Promise.all([billing.readEnergyWh(), charger.state()]);
    expect(Math.abs(wh - meter.energyWh)).toBeLessThanOrEqual(50);
    expect(st.status).toBe('plugged');
    expect(billing.stats().errors).toMatchObject({ timeout: 0, crc: 0 });
  });
});
