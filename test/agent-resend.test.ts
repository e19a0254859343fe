/**
 * What matters is resent until acknowledged (agent/core/outbox.ts), across a broker SIGKILLed and
 * restarted and an agent restarted. Debian's mosquitto is the broker. The EV ends its charge while
 * the broker is dead (the driver unplugs), and is itself restarted before the broker comes back;
 * the station and the edge come back to the broker only after the EV has published everything it
 * had (to a broker that, restarted without its sessions, has nobody subscribed yet): exactly what
 * was lost before (issue 15: no session settled). The session must settle anyway, the station
 * must have stopped (on the EV's word, or on its own once the EV's receipts stopped), and every
 * outbox drains. Without the resends the EV's final report never reaches the edge: no settlement.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/core/runtime.js';
import type { MosquittoBroker } from '../sim/broker.js';
import type { World } from '../sim/world.js';
import { device, mosquittoWorld, sessionDone, startAgent, waitFor } from './helpers/world.js';

describe('a broker killed mid-session', () => {
  let broker: MosquittoBroker;
  let world: World;
  let agents: Map<string, Agent>;
  let close: () => Promise<void>;

  beforeAll(async () => {
    // The station's idle timeout far beyond the test: it must stop because the EV said so.
    ({ broker, world, agents, close } = await mosquittoWorld({
      replyMs: 5000,
      reportMs: 5000,
      chargeIdleMs: 600_000,
      settleFallbackMs: 600_000,
    }));
  }, 120_000);

  afterAll(() => close?.());

  it('the session settles, the station stops, and nothing waits to be resent', async () => {
    let ev = agents.get('EV1')!;
    const hcs = agents.get('HCS1')!;
    const edge = agents.get('EDGE')!;
    const { id } = (await ev.control('charge', { targetWh: 50_000 })) as { id: string };
    await waitFor('the EV charging', () => ev.sessions.get(id)?.state === 'charging', 30_000);
    await waitFor('some energy', () => {
      const s = ev.sessions.get(id);
      return s?.state === 'charging' && (s.lastWh ?? 0) > (s.startWh ?? 0);
    });
    await broker.kill('SIGKILL');
    // The station and the edge stay away from the broker for longer than the EV.
    await Promise.all([hcs.bus.close(), edge.bus.close()]);
    // The driver unplugs while the broker is dead (termination 2): nobody hears it yet.
    await ev.control('stop');
    await waitFor(
      'the EV to end its charge',
      () => ev.sessions.get(id)?.state === 'awaitingSettlement',
      60_000,
    );
    const txid = ev.sessions.get(id)!.txid!;
    // The EV restarts (its MQTT client's queue dies with it; the journal does not).
    await ev.stop();
    await broker.restart();
    ev = await startAgent(device(world, 'EV1'));
    agents.set('EV1', ev);
    await waitFor('the EV back on the broker', () => ev.bus.connected, 30_000);
    // Its first sends (resumed from the journal) reach a broker with no subscriber on the other side.
    await new Promise((r) => setTimeout(r, 1500));
    await Promise.all([hcs.bus.connect(), edge.bus.connect()]);
    await sessionDone(ev, id, 120_000);
    const station = await waitFor(
      'the station settled',
      () => [...hcs.sessions.values()].find((s) => s.txid === txid && s.state === 'done'),
      60_000,
    );
    // The station stopped (on the EV's word, or on its own when the EV's receipts stopped coming).
    expect(station.endStatus).toBeDefined();
    expect(ev.outbox.figures.resent).toBeGreaterThan(0);
    // The edge's answers were acknowledged too: every outbox drains.
    await waitFor('every outbox empty', () => [ev, hcs, edge].every((a) => a.outbox.size === 0), 60_000);
  }, 240_000);
});
