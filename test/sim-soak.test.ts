/**
 * The soak run's parts (sim/soak.ts): its trend, its journals filled to their caps, the unit's
 * environment its agents run with, and the memory figures the agents report.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { Journal } from '../agent/core/journal.js';
import { collectNow, memoryFigures } from '../agent/core/memory.js';
import { KEEP_SESSIONS } from '../agent/core/runtime.js';
import { KEEP_FINISHED } from '../agent/roles/edge.js';
import { unitEnvironment, unitMemoryEnvironment } from '../sim/agents.js';
import { filler, prefillJournals, robustSlopePerHour, type Sample, trendOf } from '../sim/soak.js';
import type { Device } from '../sim/world.js';
import { tempDir } from './helpers/world.js';

describe('the soak trend', () => {
  it('is the median slope: a step (a collection, a compaction) does not make a flat series grow', () => {
    // 30 samples a minute apart, flat at 50 MB but for one step of +5 MB in the middle.
    const flatWithStep = Array.from({ length: 30 }, (_, i) => ({ t: i * 60, v: 50 + (i === 15 ? 5 : 0) }));
    expect(robustSlopePerHour(flatWithStep)).toBe(0);
    // A steady growth of 2 MB an hour is seen as such, through noise.
    const growing = Array.from({ length: 30 }, (_, i) => ({
      t: i * 60,
      v: 50 + (2 * i) / 60 + (i % 3 === 0 ? 0.01 : -0.01),
    }));
    expect(robustSlopePerHour(growing)).toBeCloseTo(2, 0);
    expect(robustSlopePerHour([{ t: 0, v: 1 }])).toBeNaN();
  });

  it('leaves out the warm-up, and draws the heap through what survives full collections', () => {
    const samples: Sample[] = Array.from({ length: 40 }, (_, i) => ({
      t: i * 60,
      // RSS climbs 10 MB over the first 10 minutes, then stays.
      rssMb: 100 + Math.min(i, 10),
      rssAnonMb: 60,
      // The heap in use: a sawtooth of garbage, its teeth rising (a young generation growing);
      // after each full collection 30 MB remain.
      heapMb: 30 + (i % 5) * 4 + i * 0.1,
      heapAfterGcMb: 30,
      // A full collection every 5 minutes.
      fullGcs: Math.floor(i / 5),
      externalMb: 2,
      fds: 30,
      journalKb: 500,
    }));
    const t = trendOf(samples, 600)!;
    expect(t.samples).toBe(30);
    expect(t.rssMbPerH).toBe(0);
    expect(t.heapMbPerH).toBe(0);
    expect(t.heapBasis).toBe('after full GC');
    expect(t.fullGcs).toBe(5);
    expect(t.heapInUseMbPerH).toBeCloseTo(6, 0);
    expect(t.fdsPerH).toBe(0);
    // Fewer full collections after the warm-up than MIN_FULL_GCS: the heap after the last one is a
    // stale figure, flat whatever is kept; the trend is then the heap in use, and says so.
    const fewGcs = trendOf(
      samples.map((s) => ({ ...s, fullGcs: s.t < 1800 ? 1 : 2 })),
      600,
    )!;
    expect(fewGcs.heapBasis).toBe('in use');
    expect(fewGcs.heapMbPerH).toBeCloseTo(6, 0);
    expect(
      trendOf(
        samples.map((s) => ({ ...s, heapAfterGcMb: Number.NaN })),
        600,
      )!.heapMbPerH,
    ).toBeCloseTo(6, 0);
  });
});

describe('journals filled to their caps', () => {
  it('hold exactly the caps, in records of the real size, older than any of the run, marked prefill', () => {
    const dir = tempDir('soak-prefill');
    const devices = (['edge', 'hcs', 'ev'] as const).map((role) => {
      const dataDir = join(dir, role);
      mkdirSync(dataDir, { recursive: true });
      return { name: role.toUpperCase(), role, dataDir } as Device;
    });
    const now = Date.now();
    expect(prefillJournals(devices, now)).toEqual({
      EDGE: KEEP_FINISHED,
      HCS: KEEP_SESSIONS,
      EV: KEEP_SESSIONS,
    });
    for (const d of devices) {
      const j = new Journal(d.dataDir);
      const prefix = d.role === 'edge' ? 'b:' : 's:';
      const records = j.list<{ prefill?: boolean; state: string; updatedAt?: number; settledAt?: number }>(
        prefix,
      );
      j.close();
      expect(records).toHaveLength(d.role === 'edge' ? KEEP_FINISHED : KEEP_SESSIONS);
      for (const [, r] of records) {
        expect(r.prefill).toBe(true);
        expect(['done', 'settled']).toContain(r.state);
        expect(r.updatedAt ?? r.settledAt).toBeLessThan(now - 86_400_000);
      }
    }
    // The size of a real one (a bill with both reports ~1.8 kB, a station's session ~2.4 kB).
    const size = (entries: [string, unknown][]) => JSON.stringify(entries).length;
    expect(size(filler('edge', 0, now))).toBeGreaterThan(1500);
    expect(size(filler('hcs', 0, now))).toBeGreaterThan(2000);
    expect(size(filler('ev', 0, now))).toBeGreaterThan(1500);
    // The edge's shape: the envelopes under keys of their own, as roles/edge.ts journals them.
    const edge = new Map(filler('edge', 0, now));
    const [billKey, bill] = [...edge].find(([k]) => k.startsWith('b:')) as [string, Record<string, unknown>];
    const txid = billKey.slice(2);
    expect(Object.keys(bill)).not.toContain('evReport');
    for (const field of ['consent', 'evReport', 'hcsReport']) {
      expect(String(edge.get(`e:${txid}:${field}`))).toMatch(/^[0-9a-f]{300,}$/);
    }
  });
});

describe("the unit's environment", () => {
  it('is read from the unit file, quoted assignments and several on a line', () => {
    const dir = tempDir('soak-unit');
    const path = join(dir, 'p2pev.service');
    writeFileSync(
      path,
      [
        '[Service]',
        'Environment=NODE_ENV=production',
        'Environment="NODE_OPTIONS=--max-old-space-size=192 --max-semi-space-size=1"',
        '#   Environment="NODE_OPTIONS=--max-old-space-size=1024"',
        '# edge: Environment="NODE_OPTIONS=--max-old-space-size=1024 --max-semi-space-size=64" P2PEV_JIT=1',
        'Environment=MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=131072',
      ].join('\n'),
    );
    expect(unitEnvironment(path)).toEqual({
      NODE_ENV: 'production',
      NODE_OPTIONS: '--max-old-space-size=192 --max-semi-space-size=1',
      MALLOC_ARENA_MAX: '2',
      MALLOC_TRIM_THRESHOLD_: '131072',
    });
    // An edge's: the `# edge:` lines over the device's (a server's young generation, the JIT).
    expect(unitEnvironment(path, 'edge')).toEqual({
      NODE_ENV: 'production',
      NODE_OPTIONS: '--max-old-space-size=1024 --max-semi-space-size=64',
      P2PEV_JIT: '1',
      MALLOC_ARENA_MAX: '2',
      MALLOC_TRIM_THRESHOLD_: '131072',
    });
    expect(unitEnvironment(path, 'ev')).toEqual(unitEnvironment(path));
    // The installed unit's own: the heap bounded, glibc's arenas limited, the compiled code.
    const unit = unitEnvironment();
    expect(unit.NODE_OPTIONS).toMatch(/--max-old-space-size=\d+/);
    expect(unit.MALLOC_ARENA_MAX).toBe('2');
    expect(unit.P2PEV_DIST).toBe('1');
    // The installed unit says what an edge gets: a server's young generation, not a Pi's.
    expect(unitMemoryEnvironment('edge').NODE_OPTIONS).toMatch(/--max-semi-space-size=(\d{2,})/);
    expect(unitMemoryEnvironment('ev').NODE_OPTIONS).toMatch(/--max-semi-space-size=1\b/);
    // And its compilers; a device's agent (and an edge on a Pi) runs without them.
    expect(unitMemoryEnvironment('edge').P2PEV_JIT).toBe('1');
    expect(unitMemoryEnvironment('ev').P2PEV_JIT).toBeUndefined();
  });
});

describe('the memory figures of the status', () => {
  it('give the heap left after the last full collection', async () => {
    memoryFigures();
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const before = memoryFigures().fullGcs;
    let garbage: unknown[] | undefined = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `x${i}` }));
    expect(garbage.length).toBe(200_000);
    garbage = undefined;
    gc();
    // The collection's performance entry comes after it, on the event loop.
    for (let i = 0; i < 50 && memoryFigures().fullGcs === before; i++)
      await new Promise((r) => setTimeout(r, 10));
    const m = memoryFigures();
    expect(m.fullGcs).toBeGreaterThan(before);
    expect(m.heapAfterGcMb).toBeGreaterThan(0);
    expect(m.heapAfterGcMb!).toBeLessThanOrEqual(m.heapUsedMb + 1);
    expect(m.rssMb).toBeGreaterThan(m.heapAfterGcMb!);
  });

  it('a forced collection (the control action gc) gives what is kept, garbage gone', () => {
    let garbage: unknown[] | undefined = Array.from({ length: 300_000 }, (_, i) => ({ i, s: `y${i}` }));
    const during = memoryFigures().heapUsedMb;
    expect(garbage.length).toBe(300_000);
    garbage = undefined;
    const m = collectNow();
    // 300,000 small objects are well over 10 MB; after the collection they are gone.
    expect(m.heapAfterGcMb).toBeLessThan(during - 5);
    expect(m.heapAfterGcMb).toBeLessThanOrEqual(m.heapUsedMb);
  });
});
