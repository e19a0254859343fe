import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/core/runtime.js';
import { END, type SessionRecord } from '../agent/core/session.js';
import { billWei, reportEnergyWh } from '../protocol/index.js';
import type { World } from '../sim/world.js';
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
  const settledEvents = async (txid: string) =>
    (await world.operator.settledSessions(world.deployment.block, txid)).map((r) => ({
      disputed: r.disputed,
      args: { energyWh: r.billedWh, amountWei: r.amountWei },
    }));
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

  it('a meter fault at the HCS ends the charge (termination 4); the bill follows the contract’s rule', async () => {
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
      // Inside the tolerance the station's meter; outside it what the EV acknowledged (its highest
      // receipt, at least its final report).
      if (event!.disputed) expect(event!.args.energyWh).toBeGreaterThanOrEqual(evWh < hcsWh ? evWh : hcsWh);
      else expect(event!.args.energyWh).toBe(hcsWh);
      expect(event!.args.amountWei).toBe(billWei(event!.args.energyWh, PRICE));
    } finally {
      meter.clear();
    }
  }, 120_000);

  it('the station vanishes mid-charge: the EV stops on no progress; the station, back, is paid what the EV acknowledged', async () => {
    const depositBefore = (await world.operator.depositOf(ev().address)).balance;
    const earnedBefore = await world.operator.earningsOf(hcs().address);
    const id = await startCharge(20_000);
    await waitFor('some energy', () => delivered(evSession(id)) >= 1000);
    const station = hcs();
    agents.delete('HCS1');
    await station.stop();
    // The station is gone, and so is its power.
    device(world, 'HCS1').meter!.model.writeRegister(0x7f00, 0);
    const s = await until(id, 'awaitingSettlement', 60_000);
    expect(s.endStatus).toBe(END.timeout);
    // Nothing is paid while the station is away; its reservation holds the EV's money.
    expect((await world.operator.depositOf(ev().address)).balance).toBe(depositBefore);
    expect((await world.operator.depositOf(ev().address)).reserved).toBeGreaterThan(0n);
    // Back, the station settles with the receipts it holds: at least what the EV signed for.
    agents.set('HCS1', await startAgent(device(world, 'HCS1')));
    const done = await until(id, 'done', 90_000);
    const [event] = await settledEvents(done.txid!);
    const hcsSession = await waitFor('the station to finish', () =>
      [...hcs().sessions.values()].find((x) => x.txid === done.txid && x.state === 'done'),
    );
    // I1: paid at least what it delivered less one receipt's energy and the tolerance.
    const hcsWh = BigInt(`0x${hcsSession.myReport!.slice(146, 186)}`);
    const tolerance = hcsWh / 50n > 50n ? hcsWh / 50n : 50n;
    const receiptWh = BigInt(hcs().cfg.receipts.wh);
    expect(event!.args.energyWh).toBeGreaterThanOrEqual(hcsWh - receiptWh - tolerance);
    expect(event!.args.energyWh).toBeLessThanOrEqual(hcsWh);
    expect((await world.operator.earningsOf(hcs().address)) - earnedBefore).toBe(event!.args.amountWei);
    expect(depositBefore - (await world.operator.depositOf(ev().address)).balance).toBe(
      event!.args.amountWei,
    );
  }, 150_000);
});
