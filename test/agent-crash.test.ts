/**
 * Crash tests: the agent process is killed with SIGKILL (a power cut, as far as it can tell) at
 * each step of the session and restarted; every session settles exactly once, with nothing lost.
 * The agents are the real `p2pev run`, each its own process.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionRecord } from '../agent/core/session.js';
import { billWei, reportEnergyWh } from '../protocol/index.js';
import { type AgentProcess, control, spawnAgent, waitReady } from '../sim/agents.js';
import type { Device, World } from '../sim/world.js';
import { device, PRICE, smallWorld, waitFor } from './helpers/world.js';

const quiet = (line: { msg: string; level: number }, d: { name: string }) => {
  if (process.env.P2PEV_TEST_LOG) console.log(d.name, JSON.stringify(line).slice(0, 300));
};

/** Hashes of the batch transactions the edge's journal holds (`x:<hash>`, last value per key). */
function journaledBatches(edge: Device): string[] {
  const live = new Map<string, unknown>();
  for (const line of readFileSync(join(edge.dataDir, 'journal.jsonl'), 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const { k, v } = JSON.parse(line) as { k: string; v: unknown };
    if (v === null) live.delete(k);
    else live.set(k, v);
  }
  return [...live.keys()].filter((k) => k.startsWith('x:')).map((k) => k.slice(2));
}

describe('an agent killed with SIGKILL at each step comes back and finishes exactly once', () => {
  let world: World;
  const running = new Map<string, AgentProcess>();

  async function start(d: Device, crashAt?: string): Promise<AgentProcess> {
    const a = await spawnAgent(d, quiet, crashAt ? { P2PEV_CRASH_AT: crashAt } : {});
    running.set(d.name, a);
    await waitReady(a);
    return a;
  }

  beforeAll(async () => {
    world = await smallWorld({ edge: true });
    for (const d of world.devices) await start(d);
  }, 180_000);

  afterAll(async () => {
    for (const a of running.values()) await a.stop();
    await world?.close();
  });

  it.each([
    ['HCS1', 'after-mutual'],
    ['EV1', 'charging'],
    ['HCS1', 'after-report'],
    ['EDGE', 'after-reserve-submit'],
    ['EDGE', 'after-submit'],
    // Its first batch (the reservation) signed and journaled, not yet sent: sent after the restart
    // as the same bytes (contracts/batchsender.ts), not lost, not signed again under a new nonce.
    ['EDGE', 'before-broadcast'],
  ])(
    '%s killed %s',
    async (name, point) => {
      const victim = device(world, name);
      const ev = device(world, 'EV1');
      const hcs = device(world, 'HCS1');
      await running.get(name)!.stop();
      const crashing = await start(victim, point);
      const earnedBefore = await world.operator.earningsOf(hcs.address);
      const depositBefore = (await world.operator.depositOf(ev.address)).balance;

      const { id } = await control<{ id: string }>(ev, 'charge', {
        targetWh: 2500,
        rating: 5,
        comment: 'crash',
      });
      // The victim dies at its crash point: by SIGKILL, so no handler of its own ran.
      await waitFor(
        'the victim to reach its crash point',
        async () => {
          const s = (await control<SessionRecord[]>(ev, 'sessions').catch(() => [])).find((x) => x.id === id);
          if (s?.state === 'failed') throw new Error(`session failed before the crash: ${s.error}`);
          return crashing.child.exitCode !== null || crashing.child.signalCode !== null;
        },
        60_000,
      );
      expect(crashing.child.signalCode).toBe('SIGKILL');
      const journaled = point === 'before-broadcast' ? journaledBatches(victim) : [];
      if (point === 'before-broadcast') expect(journaled).toHaveLength(1);
      await start(victim);

      const evSession = await waitFor(
        'the EV session to settle',
        async () => {
          const sessions = await control<SessionRecord[]>(ev, 'sessions').catch(() => []);
          const s = sessions.find((x) => x.id === id);
          if (s?.state === 'failed') throw new Error(`session failed: ${s.error}`);
          return s?.state === 'done' ? s : undefined;
        },
        90_000,
      );
      const settled = await world.operator.settledSessions(world.deployment.block, evSession.txid);
      expect(settled).toHaveLength(1);
      const billed = { energyWh: settled[0]!.billedWh, amountWei: settled[0]!.amountWei };
      expect(billed.amountWei).toBe(billWei(billed.energyWh, PRICE));
      // An EV that dies mid-charge stops sending receipts: the station switches off within one
      // receipt interval (issue 12) and is paid for what it delivered until then.
      expect(billed.energyWh).toBeGreaterThanOrEqual(name === 'EV1' ? 1n : 2500n);
      expect((await world.operator.earningsOf(hcs.address)) - earnedBefore).toBe(billed.amountWei);
      expect(depositBefore - (await world.operator.depositOf(ev.address)).balance).toBe(billed.amountWei);
      const hcsSessions = await waitFor('the HCS session to finish', async () => {
        const list = await control<SessionRecord[]>(hcs, 'sessions').catch(() => []);
        return list.find((x) => x.txid === evSession.txid && x.state === 'done');
      });
      for (const hash of journaled) {
        // The journaled bytes themselves were mined (same hash), once.
        const receipt = await world.operator.contract.runner?.provider?.getTransactionReceipt(hash);
        expect(receipt?.status).toBe(1);
      }
      // The HCS's own report names the same energy it billed, give or take the tolerance.
      expect(reportEnergyWh(hcsSessions.myReport!)).toBeGreaterThanOrEqual(billed.energyWh);
      // And the edge knows it: no bill left waiting (a reservation batch whose receipt died with
      // the edge once kept its bill queued for good, settled only by the station's fallback).
      await waitFor('the edge to have no bill waiting', async () => {
        const s = await control<{ edge: { bills: Record<string, number> } }>(
          device(world, 'EDGE'),
          'status',
        ).catch(() => undefined);
        const bills = s?.edge.bills;
        return bills && !bills.collecting && !bills.queued && !bills.submitted;
      });
    },
    150_000,
  );
});
