/**
 * The edge with more cars than stations: a search that finds every station taken waits at the
 * edge and is answered when the station frees (no empty answer that sends the car round again),
 * and a search with no station in its radius is answered at once with an empty suggestion.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/core/runtime.js';
import type { World } from '../sim/world.js';
import { device, PRICE, smallWorld, startAgent, waitFor } from './helpers/world.js';

describe('edge: more cars than stations', () => {
  let world: World;
  const agents = new Map<string, Agent>();
  const agent = (name: string) => agents.get(name)!;

  beforeAll(async () => {
    world = await smallWorld({
      edge: true,
      evs: [
        { name: 'EV1', latitude: 52.521, longitude: 13.41, profile: 'sdm120' },
        { name: 'EV2', latitude: 52.519, longitude: 13.4, profile: 'sdm120' },
      ],
      overrides: {
        timeouts: { replyMs: 20_000, reportMs: 5000, chargeIdleMs: 20_000, settleFallbackMs: 60_000 },
      },
    });
    for (const d of world.devices) agents.set(d.name, await startAgent(d));
  }, 120_000);

  afterAll(async () => {
    for (const a of agents.values()) await a.stop().catch(() => {});
    await world?.close();
  });

  const session = (ev: string, id: string) => agent(ev).sessions.get(id);
  const charge = async (ev: string, body: Record<string, unknown>) =>
    ((await agent(ev).control('charge', body)) as { id: string }).id;

  it('a car that finds the only station charging waits at the edge, then charges there once it is free', async () => {
    const first = await charge('EV1', { targetWh: 20_000 });
    await waitFor('EV1 charging', () => session('EV1', first)?.state === 'charging');
    const second = await charge('EV2', { targetWh: 1000, rating: 4 });
    // The edge keeps the search: EV2 neither fails nor asks a busy station.
    const waiting = () => (agent('EDGE').status().edge as { waiting: number }).waiting;
    await waitFor('the edge to keep the search', () => waiting() >= 1);
    expect(session('EV2', second)?.state).toBe('searching');
    const ev2 = device(world, 'EV2').address;
    expect([...agent('HCS1').sessions.values()].filter((s) => s.ev === ev2)).toHaveLength(0);

    const freedAt = Date.now();
    await agent('EV1').control('stop');
    const charged = await waitFor(
      'EV2 charging',
      () => {
        const s = session('EV2', second);
        if (s?.state === 'failed') throw new Error(`EV2 failed: ${s.error}`);
        return s?.state === 'charging' || s?.state === 'awaitingSettlement' || s?.state === 'done'
          ? s
          : undefined;
      },
      60_000,
    );
    expect(charged.hcs).toBe(device(world, 'HCS1').address);
    const done = await waitFor(
      'EV2 settled',
      () => (session('EV2', second)?.state === 'done' ? session('EV2', second) : undefined),
      60_000,
    );
    expect(done.settledAt!).toBeGreaterThan(freedAt);
    expect(done.terms!.price).toBe(PRICE.toString());
  }, 120_000);

  it('a search with no station in its radius is answered at once, with none', async () => {
    const id = await charge('EV2', { targetWh: 1000, latitude: 48.137, longitude: 11.575, radiusM: 5000 });
    const s = await waitFor(
      'EV2 told there is no station',
      () => (session('EV2', id)?.state === 'failed' ? session('EV2', id) : undefined),
      20_000,
    );
    // The edge's answer (an empty suggestion), not the car's own give-up after its search time.
    expect(s.error).toMatch(/no station within the search radius/);
  }, 30_000);
});
