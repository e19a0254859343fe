/**
 * Every fault the simulated meter can show, seen through the driver: retries, classified errors,
 * plausibility rejections, discontinuity events, reconnects after a vanished port or device, and a
 * device that allows one TCP client.
 */
import { createConnection } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Discontinuity, type Meter, MeterError, openMeter } from '../drivers/index.js';
import { type SimMeter, startSimBus, startSimMeter } from '../sim/meter.js';
import { waitFor } from '../sim/meter/testing.js';
import { openPtyPair, type PtyPair } from '../sim/pty.js';

const TIMEOUT_MS = 150;

async function failure(p: Promise<unknown>): Promise<MeterError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MeterError);
  return err as MeterError;
}

for (const transport of ['rtu', 'tcp'] as const) {
  describe(`request faults over ${transport === 'rtu' ? 'RTU on a pty' : 'Modbus TCP'}`, () => {
    let pty: PtyPair | undefined;
    let sim: SimMeter;
    let meter: Meter;

    beforeAll(async () => {
      if (transport === 'rtu') pty = await openPtyPair();
      sim = await startSimMeter({
        profile: 'sdm630',
        initialWh: 100_000,
        ...(pty ? { rtu: { path: pty.slave } } : { tcp: { port: 0 } }),
      });
      meter = await openMeter({
        profile: 'sdm630',
        unitId: 1,
        timeoutMs: TIMEOUT_MS,
        retries: 2,
        transport: pty
          ? { kind: 'rtu', port: pty.master, baudRate: 9600 }
          : { kind: 'tcp', host: '127.0.0.1', port: sim.port! },
      });
      expect(await meter.readEnergyWh()).toBe(100_000);
    });
    afterEach(() => sim.clear());
    afterAll(async () => {
      await meter?.close();
      await sim?.close();
      await pty?.close();
    });

    it('no response once: retried, then read', async () => {
      const before = meter.stats();
      sim.inject({ kind: 'no-response', count: 1 });
      expect(await meter.readEnergyWh()).toBe(100_000);
      const after = meter.stats();
      expect(after.errors.timeout - before.errors.timeout).toBe(1);
      expect(after.retries - before.retries).toBe(1);
    });

    it('no response at all: a timeout error that says what to check', async () => {
      sim.inject({ kind: 'no-response' });
      const faults: MeterError[] = [];
      const onFault = (e: MeterError) => faults.push(e);
      meter.on('fault', onFault);
      const err = await failure(meter.readEnergyWh());
      meter.off('fault', onFault);
      expect(err.kind).toBe('timeout');
      expect(err.message).toMatch(
        transport === 'rtu'
          ? /^no response from unit 1 at 9600 8N1 on .*master: check A\/B wiring, termination, unit id and baud$/
          : /^no response from unit 1 at Modbus TCP 127\.0\.0\.1:\d+: check the unit id/,
      );
      expect(faults).toHaveLength(1);
    });

    it('corrupted frames: classified as crc, retried', async () => {
      sim.inject({ kind: 'bad-crc', count: 1 });
      const before = meter.stats().errors.crc;
      expect(await meter.readEnergyWh()).toBe(100_000);
      expect(meter.stats().errors.crc - before).toBe(1);
      sim.inject({ kind: 'bad-crc' });
      expect((await failure(meter.readEnergyWh())).kind).toBe('crc');
    });

    it('exception codes: 2 fails at once, 6 (busy) is retried', async () => {
      sim.inject({ kind: 'exception', code: 2 });
      const requests = meter.stats().requests;
      const err = await failure(meter.readEnergyWh());
      expect([err.kind, err.exceptionCode]).toEqual(['exception', 2]);
      expect(err.message).toMatch(/check the profile matches the meter model/);
      expect(meter.stats().requests - requests).toBe(1);
      sim.clear();
      sim.inject({ kind: 'exception', code: 6, count: 1 });
      expect(await meter.readEnergyWh()).toBe(100_000);
    });

    it('slow answers: within the timeout they count as latency; beyond it, no stale value is taken', async () => {
      sim.inject({ kind: 'slow', delayMs: 60, count: 1 });
      expect(await meter.readEnergyWh()).toBe(100_000);
      expect(meter.stats().latencyMs.max).toBeGreaterThanOrEqual(55);
      // The late answer to the first attempt must not be read as the answer to the next request.
      sim.inject({ kind: 'slow', delayMs: TIMEOUT_MS + 60, count: 1 });
      expect(await meter.readEnergyWh()).toBe(100_000);
      const power = await meter.read();
      expect(power.powerW).toBe(0);
      expect(power.voltageV).toBeCloseTo(230, 3);
    });

    it('NaN and all-ones energy registers are rejected, never passed on', async () => {
      sim.inject({ kind: 'nan' });
      const nan = await failure(meter.readEnergyWh());
      expect(nan.kind).toBe('implausible');
      sim.clear();
      sim.inject({ kind: 'all-ones' });
      const ones = await failure(meter.readEnergyWh());
      expect([ones.kind, ones.message]).toEqual(['implausible', expect.stringMatching(/all ones/)]);
      sim.clear();
      expect(await meter.readEnergyWh()).toBe(100_000);
      expect(meter.stats().errors.implausible).toBeGreaterThanOrEqual(2);
    });

    it('a one-off impossible jump is re-read and dropped', async () => {
      sim.inject({ kind: 'glitch', wh: 5_000_000, count: 1 });
      expect(await meter.readEnergyWh()).toBe(100_000);
      expect((await meter.read()).epoch).toBe(0);
    });
  });
}

describe('discontinuities: reset, replaced meter, jump', () => {
  let sim: SimMeter;
  let meter: Meter;
  const events: Discontinuity[] = [];

  beforeAll(async () => {
    sim = await startSimMeter({
      profile: 'em340',
      tcp: { port: 0 },
      initialWh: 250_000,
      serial: 'CG12345678',
    });
    meter = await openMeter({
      profile: 'em340',
      unitId: 1,
      transport: { kind: 'tcp', host: '127.0.0.1', port: sim.port! },
    });
    meter.on('reset', (d) => events.push(d));
    meter.on('replaced', (d) => events.push(d));
    expect(await meter.read()).toMatchObject({ energyWh: 250_000, epoch: 0 });
  });
  afterAll(async () => {
    await meter?.close();
    await sim?.close();
  });

  it('a counter reset is an event and a new epoch, never a step back', async () => {
    sim.inject({ kind: 'reset' });
    const r = await meter.read();
    expect(r).toMatchObject({ energyWh: 0, epoch: 1 });
    expect(events.at(-1)).toMatchObject({
      kind: 'reset',
      previousWh: 250_000,
      currentWh: 0,
      serial: 'CG12345678',
      epoch: 1,
    });
  });

  it('a replaced meter is told by its serial', async () => {
    sim.inject({ kind: 'replace', serial: 'CG87654321', initialWh: 1_200 });
    const r = await meter.read();
    expect(r).toMatchObject({ energyWh: 1_200, epoch: 2 });
    expect(events.at(-1)).toMatchObject({
      kind: 'replaced',
      previousSerial: 'CG12345678',
      serial: 'CG87654321',
      previousWh: 0,
      currentWh: 1_200,
    });
    expect(await meter.identity()).toMatchObject({ serial: 'CG87654321' });
  });

  it('a lasting impossible jump is confirmed, then becomes a discontinuity', async () => {
    sim.inject({ kind: 'jump', wh: 9_000_000 });
    const r = await meter.read();
    expect(r.epoch).toBe(3);
    expect(r.energyWh).toBe(9_001_200);
    expect(events.at(-1)?.reason).toMatch(/jumped/);
  });
});

describe('the port or the device goes away and comes back', () => {
  it('reopens the serial port after the USB adapter is unplugged and plugged back', async () => {
    const pty = await openPtyPair();
    const sim = await startSimMeter({ profile: 'sdm120', rtu: { path: pty.slave }, initialWh: 7_000 });
    const meter = await openMeter({
      profile: 'sdm120',
      unitId: 1,
      timeoutMs: TIMEOUT_MS,
      retries: 1,
      transport: { kind: 'rtu', port: pty.master, baudRate: 2400 },
    });
    try {
      expect(await meter.readEnergyWh()).toBe(7_000);
      await pty.unplug();
      const gone = await failure(meter.readEnergyWh());
      expect(['port-gone', 'timeout']).toContain(gone.kind);
      const gone2 = await failure(meter.readEnergyWh());
      expect(gone2.kind).toBe('port-gone');
      expect(gone2.message).toMatch(/check the USB RS-485 adapter is plugged in/);
      await pty.replug();
      expect(await waitFor(() => meter.readEnergyWh().catch(() => undefined), 8_000)).toBe(7_000);
      expect(meter.stats().reconnects).toBeGreaterThanOrEqual(1);
      expect(meter.stats().errors['port-gone']).toBeGreaterThanOrEqual(1);
    } finally {
      await meter.close();
      await sim.close();
      await pty.close();
    }
  });

  it('reconnects to a TCP device that disappeared and came back', async () => {
    const sim = await startSimMeter({ profile: 'abb-b23', tcp: { port: 0 }, initialWh: 3_000 });
    const meter = await openMeter({
      profile: 'abb-b23',
      unitId: 1,
      timeoutMs: TIMEOUT_MS,
      retries: 1,
      transport: { kind: 'tcp', host: '127.0.0.1', port: sim.port! },
    });
    try {
      expect(await meter.readEnergyWh()).toBe(3_000);
      sim.inject({ kind: 'disappear', forMs: 400 });
      const err = await failure(meter.readEnergyWh());
      expect(err.kind).toBe('port-gone');
      expect(await waitFor(() => meter.readEnergyWh().catch(() => undefined), 8_000)).toBe(3_000);
      expect(meter.stats().reconnects).toBeGreaterThanOrEqual(1);
    } finally {
      await meter.close();
      await sim.close();
    }
  });

  it('one meter of a bus going silent does not stop the others', async () => {
    const pty = await openPtyPair();
    const bus = await startSimBus({
      rtu: { path: pty.slave },
      meters: [
        { profile: 'sdm630', unitId: 1, initialWh: 1_000 },
        { profile: 'sdm630', unitId: 2, initialWh: 2_000 },
      ],
    });
    const transport = { kind: 'rtu', port: pty.master, baudRate: 9600 } as const;
    const a = await openMeter({ profile: 'sdm630', unitId: 1, transport, timeoutMs: TIMEOUT_MS, retries: 0 });
    const b = await openMeter({ profile: 'sdm630', unitId: 2, transport, timeoutMs: TIMEOUT_MS, retries: 0 });
    try {
      bus.meters[0]!.inject({ kind: 'disappear' });
      const [ra, rb] = await Promise.allSettled([a.readEnergyWh(), b.readEnergyWh()]);
      expect(ra.status).toBe('rejected');
      expect(rb).toEqual({ status: 'fulfilled', value: 2_000 });
      bus.meters[0]!.clear();
      expect(await a.readEnergyWh()).toBe(1_000);
    } finally {
      await a.close();
      await b.close();
      await bus.close();
      await pty.close();
    }
  });
});

describe('a device that allows one TCP client', () => {
  it('is shared by all meters of the agent over one connection, and regained when a foreign client leaves', async () => {
    const bus = await startSimBus({
      tcp: { port: 0, maxClients: 1 },
      meters: [
        { profile: 'sdm630', unitId: 1, initialWh: 11_000 },
        { profile: 'sdm630', unitId: 2, initialWh: 22_000 },
      ],
    });
    const transport = { kind: 'tcp', host: '127.0.0.1', port: bus.port! } as const;
    const a = await openMeter({ profile: 'sdm630', unitId: 1, transport, timeoutMs: TIMEOUT_MS, retries: 1 });
    const b = await openMeter({ profile: 'sdm630', unitId: 2, transport, timeoutMs: TIMEOUT_MS, retries: 1 });
    try {
      expect(await Promise.all([a.readEnergyWh(), b.readEnergyWh()])).toEqual([11_000, 22_000]);
      // Another program takes the only connection while ours is down (device rebooted).
      bus.disappear(100);
      await new Promise((r) => setTimeout(r, 150));
      const foreign = createConnection({ host: '127.0.0.1', port: bus.port! });
      await new Promise((r) => foreign.once('connect', r));
      const busy = await failure(a.readEnergyWh());
      expect(busy.kind).toBe('port-gone');
      expect(busy.hint).toMatch(/no other client holds its only TCP connection/);
      foreign.destroy();
      expect(await waitFor(() => a.readEnergyWh().catch(() => undefined), 8_000)).toBe(11_000);
      expect(await b.readEnergyWh()).toBe(22_000);
    } finally {
      await a.close();
      await b.close();
      await bus.close();
    }
  });
});
