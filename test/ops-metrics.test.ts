/**
 * The Prometheus figures an operator watches: every meter read (the session's billing read and
 * the telemetry's full read) lands in the histogram, the energy and power gauges follow the meter,
 * meter_up drops when it stops answering, broker and chain state are read at scrape time, and the
 * build is labelled. Plus the members' page's power estimate across a meter restart.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Metering } from '../agent/core/metering.js';
import { createMetrics } from '../agent/core/metrics.js';
import { createLogger } from '../agent/core/log.js';
import { PowerEstimator } from '../agent/web/device.js';
import { startSimMeter } from '../sim/meter.js';

const value = (text: string, name: string): number | undefined => {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

describe('metrics', () => {
  const closers: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of closers) await c().catch(() => {});
  });

  it('observes every meter read, follows energy and power, and says when the meter is down', async () => {
    const sim = await startSimMeter({ profile: 'sdm630', tcp: { port: 0 }, initialWh: 5_000 });
    closers.push(() => sim.close());
    const metrics = createMetrics(false);
    const metering = await Metering.open(
      {
        profile: 'sdm630',
        unitId: 1,
        transport: { kind: 'tcp', host: '127.0.0.1', port: sim.port! },
        pollMs: 1000,
        timeoutMs: 200,
        retries: 0,
      },
      metrics,
      createLogger({ level: 'silent', pretty: false }),
    );
    closers.push(() => metering.close());
    await metering.energyWh();
    await metering.read();
    let text = await metrics.registry.metrics();
    expect(value(text, 'p2pev_meter_read_seconds_count')).toBe(2);
    expect(value(text, 'p2pev_meter_energy_wh')).toBe(5_000);
    expect(value(text, 'p2pev_meter_power_w')).toBe(0);
    expect(value(text, 'p2pev_meter_up')).toBe(1);

    await sim.close();
    await expect(metering.read()).rejects.toThrow();
    text = await metrics.registry.metrics();
    expect(value(text, 'p2pev_meter_up')).toBe(0);
    expect(value(text, 'p2pev_meter_read_seconds_count')).toBe(3);
    expect(text).toMatch(/^p2pev_meter_errors_total\{kind="[a-z-]+"\} 1$/m);
  }, 20_000);

  it('reads broker and chain state at scrape time, and labels the build', async () => {
    const metrics = createMetrics(false);
    let broker = true;
    metrics.probes.brokerConnected = () => broker;
    metrics.probes.chainReachable = () => false;
    metrics.buildInfo.set({ version: '0.1.0', node: process.versions.node, role: 'hcs' }, 1);
    let text = await metrics.registry.metrics();
    expect(value(text, 'p2pev_broker_connected')).toBe(1);
    expect(value(text, 'p2pev_chain_reachable')).toBe(0);
    expect(text).toContain(`p2pev_build_info{version="0.1.0",node="${process.versions.node}",role="hcs"} 1`);
    broker = false;
    text = await metrics.registry.metrics();
    expect(value(text, 'p2pev_broker_connected')).toBe(0);
  });
});

describe("the members' page's power estimate", () => {
  it('gives no negative power when a meter restarts its count', () => {
    const p = new PowerEstimator();
    expect(p.estimate('a', 1000, 1_000_000)).toBeUndefined();
    expect(p.estimate('a', 1100, 1_036_000)).toBe(10_000); // 100 Wh in 36 s = 10 kW
    expect(p.estimate('a', 5, 1_072_000)).toBeUndefined(); // counter back to ~0: a new count
    expect(p.estimate('a', 105, 1_108_000)).toBe(10_000);
  });
});

describe('p2pev status: progress towards the target', () => {
  it('says how far a charge is, in kWh and per cent', async () => {
    const { progress } = await import('../agent/ops/status.js');
    expect(progress({ targetWh: 10_000, energyWh: 2_400 })).toBe(', 2.40 of 10.00 kWh (24 %)');
    expect(progress({ targetWh: 500, energyWh: 600 })).toBe(', 0.60 of 0.50 kWh (100 %)');
    expect(progress({ energyWh: 1_234 })).toBe(', 1.23 kWh');
    expect(progress({ targetWh: 500 })).toBe('');
  });
});

describe('telemetry freshness', () => {
  it('samples every 5 s while a session charges, and soon after it opens, starts or stops charging or ends, not on other steps', async () => {
    const { Ops } = await import('../agent/ops/telemetry.js');
    const sessions = new Map<string, { id: string; state: string }>();
    const agent = {
      cfg: { role: 'hcs' },
      metrics: createMetrics(false),
      bus: { connected: true },
      chain: { reachable: true },
      sessions,
    };
    const ops = new Ops(agent as never);
    let samples = 0;
    (ops as unknown as { sample: () => Promise<void> }).sample = async () => {
      samples++;
      (ops as unknown as { lastSample: number }).lastSample = Date.now();
    };
    const ago = (ms: number) => {
      (ops as unknown as { lastSample: number }).lastSample = Date.now() - ms;
    };
    ago(0);
    ops.tick();
    expect(samples).toBe(0);
    ago(3_000); // idle: the configured 30 s holds
    ops.tick();
    expect(samples).toBe(0);
    sessions.set('1', { id: '1', state: 'searching' });
    ops.tick(); // a session opened: a sample at once (the last is older than the 2 s gap)
    expect(samples).toBe(1);
    ago(3_000);
    sessions.set('1', { id: '1', state: 'requesting' });
    ops.tick(); // a step that neither opens, charges nor ends
    expect(samples).toBe(1);
    ago(6_000);
    ops.tick(); // open but not charging: nothing flows, the configured 30 s holds
    expect(samples).toBe(1);
    ago(0);
    sessions.set('1', { id: '1', state: 'charging' });
    ops.tick(); // it starts charging, but the last sample is fresh: not yet …
    expect(samples).toBe(1);
    ago(2_500);
    ops.tick(); // … once the gap has passed
    expect(samples).toBe(2);
    ago(6_000); // charging: every 5 s
    ops.tick();
    expect(samples).toBe(3);
    ops.tick();
    expect(samples).toBe(3);
    ago(3_000);
    sessions.set('1', { id: '1', state: 'charging' });
    ops.tick(); // nothing changed
    expect(samples).toBe(3);
    sessions.set('1', { id: '1', state: 'awaitingSettlement' });
    ops.tick(); // the charge stopped: fresh power at once
    expect(samples).toBe(4);
    ago(3_000);
    sessions.set('1', { id: '1', state: 'done' });
    ops.tick(); // it ended: fresh earnings
    expect(samples).toBe(5);
    ago(6_000);
    ops.tick();
    expect(samples).toBe(5);
  });

  it('reads the chain figures when asked (not on a sample without Home Assistant), at most every 5 s unless a session ended since (money moved); the last figures stand meanwhile', async () => {
    const { Ops } = await import('../agent/ops/telemetry.js');
    const sessions = new Map<string, { id: string; state: string }>();
    const reads: string[] = [];
    let balance = 10n;
    let nodeAway = false;
    const agent = {
      cfg: { role: 'hcs' },
      address: '0x0000000000000000000000000000000000000001',
      metrics: createMetrics(false),
      bus: { connected: true },
      chain: {
        reachable: true,
        rpc: {
          getBalance: async () => {
            reads.push('balance');
            if (nodeAway) throw new Error('connect ECONNREFUSED 127.0.0.1:8545\nmore');
            return balance;
          },
        },
        client: {
          earningsOf: async () => {
            reads.push('earnings');
            return 7n;
          },
        },
      },
      sessions,
    };
    const ops = new Ops(agent as never);
    // A sample nobody shows the money of (no Home Assistant) reads none of it.
    await ops.sample();
    expect(reads).toEqual([]);
    expect(ops.telemetry.balanceWei).toBeUndefined();
    // What GET /status does (agent/core/runtime.ts): the figures, then the status.
    const sampled = async () => {
      ops.tick();
      await ops.chainFigures();
    };
    const chainReadAgo = (ms: number) => {
      (ops as unknown as { lastChainRead: number }).lastChainRead = Date.now() - ms;
    };
    await sampled();
    expect(reads).toEqual(['balance', 'earnings']);
    expect(ops.telemetry).toMatchObject({ balanceWei: '10', earningsWei: '7' });
    balance = 9n;
    sessions.set('1', { id: '1', state: 'offered' });
    await sampled(); // a session opened 0 s after the last read: the figures stand
    sessions.set('1', { id: '1', state: 'charging' });
    await sampled();
    expect(reads).toEqual(['balance', 'earnings']);
    expect(ops.telemetry).toMatchObject({ balanceWei: '10', earningsWei: '7' });
    chainReadAgo(5_000); // charging, 5 s on: read again
    await sampled();
    expect(reads).toHaveLength(4);
    expect(ops.telemetry.balanceWei).toBe('9');
    balance = 8n;
    sessions.set('1', { id: '1', state: 'done' });
    await sampled(); // it ended: money moved, read at once
    expect(reads).toHaveLength(6);
    expect(ops.telemetry.balanceWei).toBe('8');
    await sampled();
    expect(reads).toHaveLength(6);
    // The node away: the last figures stand, the error beside them; two askers, one read.
    nodeAway = true;
    chainReadAgo(5_000);
    await Promise.all([ops.chainFigures(), ops.chainFigures()]);
    expect(reads).toHaveLength(7);
    expect(ops.telemetry).toMatchObject({
      balanceWei: '8',
      earningsWei: '7',
      chainError: 'connect ECONNREFUSED 127.0.0.1:8545',
    });
    nodeAway = false;
    chainReadAgo(5_000);
    await ops.chainFigures();
    expect(ops.telemetry.chainError).toBeUndefined();
  });
});
