/**
 * The agent's meter view honours the driver's rule: readings of different epochs (a counter reset,
 * a swapped meter) are never subtracted. A session's start minus a later reading stays the energy
 * that flowed. In memory: a fake driver, no Modbus.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AgentConfig } from '../agent/core/config.js';
import { Journal } from '../agent/core/journal.js';
import { createLogger } from '../agent/core/log.js';
import { Metering } from '../agent/core/metering.js';
import { createMetrics } from '../agent/core/metrics.js';
import { SIM_CONTROL } from '../drivers/index.js';
import { FakeMeter } from './fakes/meter.js';

const log = createLogger({ level: 'silent', pretty: false });

async function metering(charger: 'none' | 'sim-control' = 'none', store?: Journal) {
  const meter = new FakeMeter();
  const cfg = { ...meter.config, pollMs: 1000 } as NonNullable<AgentConfig['meter']>;
  return {
    meter,
    m: await Metering.over(meter, cfg, createMetrics(false), log, store, charger === 'sim-control'),
  };
}

describe('metering across a meter reset or swap', () => {
  it('reads the register as it is while the epoch holds', async () => {
    const { meter, m } = await metering();
    meter.wh = 12_345;
    expect(await m.energyWh()).toBe(12_345);
    expect(m.serial).toBe('FAKE-1');
  });

  it.each(['reset', 'replaced'] as const)('a %s continues from the last reading before it', async (kind) => {
    const { meter, m } = await metering();
    meter.wh = 10_000;
    const start = await m.energyWh();
    meter.wh = 10_400;
    await m.energyWh();
    meter.discontinue(kind, 3); // the new register starts near zero
    meter.wh = 503; // 500 Wh more flowed since
    const end = await m.energyWh();
    expect(end - start).toBe(900);
    // a second discontinuity adds up
    meter.discontinue(kind, 50_000);
    meter.wh = 50_100;
    expect((await m.energyWh()) - start).toBe(1000);
  });

  it('keeps the scale across a restart (the offset is journaled)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'p2pev-metering-'));
    const first = await metering('none', new Journal(dir));
    first.meter.wh = 10_000;
    const start = await first.m.energyWh();
    first.meter.discontinue('reset', 0);
    first.meter.wh = 200;
    expect((await first.m.energyWh()) - start).toBe(200);
    // The agent restarts: a new Metering over the same register, the journal read again.
    const again = await metering('none', new Journal(dir));
    again.meter.wh = 300;
    expect((await again.m.energyWh()) - start).toBe(300);
  });

  it('counts failed reads and says so', async () => {
    const { meter, m } = await metering();
    meter.failing = true;
    await expect(m.energyWh()).rejects.toThrow(/silent/);
    expect(m.consecutiveErrors).toBe(1);
  });
});

describe('the sim-control charger switch', () => {
  it('writes plug, power, then the switch', async () => {
    const { meter, m } = await metering('sim-control');
    await m.setCharging(true, 11, '0x00000000000000000000000000000000000000ff');
    expect(meter.writes.map((w) => w.address)).toEqual([
      SIM_CONTROL.plugFirst,
      SIM_CONTROL.powerHectoWatt,
      SIM_CONTROL.enable,
    ]);
    expect(meter.writes[0]?.values).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
    expect(meter.writes[1]?.values).toEqual([110]);
    expect(meter.writes[2]?.values).toEqual([1]);
    await m.setCharging(false);
    expect(meter.writes.at(-1)).toEqual({ address: SIM_CONTROL.enable, values: [0] });
  });

  it('writes nothing without a sim-control charger', async () => {
    const { meter, m } = await metering('none');
    await m.setCharging(true, 11);
    expect(meter.writes).toEqual([]);
  });
});
