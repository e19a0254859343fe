/**
 * The termination paths: the EV unplugs early, the HCS stops, a meter fault, the peer vanishes,
 * the chain refuses the bill. Each ends in the state the contract defines: delivered energy
 * settled once (disputed: only the uncontested part), or nothing paid.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { JsonRpcProvider } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/core/runtime.js';
import { END, type SessionRecord } from '../agent/core/session.js';
import { billWei, reportEnergyWh } from '../protocol/index.js';
import type { World } from '../sim/world.js';
import { increaseTime, latestTimestamp } from './helpers/anvilSettlement.js';
import { device, PRICE, smallWorld, startAgent, waitFor } from './helpers/world.js';

describe('termination paths', () => {
  let world: World;
  const agents = new Map<string, Agent>();
  const ev = () => agents.get('EV1')!;
  const hcs = () => agents.get('HCS1')!;

  beforeAll(async () => {
    world = await smallWorld({
      edge: true,
      overrides: {
        timeouts: { replyMs: 5000, reportMs: 5000, chargeIdleMs: 3000, settleFallbackMs: 60_000 },
      },
    });
    for (const d of world.devices) agents.set(d.name, await startAgent(d));
  }, 120_000);

  afterAll(async () => {
    for (const a of agents.values()) await a.stop().catch(() => {});
    await world?.close();
  });

  async function startCharge(targetWh: number): Promise<string> {
    const { id } = (await ev().control('charge', { targetWh, rating: 3, comment: 'term' })) as { id: string };
    return id;
  }

  const evSession = (id: string) => ev().sessions.get(id);
  const delivered = (s?: SessionRecord) => (s?.lastWh ?? 0) - (s?.startWh ?? 0);
  const settledEvents = async (txid: string) => {
    const c = world.operator.contract;
    return [
      ...(await c.queryFilter(c.filters.Settled!(txid), world.deployment.block)),
      ...(await c.queryFilter(c.filters.SettledDisputed!(txid), world.deployment.block)),
    ] as unknown as { fragment: { name: string }; args: Record<string, bigint> }[];
  };
  const until = (id: string, state: string, ms = 60_000) =>
    waitFor(
      `session ${id} ${state}`,
      () => {
        const s = evSession(id);
        if (s && s.state !== state && (s.state === 'done' || s.state === 'failed'))
          throw new Error(`ended ${s.state}: ${s.error}`);
        return s?.state === state ? s : undefined;
      },
      ms,
    );

  it('the EV unplugs early: the delivered energy is billed, termination 2', async () => {
    const id = await startCharge(20_000);
    await waitFor('some energy', () => delivered(evSession(id)) >= 1500);
    await ev().control('stop');
    const s = await until(id, 'done');
    expect(s.endStatus).toBe(END.stoppedByEv);
    const [event] = await settledEvents(s.txid!);
    expect(event!.args.energyWh).toBeLessThan(5000n);
    expect(event!.args.amountWei).toBe(billWei(event!.args.energyWh!, PRICE));
  }, 90_000);

  it('the HCS stops: the EV learns it from the termination, billed once', async () => {
    const id = await startCharge(20_000);
    await waitFor('some energy', () => delivered(evSession(id)) >= 1500);
    await hcs().control('stop');
    const s = await until(id, 'done');
    expect(s.endStatus).toBe(END.stoppedByHcs);
    expect(await settledEvents(s.txid!)).toHaveLength(1);
  }, 90_000);

  it('a meter fault at the HCS ends the charge (termination 4); outside the tolerance only the uncontested part is paid', async () => {
    const meter = device(world, 'HCS1').meter!;
    const id = await startCharge(20_000);
    await waitFor('some energy', () => delivered(evSession(id)) >= 1000);
    meter.inject({ kind: 'no-response' });
    try {
      const s = await until(id, 'done', 90_000);
      expect(s.endStatus).toBe(END.meterFault);
      const hcsSession = [...hcs().sessions.values()].find((x) => x.txid === s.txid)!;
      expect(hcsSession.endStatus).toBe(END.meterFault);
      const [event] = await settledEvents(s.txid!);
      const evWh = reportEnergyWh(s.myReport!);
      const hcsWh = reportEnergyWh(hcsSession.myReport!);
      // The station bills only its last good reading, never an invented one.
      expect(hcsWh).toBeLessThanOrEqual(BigInt(hcsSession.lastWh! - hcsSession.startWh!));
      const billed = evWh < hcsWh ? evWh : hcsWh;
      expect(event!.args.amountWei).toBe(billWei(billed, PRICE));
    } finally {
      meter.clear();
    }
  }, 120_000);

  it('(a short settlement window from here on, so that its end can be seen within the test)', async () => {
    const d = device(world, 'HCS1');
    const cfg = JSON.parse(readFileSync(d.configPath, 'utf8'));
    cfg.hcs.settlementWindowS = 15;
    writeFileSync(d.configPath, JSON.stringify(cfg));
    await hcs().stop();
    agents.set('HCS1', await startAgent(d));
    expect(agents.get('HCS1')!.cfg.hcs!.settlementWindowS).toBe(15);
  });

  it('the station vanishes for good: the EV stops on no progress, nothing is paid, and it gives up after the window', async () => {
    const depositBefore = (await world.operator.depositOf(ev().address)).balance;
    const id = await startCharge(20_000);
    await waitFor('some energy', () => delivered(evSession(id)) >= 1000);
    const station = hcs();
    agents.delete('HCS1');
    await station.stop();
    // The station is gone, and so is its power.
    device(world, 'HCS1').meter!.model.writeRegister(0x7f00, 0);
    const s = await until(id, 'failed', 60_000);
    expect(s.endStatus).toBe(END.timeout);
    expect(s.error).toMatch(/never settled/);
    expect((await world.operator.depositOf(ev().address)).balance).toBe(depositBefore);
    agents.set('HCS1', await startAgent(device(world, 'HCS1')));
  }, 90_000);

  it('the chain refuses the bill (the settlement window closed while the edge was away): both sides end failed, nothing moves', async () => {
    const depositBefore = (await world.operator.depositOf(ev().address)).balance;
    const earnedBefore = await world.operator.earningsOf(hcs().address);
    // A charge too long to end by itself: the reports go out only once the edge is surely gone
    // (a short charge could report, and be billed in the window, before the edge had stopped).
    const id = await startCharge(20_000);
    await waitFor('charging', () => evSession(id)?.state === 'charging');
    const edge = agents.get('EDGE')!;
    agents.delete('EDGE');
    await edge.stop();
    await waitFor('some energy', () => delivered(evSession(id)) >= 500);
    await ev().control('stop');
    const s = await until(id, 'awaitingSettlement');
    expect(s.terms!.settleBy * 1000).toBeGreaterThan(Date.now());
    // Back after the window (the chain's clock moved past it): the reports waited for the edge at
    // the broker, the chain refuses them.
    const provider = world.operator.contract.runner!.provider as JsonRpcProvider;
    const now = await latestTimestamp(provider);
    await increaseTime(provider, BigInt(s.terms!.settleBy) + 1n - now);
    agents.set('EDGE', await startAgent(device(world, 'EDGE')));
    const failed = await until(id, 'failed', 30_000);
    expect(failed.error).toMatch(/refused/);
    await waitFor('the station to record the refusal', () =>
      [...hcs().sessions.values()].find((x) => x.txid === s.txid && x.state === 'failed'),
    );
    expect((await world.operator.depositOf(ev().address)).balance).toBe(depositBefore);
    expect(await world.operator.earningsOf(hcs().address)).toBe(earnedBefore);
    expect(await settledEvents(s.txid!)).toHaveLength(0);
  }, 90_000);
});
