/**
 * The edge (its own `p2pev run` process) loses its chain node in the middle of a session (a TCP
 * proxy in front of anvil is cut):
 * the charge completes, the bill waits in the journal, the edge keeps handling messages, and when
 * the node is back the bill goes out and settles exactly once.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Journal } from '../agent/core/journal.js';
import type { Agent } from '../agent/core/runtime.js';
import { type AgentProcess, control, spawnAgent, waitReady } from '../sim/agents.js';
import { billWei } from '../protocol/index.js';
import { type FaultyProxy, startProxy } from '../sim/proxy.js';
import type { World } from '../sim/world.js';
import { device, PRICE, sessionDone, smallWorld, startAgent, waitFor } from './helpers/world.js';

describe('the edge loses its chain node', () => {
  let world: World;
  let proxy: FaultyProxy;
  const agents = new Map<string, Agent>();
  let edge: AgentProcess;

  beforeAll(async () => {
    world = await smallWorld({ edge: true });
    proxy = await startProxy(new URL(world.rpcUrl));
    const edgeDevice = device(world, 'EDGE');
    const cfg = JSON.parse(readFileSync(edgeDevice.configPath, 'utf8'));
    cfg.chain.rpcUrl = proxy.url;
    writeFileSync(edgeDevice.configPath, JSON.stringify(cfg));
    edge = await spawnAgent(device(world, 'EDGE'), () => {});
    await waitReady(edge);
    for (const d of world.devices) if (d.role !== 'edge') agents.set(d.name, await startAgent(d));
  }, 120_000);

  afterAll(async () => {
    for (const a of agents.values()) await a.stop().catch(() => {});
    await edge?.stop();
    await proxy?.close();
    await world?.close();
  });

  it('the bill waits in the journal and settles once when the node is back', async () => {
    const ev = agents.get('EV1')!;
    const edgeDevice = device(world, 'EDGE');
    const edgeStatus = () =>
      control<{ chain: { reachable: boolean }; edge: { bills: Record<string, number> } }>(
        edgeDevice,
        'status',
      );
    const { id } = (await ev.control('charge', { targetWh: 2000 })) as { id: string };
    await waitFor('charging', () => ev.sessions.get(id)?.state === 'charging');
    await proxy.cut();
    const s = await waitFor('the EV to report', () => {
      const x = ev.sessions.get(id);
      return x?.state === 'awaitingSettlement' ? x : undefined;
    });
    // The edge holds the bill, and keeps working: it still answers while the node is away.
    const held = await waitFor('the edge to hold the bill', async () => {
      const { bills } = (await edgeStatus()).edge;
      return (bills.queued ?? 0) + (bills.submitted ?? 0) >= 1 ? bills : undefined;
    });
    expect(held).toBeDefined();
    await new Promise((r) => setTimeout(r, 6000));
    expect((await edgeStatus()).chain.reachable).toBe(false);
    expect(await world.operator.settledSessions(world.deployment.block, s.txid)).toHaveLength(0);
    expect(ev.sessions.get(id)?.state).toBe('awaitingSettlement');
    const journaled = Journal.read(edgeDevice.dataDir).get(`b:${s.txid}`) as { state: string } | undefined;
    expect(['queued', 'submitted']).toContain(journaled?.state);

    await proxy.restore();
    const done = await sessionDone(ev, id, 60_000);
    const events = await world.operator.settledSessions(world.deployment.block, done.txid);
    expect(events).toHaveLength(1);
    expect(events[0]!.amountWei).toBe(billWei(events[0]!.billedWh, PRICE));
    expect((await edgeStatus()).chain.reachable).toBe(true);
  }, 120_000);
});
