/**
 * Real Modbus conversations: every profile read by the driver from the simulated meter over
 * Modbus TCP on loopback and over Modbus RTU on a socat pty pair (all profiles as different unit
 * ids on one bus, read concurrently through one shared port), plus RTU over TCP and a generic
 * profile described as data.
 */
import modbusSerial from 'modbus-serial';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Meter, openMeter, PROFILES } from '../drivers/index.js';
import { SIM_CONTROL, type SimBus, type SimMeter, startSimBus, startSimMeter } from '../sim/meter.js';
import { waitFor } from '../sim/meter/testing.js';
import { openPtyPair, type PtyPair } from '../sim/pty.js';

const PROFILE_NAMES = Object.keys(PROFILES);
/** Register resolution per profile: ABB counts 0.01 kWh, Carlo Gavazzi 0.1 kWh. */
const resolutionWh = (profile: string) =>
  profile.startsWith('abb') ? 10 : profile.match(/^e[mt]340$/) ? 100 : 1;

async function expectReadsLikeSim(meter: Meter, sim: SimMeter, profile: string) {
  const id = await meter.identity();
  // Wallboxes read as meters have no serial register.
  const serial = PROFILES[profile]!.serial ? { serial: sim.serial } : {};
  expect(id).toEqual({ ...serial, profile, unitId: sim.unitId });
  const reading = await meter.read();
  expect(Math.abs(reading.energyWh - sim.energyWh)).toBeLessThanOrEqual(resolutionWh(profile));
  expect(reading.epoch).toBe(0);
  expect(reading.powerW).toBeDefined();
  if (PROFILES[profile]!.quantities.voltage) expect(reading.voltageV).toBeCloseTo(230, 1);
  if (PROFILES[profile]!.quantities.frequency) expect(reading.frequencyHz).toBeCloseTo(50, 1);
}

describe('every profile over Modbus TCP', () => {
  for (const profile of PROFILE_NAMES) {
    it(profile, async () => {
      const sim = await startSimMeter({ profile, unitId: 3, tcp: { port: 0 }, initialWh: 1_234_567 });
      const meter = await openMeter({
        profile,
        unitId: 3,
        transport: { kind: 'tcp', host: '127.0.0.1', port: sim.port! },
      });
      try {
        await expectReadsLikeSim(meter, sim, profile);
        // 11 kW at 600× real time: 1.8 kWh per real second; the guard is told the sim's speed.
        sim.startCharging(11, { timeScale: 600 });
        await new Promise((r) => setTimeout(r, 300));
        expect((await meter.read()).powerW).toBeGreaterThan(0);
        expect(meter.stats().errors.timeout).toBe(0);
      } finally {
        await meter.close();
        await sim.close();
      }
    });
  }
});

describe('every profile over Modbus RTU on one pty bus', () => {
  let pty: PtyPair;
  let bus: SimBus;
  const meters: Meter[] = [];

  beforeAll(async () => {
    pty = await openPtyPair();
    bus = await startSimBus({
      rtu: { path: pty.slave },
      meters: PROFILE_NAMES.map((profile, i) => ({ profile, unitId: i + 1, initialWh: 10_000 * (i + 1) })),
    });
    for (const [i, profile] of PROFILE_NAMES.entries()) {
      meters.push(
        await openMeter({
          profile,
          unitId: i + 1,
          transport: { kind: 'rtu', port: pty.master, baudRate: 19200 },
        }),
      );
    }
  });
  afterAll(async () => {
    for (const m of meters) await m.close();
    await bus?.close();
    await pty?.close();
  });

  for (const [i, profile] of PROFILE_NAMES.entries()) {
    it(profile, async () => {
      await expectReadsLikeSim(meters[i]!, bus.meters[i]!, profile);
    });
  }

  it('takes turns on the shared port when all meters read at once', async () => {
    const readings = await Promise.all(meters.map((m) => m.readEnergyWh()));
    readings.forEach((wh, i) => {
      expect(Math.abs(wh - 10_000 * (i + 1))).toBeLessThanOrEqual(100);
    });
    for (const m of meters) expect(m.stats().errors).toMatchObject({ timeout: 0, crc: 0 });
  });

  it('refuses a second meter on the same port with other line settings', async () => {
    await expect(
      openMeter({
        profile: 'sdm630',
        unitId: 9,
        transport: { kind: 'rtu', port: pty.master, baudRate: 9600 },
      }),
    ).rejects.toMatchObject({ kind: 'config' });
  });
});

describe('RTU over TCP (serial gateway) and a generic profile', () => {
  it('reads an SDM630 through a gateway and the same register described as generic', async () => {
    const sim = await startSimMeter({
      profile: 'sdm630',
      tcp: { port: 0, framing: 'rtu' },
      initialWh: 42_000,
    });
    const transport = { kind: 'rtu-over-tcp', host: '127.0.0.1', port: sim.port! } as const;
    const builtIn = await openMeter({ profile: 'sdm630', unitId: 1, transport });
    const generic = await openMeter({
      profile: 'generic',
      unitId: 1,
      transport,
      generic: {
        name: 'diy-sdm',
        quantities: {
          energy: { kind: 'input', address: 0x48, type: 'float32', unit: 'kWh' },
          power: { kind: 'input', address: 0x34, type: 'float32', unit: 'W' },
        },
        serial: { kind: 'holding', address: 0xfc00, type: 'uint32', unit: 'Wh' },
      },
    });
    try {
      expect(await builtIn.readEnergyWh()).toBe(42_000);
      expect(await generic.read()).toMatchObject({ energyWh: 42_000, powerW: 0, epoch: 0 });
      expect(await generic.identity()).toEqual({ serial: sim.serial, profile: 'diy-sdm', unitId: 1 });
    } finally {
      await builtIn.close();
      await generic.close();
      await sim.close();
    }
  });
});

describe('charging', () => {
  it('is switched over Modbus by the sim-only control register and integrates a full session', async () => {
    const sim = await startSimMeter({ profile: 'abb-b23', tcp: { port: 0 }, initialWh: 5_000 });
    const client = new modbusSerial.default();
    await client.connectTCP('127.0.0.1', { port: sim.port! });
    client.setID(1);
    const timeScale = 5_000;
    const meter = await openMeter({
      profile: 'abb-b23',
      unitId: 1,
      transport: { kind: 'tcp', host: '127.0.0.1', port: sim.port! },
      plausibility: { maxPowerW: 22_000 * timeScale },
    });
    try {
      await client.writeRegister(SIM_CONTROL.powerHectoWatt, 220);
      await client.writeCoil(SIM_CONTROL.enable, true);
      expect(sim.charging).toBe(true);
      expect((await client.readHoldingRegisters(SIM_CONTROL.enable, 2)).data).toEqual([1, 220]);
      await client.writeRegister(SIM_CONTROL.enable, 0);
      expect(sim.charging).toBe(false);

      // A 20 kWh session at 22 kW: ramp, constant, taper, stop — seconds instead of 80 minutes.
      const start = await meter.readEnergyWh();
      sim.startCharging(22, { targetWh: 20_000, timeScale });
      let peak = 0;
      await waitFor(async () => {
        peak = Math.max(peak, (await meter.read()).powerW ?? 0);
        return sim.powerW === 0 && sim.energyWh > 24_000;
      }, 10_000);
      expect(peak).toBeGreaterThan(20_000);
      const end = await meter.readEnergyWh();
      expect(end - start).toBeGreaterThanOrEqual(19_990);
      expect(end - start).toBeLessThanOrEqual(20_000);
    } finally {
      client.close(() => {});
      await meter.close();
      await sim.close();
    }
  });
});
