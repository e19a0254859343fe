/**
 * The station's turn-around at scale (issue 16): the edge puts a consent on chain as soon as it
 * comes (not at its next tick), and tells the station once the reservation is mined; the station
 * reads the chain at once (not at its next tick) and switches on on what the chain says. Real
 * agents, anvil and a broker; the edge's and the station's tickers are stopped, so nothing but
 * those messages can move the session to the charger switching on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChainSessionState } from '../contracts/client.js';
import type { Agent } from '../agent/core/runtime.js';
import { big } from '../agent/core/json.js';
import type { World } from '../sim/world.js';
import { expectSessionIndexMatchesScan } from './helpers/sessions.js';
import { device, smallWorld, startAgent, waitFor } from './helpers/world.js';

/** Stops an agent's ticker (meter polls, timeouts, the edge's batches): only messages move it now. */
function stopTicker(agent: Agent): void {
  clearInterval((agent as unknown as { timer?: NodeJS.Timeout }).timer);
}

describe('a reservation through the edge, without waiting for a tick', () => {
  let world: World;
  let agents: Agent[] = [];

  beforeAll(async () => {
    world = await smallWorld({ edge: true });
    for (const d of world.devices) agents.push(await startAgent(d));
  }, 120_000);

  afterAll(async () => {
    for (const a of agents) await a.stop();
    agents = [];
    await world?.close();
  });

  it('the edge reserves the consent at once and the station switches on at its word, once the chain shows it reserved', async () => {
    const role = (r: string) => agents.find((a) => a.cfg.role === r)!;
    const [ev, hcs, edge] = [role('ev'), role('hcs'), role('edge')];
    stopTicker(edge);
    stopTicker(hcs);
    await ev.control('charge', { targetWh: 3000 });
    const s = await waitFor(
      'the station switched on',
      () => [...hcs.sessions.values()].find((x) => x.state === 'charging'),
      30_000,
    );
    expect(device(world, 'HCS1').meter!.charging).toBe(true);
    // Switched on because the chain holds the reservation, which the edge's batch put there.
    const state = await world.operator.sessionState(hcs.address, big(s.terms!.seq));
    expect(Number(state)).toBe(ChainSessionState.Reserved);
    // The open sessions and the sessions gauge, kept as sessions are saved, are what a full scan
    // of the sessions says.
    for (const a of [ev, hcs]) await expectSessionIndexMatchesScan(a);
    expect(hcs.openSessions().map((x) => x.state)).toEqual(['charging']);
  }, 60_000);
});
