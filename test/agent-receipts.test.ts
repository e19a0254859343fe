/**
 * Issue 12 end to end (real anvil, real MQTT broker, simulated Modbus meters, in-process agents,
 * no edge): the station is paid for what the EV acknowledged, whatever the EV does after it
 * agreed.
 *
 * - An EV agent goes silent mid-charge (its receipts stop reaching the station), then is killed:
 *   the station switches off on the late receipt and settles on its own with the highest receipt
 *   it holds.
 * - An EV reports 0 Wh at the end: it pays for what it acknowledged while charging.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/core/runtime.js';
import { END, type SessionRecord } from '../agent/core/session.js';
import { billWei, type MessageInput, reportEnergyWh } from '../protocol/index.js';
import type { World } from '../sim/world.js';
import { device, PRICE, smallWorld, startAgent, waitFor } from './helpers/world.js';

describe('signed receipts while charging (issue 12)', () => {
  let world: World;
  const agents = new Map<string, Agent>();
  const ev = () => agents.get('EV1')!;
  const hcs = () => agents.get('HCS1')!;
  const stationSession = (txid: string, state: string) =>
    waitFor(
      `the station's session ${state}`,
      () => [...hcs().sessions.values()].find((s: SessionRecord) => s.txid === txid && s.state === state),
      60_000,
    );

  beforeAll(async () => {
    world = await smallWorld({
      edge: false,
      overrides: {
        timeouts: { replyMs: 5000, reportMs: 3000, chargeIdleMs: 20_000, settleFallbackMs: 5000 },
        receipts: { wh: 500, intervalMs: 500, graceMs: 500 },
      },
    });
    for (const d of world.devices) agents.set(d.name, await startAgent(d));
  }, 120_000);

  afterAll(async () => {
    for (const a of agents.values()) await a.stop().catch(() => {});
    await world?.close();
  });

  it('an EV that goes silent mid-charge, then is killed: the station switches off and is paid what was acknowledged', async () => {
    const car = ev();
    const depositBefore = (await world.operator.depositOf(car.address)).balance;
    const earnedBefore = await world.operator.earningsOf(hcs().address);
    const { id } = (await car.control('charge', { targetWh: 30_000 })) as { id: string };
    const charging = await waitFor('the EV charging', () => {
      const s = car.sessions.get(id);
      return s?.state === 'charging' && (s.lastWh ?? 0) - (s.startWh ?? 0) >= 2000 ? s : undefined;
    });
    // Silence: the car's receipts stop reaching the station (everything else still flows).
    const publish = car.bus.publishEnvelope.bind(car.bus);
    car.bus.publishEnvelope = async (to, envelope, type) => {
      if (type === 'chargeReceived') return;
      return publish(to, envelope, type);
    };
    const stopped = await stationSession(charging.txid!, 'awaitingSettlement');
    expect(stopped.endStatus).toBe(END.peerLost);
    // Then the car is gone for good.
    agents.delete('EV1');
    await car.stop();

    const done = await stationSession(charging.txid!, 'done');
    const acknowledged = BigInt(done.ackWh!);
    const delivered = BigInt(done.endWh! - done.startWh!);
    expect(acknowledged).toBeGreaterThan(0n);
    // Switched off within one receipt interval: what was delivered past the last receipt is at
    // most one receipt's energy, the tolerance, and the grace at the power seen.
    const [settled] = await world.operator.settledSessions(world.deployment.block, charging.txid);
    expect(settled).toBeDefined();
    expect(settled!.billedWh).toBeGreaterThanOrEqual(acknowledged);
    expect(settled!.billedWh).toBeLessThanOrEqual(delivered);
    expect(reportEnergyWh(done.ackReport!)).toBe(acknowledged);
    expect((await world.operator.earningsOf(hcs().address)) - earnedBefore).toBe(settled!.amountWei);
    expect(depositBefore - (await world.operator.depositOf(car.address)).balance).toBe(settled!.amountWei);
    expect(settled!.amountWei).toBe(billWei(settled!.billedWh, PRICE));
    expect(device(world, 'HCS1').meter!.charging).toBe(false);
    agents.set('EV1', await startAgent(device(world, 'EV1')));
  }, 120_000);

  it('an EV that reports 0 Wh at the end pays for what it acknowledged', async () => {
    const car = ev();
    const earnedBefore = await world.operator.earningsOf(hcs().address);
    // The car's final report (a chargeReceived without the interim mark) says 0 Wh.
    const sign = car.bus.sign.bind(car.bus);
    car.bus.sign = (msg: MessageInput) =>
      sign(
        msg.type === 'chargeReceived' && (msg.optional as { i?: number } | undefined)?.i === undefined
          ? { ...msg, energyWh: 0n }
          : msg,
      );
    try {
      const { id } = (await car.control('charge', { targetWh: 4000 })) as { id: string };
      const evDone = await waitFor('the EV to report', () => {
        const s = car.sessions.get(id);
        return s?.state === 'awaitingSettlement' || s?.state === 'done' ? s : undefined;
      });
      expect(reportEnergyWh(evDone.myReport!)).toBe(0n);
      const done = await stationSession(evDone.txid!, 'done');
      const [settled] = await world.operator.settledSessions(world.deployment.block, evDone.txid);
      expect(settled!.disputed).toBe(true);
      // Paid what the car acknowledged: its last receipt as the station holds it. How far the charge
      // got before that receipt is load's business (a late receipt switches the station off early).
      expect(settled!.billedWh).toBe(BigInt(done.ackWh!));
      expect(settled!.billedWh).toBeGreaterThan(0n);
      // And that is the highest figure the car signed (its last receipt), not an earlier one.
      expect(settled!.billedWh).toBe(BigInt(evDone.receiptWh!));
      expect(reportEnergyWh(done.ackReport!)).toBe(settled!.billedWh);
      expect(settled!.billedWh).toBeLessThanOrEqual(BigInt(done.endWh! - done.startWh!));
      expect((await world.operator.earningsOf(hcs().address)) - earnedBefore).toBe(settled!.amountWei);
    } finally {
      car.bus.sign = sign;
    }
  }, 120_000);
});
