/**
 * Batches (one bad entry never sinks a batch) of reservations and settlements, on a real anvil
 * node; one SessionsReserved / SessionsSettled event per batch carries every entry's outcome.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byStation, ChainSessionState, packSettlements, type SettlementTerms } from '../contracts/client.js';
import { expectRevert } from './helpers/anvilExpect.js';
import {
  evReceipt,
  type Member,
  newTerms,
  PRICE,
  reserve,
  type SettlementFixture,
  sessionReports,
  setupSettlement,
} from './helpers/anvilSettlement.js';

let fx: SettlementFixture;
let relayer: Member;

beforeAll(async () => {
  fx = await setupSettlement({ evs: 4, hcss: 2, strangers: 2 });
  relayer = fx.strangers[1]!;
});
afterAll(async () => {
  await fx?.stop();
});

async function entry(
  ev: Member,
  hcs: Member,
  evWh = 10_000n,
  hcsWh = 10_000n,
  overrides: Partial<SettlementTerms> = {},
) {
  const terms = await newTerms(fx, ev, hcs, overrides);
  return { terms, evConsent: evReceipt(fx, terms, 0n, 0), ...sessionReports(fx, terms, evWh, hcsWh) };
}

describe('reserveBatch', () => {
  it('reserves the good entries and reports each bad one with its reason', async () => {
    const [ev0, ev1] = fx.evs as [Member, Member];
    const [hcs0, hcs1] = fx.hcss as [Member, Member];
    const good = [await entry(ev0, hcs0), await entry(ev1, hcs1)];
    const forged = await entry(ev0, hcs1);
    forged.evConsent = evReceipt(fx, good[0]!.terms, 0n, 0);
    const tooDear = await entry(ev1, hcs0, 1n, 1n, { priceWeiPerKWh: PRICE * 1000n });
    const result = await relayer.client.reserveBatch([good[0]!, forged, tooDear, good[1]!, good[0]!]);
    expect(result.settled).toBe(2);
    expect(result.skipped).toEqual([
      { txid: forged.txid, reason: 'WrongSigner' },
      { txid: tooDear.txid, reason: 'InsufficientDeposit' },
      { txid: good[0]!.txid, reason: 'SeqUsed' },
    ]);
    for (const g of good)
      expect(await fx.operator.client.sessionState(g.terms.hcs, g.terms.seq)).toBe(
        ChainSessionState.Reserved,
      );
    await relayer.client.settleBatch(good);
  });
});

describe('settleBatch', () => {
  it('settles the good entries and skips each bad one with its reason', async () => {
    const [ev0, ev1, ev2, ev3] = fx.evs as [Member, Member, Member, Member];
    const [hcs0, hcs1] = fx.hcss as [Member, Member];
    const good = [
      await entry(ev0, hcs0),
      await entry(ev1, hcs1),
      await entry(ev2, hcs0),
      await entry(ev3, hcs1),
    ];
    const forged = await entry(ev0, hcs1);
    forged.evReport = sessionReports(fx, forged.terms, 10_000n, 10_000n, {
      ev: fx.strangers[0]!.privateKey,
    }).evReport;
    const outOfTolerance = await entry(ev1, hcs0, 5_000n, 10_000n);
    const unreserved = await entry(ev2, hcs1);
    for (const e of [...good, forged, outOfTolerance]) await reserve(fx, e.terms);
    const duplicate = good[0]!; // the same txid twice in one batch: the second is a replay
    const batch = [good[0]!, forged, good[1]!, outOfTolerance, good[2]!, unreserved, good[3]!, duplicate];

    const evBefore = (await fx.operator.client.depositOf(ev0.address)).balance;
    const earnedBefore = await Promise.all([hcs0, hcs1].map((h) => fx.operator.client.earningsOf(h.address)));
    const result = await relayer.client.settleBatch(batch);
    expect(result.settled).toBe(4);
    expect(result.skipped).toEqual([
      { txid: forged.txid, reason: 'WrongSigner' },
      // A relayer cannot settle outside the tolerance; the station can, on its own.
      { txid: outOfTolerance.txid, reason: 'ToleranceExceeded' },
      { txid: unreserved.txid, reason: 'NotReserved' },
      { txid: duplicate.txid, reason: 'AlreadySettled' },
    ]);
    expect(result.results.filter((r) => r.reason === '').map((r) => r.amountWei)).toEqual(
      good.map(() => (10_000n * PRICE) / 1000n),
    );
    for (const g of good)
      expect(await fx.operator.client.sessionState(g.terms.hcs, g.terms.seq)).toBe(ChainSessionState.Settled);
    for (const bad of [forged, outOfTolerance])
      expect(await fx.operator.client.sessionState(bad.terms.hcs, bad.terms.seq)).toBe(
        ChainSessionState.Reserved,
      );
    // Each station earned its two good sessions (credited once per run of its entries).
    for (const [i, h] of [hcs0, hcs1].entries())
      expect((await fx.operator.client.earningsOf(h.address)) - earnedBefore[i]!).toBe(
        (2n * 10_000n * PRICE) / 1000n,
      );
    // ev0 paid once for its one good session, not for the duplicate.
    expect((await fx.operator.client.depositOf(ev0.address)).balance).toBe(
      evBefore - (10_000n * PRICE) / 1000n,
    );
    // One event for the whole batch.
    const iface = relayer.client.contract.interface;
    const names = result.receipt.logs.map((l) => iface.parseLog(l)?.name);
    expect(names).toEqual(['SessionsSettled']);
    // The station settles its out-of-tolerance session itself: what the EV acknowledged.
    const own = await fx.hcss[0]!.client.settleBatch([outOfTolerance]);
    expect(own.results[0]).toMatchObject({ reason: '', billedWh: 5_000n });
  });

  it('credits every station its sessions in an unsorted batch, refusals in between', async () => {
    const [ev0, ev1, ev2, ev3] = fx.evs as [Member, Member, Member, Member];
    const [hcs0, hcs1] = fx.hcss as [Member, Member];
    const wh = [1_000n, 2_000n, 3_000n, 4_000n, 5_000n];
    const runs = [
      await entry(ev0, hcs0, wh[0], wh[0]),
      await entry(ev1, hcs0, wh[1], wh[1]),
      await entry(ev2, hcs1, wh[2], wh[2]),
      await entry(ev3, hcs0, wh[3], wh[3]),
      await entry(ev0, hcs1, wh[4], wh[4]),
    ];
    const unreserved = await entry(ev1, hcs1);
    for (const e of runs) await reserve(fx, e.terms);
    const earnedBefore = await Promise.all([hcs0, hcs1].map((h) => fx.operator.client.earningsOf(h.address)));
    // Sent as is (the client would sort it): hcs0, hcs0, hcs1, (refused hcs1), hcs0, hcs1.
    const blob = packSettlements([runs[0]!, runs[1]!, runs[2]!, unreserved, runs[3]!, runs[4]!]);
    await (await relayer.client.contract.getFunction('settleBatch')(blob)).wait();
    const paid = (e: number) => (wh[e]! * PRICE) / 1000n;
    expect((await fx.operator.client.earningsOf(hcs0.address)) - earnedBefore[0]!).toBe(
      paid(0) + paid(1) + paid(3),
    );
    expect((await fx.operator.client.earningsOf(hcs1.address)) - earnedBefore[1]!).toBe(paid(2) + paid(4));
  });

  it('sends a batch grouped by station, each station’s entries in their order (any address case)', () => {
    const at = (hcs: string, seq: bigint) => ({ terms: { hcs, seq } as SettlementTerms });
    const sorted = byStation([
      at('0xBB', 1n),
      at('0xaa', 2n),
      at('0xbb', 3n),
      at('0xAA', 4n),
      at('0xbb', 5n),
    ]);
    expect(sorted.map((e) => e.terms.seq)).toEqual([2n, 4n, 1n, 3n, 5n]);
  });

  it('refuses calldata that does not parse as a whole', async () => {
    await expectRevert(
      relayer.client.contract.getFunction('settleBatch').staticCall(new Uint8Array(100)),
      'MalformedBatch',
    );
  });
});
