/**
 * The developer's bench meter (`p2pev sim meter`): --time-scale holds for every charge however it
 * is switched on (not only with --kw), the counter stands still until a charge starts, and two
 * bench meters get different serials (stable across a restart of one).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { SimMeter } from '../sim/meter.js';
import { benchSerial, runSimMeter } from '../sim/meter-cli.js';
import { freePort } from '../sim/chain.js';

const started: SimMeter[] = [];
const quiet = () => {};
afterEach(async () => {
  for (const m of started.splice(0)) await m.close();
});

const meter = async (o: Record<string, string | boolean>) => {
  const m = await runSimMeter({ profile: 'sdm630', unit: '1', emulate: true, ...o } as never, quiet);
  started.push(m);
  return m;
};

describe('p2pev sim meter on the bench', () => {
  it('counts only once a charge starts, and at --time-scale without --kw', async () => {
    const m = await meter({ tcp: '127.0.0.1:0', timeScale: '3600' });
    await sleep(200);
    expect(m.energyWh).toBe(0); // no charge yet: nothing counted since start-up
    // Switched on as the agent does (the control register starts the model's charge).
    m.model.startCharging(m.model.chargeKwSetting);
    await sleep(200);
    // 11 kW for at least 0.2 s at 3600× is at least 600 Wh; in real time it would be 0.6 Wh.
    expect(m.energyWh).toBeGreaterThan(100);
  });

  it('--kw sets the power of a charge and --charge-now starts one at once', async () => {
    const m = await meter({ tcp: '127.0.0.1:0', kw: '3.7', chargeNow: true });
    expect(m.charging).toBe(true);
    expect(m.model.chargeKwSetting).toBe(3.7);
  });

  it('gives two bench meters different serials, each stable across a restart', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const a = await meter({ tcp: `127.0.0.1:${p1}` });
    const b = await meter({ tcp: `127.0.0.1:${p2}` });
    expect(a.serial).not.toBe(b.serial);
    expect(a.serial).toBe(String(21_000_000 + p1));
    expect(benchSerial('sdm630', p1)).toBe(a.serial);
    expect(benchSerial('em340', undefined, '/dev/pts/3')).toMatch(/^SIM\d{6}$/);
    expect(benchSerial('em340', undefined, '/dev/pts/3')).not.toBe(
      benchSerial('em340', undefined, '/dev/pts/4'),
    );
    expect(await meter({ tcp: '127.0.0.1:0', serial: '42' }).then((m) => m.serial)).toBe('42');
  });
});
