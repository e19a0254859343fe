/**
 * Reservations that never charged, and agreements never consented to (issue 15's leftovers).
 *
 * A reservation holds one of its station's 16 ring slots (seq mod 16) until it is settled or, past
 * settleBy, released; while it stands the contract refuses the station's session 16 seqs later
 * (`TooManyOpenReservations`: 3–4 times in each 30-minute chaos run, from cars that consented and
 * never took current, and offers the station dropped while a consent was on its way). Now a
 * session nothing was delivered for is settled at 0 Wh at once, with the EV's consent (its
 * signed receipt for 0 Wh) and the station's signed 0 Wh report: by the edge, or by the station
 * itself while the edge is away, the other answered `AlreadySettled`. And the edge closes an
 * agreement the car never consented to once the consent can no longer come, refusing a late one.
 * Real anvil, Debian's mosquitto, in-process agents.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChainSessionState } from '../contracts/client.js';
import type { Agent } from '../agent/core/runtime.js';
import type { Bill } from '../agent/roles/edge.js';
import type { SessionRecord } from '../agent/core/session.js';
import { SIM_CONTROL } from '../sim/meter/model.js';
import type { World } from '../sim/world.js';
import { device, mosquittoWorld, type MosquittoWorld, sessionDone, waitFor } from './helpers/world.js';

const REPLY_MS = 4000;

describe('sessions that never charged', () => {
  let w: MosquittoWorld;
  let world: World;
  let ev: Agent;
  let hcs: Agent;
  let edge: Agent;

  beforeAll(async () => {
    // The station's own fallbacks are far off (report wait and edge's turn 300 s): what settles a
    // session here within the test is the close at 0 Wh, not the ordinary wait.
    w = await mosquittoWorld({
      replyMs: REPLY_MS,
      reportMs: 300_000,
      chargeIdleMs: 8000,
      settleFallbackMs: 300_000,
    });
    world = w.world;
    ev = w.agents.get('EV1')!;
    hcs = w.agents.get('HCS1')!;
    edge = w.agents.get('EDGE')!;
  }, 120_000);

  afterAll(() => w?.close());

  const chainState = (s: { terms: { seq: string } }) =>
    world.operator.sessionState(hcs.address, BigInt(s.terms.seq));
  const hcsSession = (txid: string) => [...hcs.sessions.values()].find((s) => s.txid === txid);
  const idle = () =>
    waitFor(
      'no charge under way',
      () => [...ev.sessions.values()].every((s) => s.state === 'done' || s.state === 'failed'),
      60_000,
    );

  /** The driver is shown terms the edge agreed (and does not accept them): the agreement stands. */
  async function agreedTerms() {
    await idle();
    const { id } = (await ev.control('charge', { targetWh: 1000, confirm: true })) as { id: string };
    await waitFor('the terms shown', () => ev.sessions.get(id)?.agreedAt !== undefined, 30_000);
    const s = ev.sessions.get(id) as SessionRecord & {
      txid: string;
      terms: { seq: string; settleBy: number };
    };
    await waitFor('the edge’s agreement', () => edge.journal.get<Bill>(`b:${s.txid}`));
    return s;
  }

  /** The car's consent, signed with its key, sent to `to` only (the other copy lost). */
  async function consentTo(s: { txid: string }, to: Agent) {
    const consent = await ev.bus.sign({
      type: 'chargeReceived',
      ev: ev.address,
      hcs: hcs.address,
      txid: s.txid,
      energyWh: 0n,
      optional: { i: 0 },
    });
    await ev.bus.publishEnvelope(to.address, consent, 'chargeReceived');
  }

  it('the consent reached only the edge, which reserved it; the station dropped the offer: the edge settles it at 0 Wh, and the session 16 seqs later charges', async () => {
    const s = await agreedTerms();
    await consentTo(s, edge);
    await waitFor('the reservation', async () => (await chainState(s)) === ChainSessionState.Reserved);
    // The station never had the consent: it drops the offer and says it delivered nothing.
    await waitFor('the station to drop the offer', () => hcsSession(s.txid)?.state === 'failed', 30_000);
    await waitFor(
      'the reservation closed at 0 Wh',
      async () => (await chainState(s)) === ChainSessionState.SettledFree,
      30_000,
    );
    expect(Date.now() / 1000).toBeLessThan(s.terms.settleBy);
    expect((await world.operator.depositOf(ev.address)).reserved).toBe(0n);
    const bill = await waitFor('the edge’s bill settled', () => {
      const b = edge.journal.get<Bill>(`b:${s.txid}`);
      return b?.state === 'settled' ? b : undefined;
    });
    expect(bill.energyWh).toBe('0');
    expect(await world.operator.settledSessions(world.deployment.block, s.txid)).toHaveLength(1);

    // The station's next session takes the same ring slot (15 sessions later, as it were).
    hcs.journal.put('seq', (BigInt(s.terms.seq) + 15n).toString());
    await idle();
    const next = (await ev.control('charge', { targetWh: 1000 })) as { id: string };
    const charging = await waitFor(
      'the next session (same slot) to charge',
      () => {
        const x = ev.sessions.get(next.id);
        if (x?.state === 'failed') throw new Error(`next charge failed: ${x.error}`);
        return x?.state === 'charging' && (x.lastWh ?? 0) > x.startWh ? x : undefined;
      },
      40_000,
    );
    expect(BigInt(charging.terms.seq) % 16n).toBe(BigInt(s.terms.seq) % 16n);
    await ev.control('stop');
    await sessionDone(ev, next.id, 60_000);
  }, 180_000);

  it('with the edge away, the station closes a reservation it gave up at 0 Wh itself once the late consent comes; the edge, back, finds it settled', async () => {
    const s = await agreedTerms();
    await consentTo(s, edge);
    await waitFor('the reservation', async () => (await chainState(s)) === ChainSessionState.Reserved);
    await edge.bus.close();
    await waitFor('the station to drop the offer', () => hcsSession(s.txid)?.state === 'failed', 30_000);
    // The car's consent reaches the station after all, late.
    await consentTo(s, hcs);
    await waitFor(
      'the station’s own close at 0 Wh',
      async () => (await chainState(s)) === ChainSessionState.SettledFree,
      30_000,
    );
    expect(edge.journal.get<Bill>(`b:${s.txid}`)?.state).toBe('collecting');
    // Back, the edge gets the station's 0 Wh report, bills it, and the chain answers AlreadySettled.
    await edge.bus.connect();
    await waitFor(
      'the edge’s bill closed',
      () => edge.journal.get<Bill>(`b:${s.txid}`)?.state === 'settled',
      60_000,
    );
    expect(await world.operator.settledSessions(world.deployment.block, s.txid)).toHaveLength(1);
    expect((await world.operator.depositOf(ev.address)).reserved).toBe(0n);
    await waitFor('the station’s close done', () => hcsSession(s.txid)?.closeAtZero === undefined);
  }, 180_000);

  it('a car that never takes current: the station switches off on no progress and settles 0 Wh at once, with the edge away', async () => {
    await idle();
    // The car accepts the switch but draws nothing (a full battery).
    const model = device(world, 'EV1').meter!.model;
    const write = model.writeRegister.bind(model);
    model.writeRegister = (address, value) => (address === SIM_CONTROL.enable ? true : write(address, value));
    try {
      const { id } = (await ev.control('charge', { targetWh: 1000 })) as { id: string };
      const txid = await waitFor('the station charging', () => {
        const x = ev.sessions.get(id);
        return x?.txid && hcsSession(x.txid)?.state === 'charging' ? x.txid : undefined;
      });
      await edge.bus.close();
      const done = await waitFor(
        'the station’s 0 Wh settlement',
        () => {
          const x = hcsSession(txid);
          if (x?.state === 'failed') throw new Error(`station session failed: ${x.error}`);
          return x?.state === 'done' ? x : undefined;
        },
        40_000,
      );
      expect(done.nothingDelivered).toBe(true);
      const s = done as SessionRecord & { terms: { seq: string } };
      expect(await chainState(s)).toBe(ChainSessionState.SettledFree);
      await edge.bus.connect();
      await waitFor(
        'the edge’s bill closed',
        () => edge.journal.get<Bill>(`b:${txid}`)?.state === 'settled',
        60_000,
      );
      expect(await world.operator.settledSessions(world.deployment.block, txid)).toHaveLength(1);
    } finally {
      model.writeRegister = write;
    }
  }, 180_000);

  it('is closed at the edge as soon as the station says it dropped the offer (its 0 Wh report), and a late consent is not reserved', async () => {
    const s = await agreedTerms();
    await waitFor('the station to drop the offer', () => hcsSession(s.txid)?.state === 'failed', 30_000);
    // The station's report reaches the edge within moments; the consent window alone would close
    // the agreement only 10 s after the station dropped it.
    const bill = await waitFor('the edge to close the agreement', () => {
      const b = edge.journal.get<Bill>(`b:${s.txid}`);
      return b?.state === 'failed' ? b : undefined;
    });
    expect(bill.error).toBe('the station dropped the offer before the EV consented');
    await consentTo(s, edge);
    // Past a few of the edge's ticks (a reservation goes out at the next one) and a block.
    await new Promise((r) => setTimeout(r, 4000));
    // Its consent journaled nowhere (the edge keeps a bill's envelopes apart: e:<txid>:consent).
    expect(edge.journal.get(`e:${s.txid}:consent`)).toBeUndefined();
    expect(edge.journal.get<Bill>(`b:${s.txid}`)?.reservation).toBeUndefined();
    expect(await chainState(s)).toBe(ChainSessionState.None);
  }, 120_000);

  it('is closed at the edge once the consent can no longer come, and a late consent is not reserved', async () => {
    const s = await agreedTerms();
    // The station's word that it dropped the offer does not reach the edge (it is away): the edge
    // must close the agreement on its own.
    await hcs.bus.close();
    const bill = await waitFor(
      'the edge to close the agreement',
      () => {
        const b = edge.journal.get<Bill>(`b:${s.txid}`);
        return b?.state === 'failed' ? b : undefined;
      },
      2 * REPLY_MS + 10_000 + 30_000,
    );
    expect(bill.error).toMatch(/consent/);
    expect((edge.status() as { edge: { bills: Record<string, number> } }).edge.bills.collecting ?? 0).toBe(0);
    // The car's consent, late: refused (not reserved), the bill stays closed.
    await consentTo(s, edge);
    // Past a few of the edge's ticks (a reservation goes out at the next one) and a block.
    await new Promise((r) => setTimeout(r, 4000));
    expect(edge.journal.get<Bill>(`b:${s.txid}`)).toMatchObject({ state: 'failed' });
    // Its consent journaled nowhere (the edge keeps a bill's envelopes apart: e:<txid>:consent).
    expect(edge.journal.get(`e:${s.txid}:consent`)).toBeUndefined();
    expect(edge.journal.get<Bill>(`b:${s.txid}`)?.reservation).toBeUndefined();
    expect(await chainState(s)).toBe(ChainSessionState.None);
    await hcs.bus.connect();
  }, 120_000);
});
