/**
 * The edge away while a session ends, and the broker restarted meanwhile (what it held for the
 * edge is gone): the station settles directly (its fallback) and both parties are done before the
 * edge is back. The edge must still learn how the session ended: what each party sent it is resent
 * until it acknowledges, even after the party's session is over. Before, a finished session
 * stopped resending to the edge, whose bill stayed `collecting` until the settlement window closed
 * (about an hour), the station counted as charging all that time and never suggested to a car
 * (found by the chaos run at 40 EVs x 10 stations). Likewise an agreement the EV never consents
 * to (the driver declines the terms, or the mutual died with a broker): nobody tells the edge, and
 * it kept the station as charging until settleBy; at the default load both stations of the chaos
 * run were held so and no car charged for the rest of the run. Debian's mosquitto is the broker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bill } from '../agent/roles/edge.js';
import type { Agent } from '../agent/core/runtime.js';
import type { MosquittoBroker } from '../sim/broker.js';
import type { World } from '../sim/world.js';
import { mosquittoWorld, sessionDone, waitFor } from './helpers/world.js';

describe('sessions that end without the edge hearing of it', () => {
  let broker: MosquittoBroker;
  let world: World;
  let agents: Map<string, Agent>;
  let close: () => Promise<void>;

  beforeAll(async () => {
    // The station settles on its own 3 s after the EV's final report when the edge has not.
    ({ broker, world, agents, close } = await mosquittoWorld({
      replyMs: 5000,
      reportMs: 3000,
      chargeIdleMs: 600_000,
      settleFallbackMs: 3000,
    }));
  }, 120_000);

  afterAll(() => close?.());

  it('learns the reports when back, closes the bill as settled, and frees the station', async () => {
    const ev = agents.get('EV1')!;
    const hcs = agents.get('HCS1')!;
    const edge = agents.get('EDGE')!;
    const { id } = (await ev.control('charge', { targetWh: 50_000 })) as { id: string };
    await waitFor('some energy', () => {
      const s = ev.sessions.get(id);
      return s?.state === 'charging' && (s.lastWh ?? 0) > (s.startWh ?? 0);
    });
    const txid = ev.sessions.get(id)!.txid!;
    await edge.bus.close();
    await ev.control('stop');
    // The station settles directly; the EV sees it on chain.
    await waitFor(
      'the station settled directly',
      () => [...hcs.sessions.values()].find((s) => s.txid === txid && s.state === 'done'),
      60_000,
    );
    await sessionDone(ev, id, 60_000);
    // What the broker kept for the edge's session dies with it.
    await broker.kill('SIGKILL');
    await broker.restart();
    await waitFor('the parties back on the broker', () => ev.bus.connected && hcs.bus.connected, 30_000);
    await edge.bus.connect();
    const bill = await waitFor(
      'the edge to close the bill',
      () => {
        const b = edge.journal.get<Bill>(`b:${txid}`);
        return b?.state === 'settled' || b?.state === 'failed' ? b : undefined;
      },
      120_000,
    );
    // The chain holds it once (the station's settlement); the edge's own try found it settled.
    expect(bill.state).toBe('settled');
    expect(await world.operator.settledSessions(world.deployment.block, txid)).toHaveLength(1);
    // The station is free again at the edge: a new search is answered with it at once.
    const next = (await ev.control('charge', { targetWh: 1000 })) as { id: string };
    await waitFor(
      'the next charge to start',
      () => {
        const s = ev.sessions.get(next.id);
        if (s?.state === 'failed') throw new Error(`next charge failed: ${s.error}`);
        return s?.state === 'charging' || s?.state === 'awaitingSettlement' || s?.state === 'done';
      },
      30_000,
    );
    await waitFor('every outbox empty', () => [ev, hcs, edge].every((a) => a.outbox.size === 0), 90_000);
  }, 300_000);

  it('a driver who declines the terms does not keep the station from the next car', async () => {
    const ev = agents.get('EV1')!;
    const hcs = agents.get('HCS1')!;
    const edge = agents.get('EDGE')!;
    await waitFor('no charge under way', () =>
      [...ev.sessions.values()].every((s) => s.state === 'done' || s.state === 'failed'),
    );
    // The driver sees the terms (the edge has formed the agreement) and stops instead of accepting.
    const { id } = (await ev.control('charge', { targetWh: 1000, confirm: true })) as { id: string };
    await waitFor('the terms shown', () => ev.sessions.get(id)?.agreedAt !== undefined, 30_000);
    const txid = ev.sessions.get(id)!.txid!;
    await ev.control('stop');
    await waitFor(
      'the station to drop the offer',
      () => [...hcs.sessions.values()].find((s) => s.txid === txid && s.state === 'failed'),
      30_000,
    );
    // The edge closes the agreement (the station's word that it dropped the offer, or past the
    // consent's wait: two reply times and its slack): nothing signed, so the station is free, and
    // the next search is answered with it.
    await waitFor(
      'the edge to close the agreement',
      () => edge.journal.get<Bill>(`b:${txid}`)?.state === 'failed',
      2 * 5000 + 10_000 + 30_000,
    );
    const next = (await ev.control('charge', { targetWh: 1000 })) as { id: string };
    await waitFor(
      'the next charge to start',
      () => {
        const s = ev.sessions.get(next.id);
        if (s?.state === 'failed') throw new Error(`next charge failed: ${s.error}`);
        return s?.state === 'charging' || s?.state === 'awaitingSettlement' || s?.state === 'done';
      },
      30_000,
    );
  }, 120_000);
});
