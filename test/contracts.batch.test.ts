/**
 * Batch settlement (one bad entry never sinks a batch), disputed settlement (the uncontested part
 * is paid) and expiry, on a real anvil node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChainSessionState, type SettlementTerms } from '../contracts/client.js';
import { expectRevert } from './helpers/anvilExpect.js';
import {
  increaseTime,
  type Member,
  newTerms,
  PRICE,
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
  return { terms, ...sessionReports(fx, terms, evWh, hcsWh) };
}

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
    const overCap = await entry(ev2, hcs1, 50_000n, 50_000n);
    const duplicate = good[0]!; // the same txid twice in one batch: the second is a replay
    const batch = [good[0]!, forged, good[1]!, outOfTolerance, good[2]!, overCap, good[3]!, duplicate];

    const evBefore = (await fx.operator.client.depositOf(ev0.address)).balance;
    const result = await relayer.client.settleBatch(batch);
    expect(result.settled).toBe(4);
    expect(result.skipped).toEqual([
      { txid: forged.txid, reason: 'WrongSigner' },
      { txid: outOfTolerance.txid, reason: 'ToleranceExceeded' },
      { txid: overCap.txid, reason: 'EnergyAboveCap' },
      { txid: duplicate.txid, reason: 'AlreadySettled' },
    ]);
    for (const g of good) {
      expect(await fx.operator.client.sessionState(g.terms.hcs, g.terms.seq)).toBe(ChainSessionState.Settled);
    }
    for (const bad of [forged, outOfTolerance, overCap]) {
      expect(await fx.operator.client.sessionState(bad.terms.hcs, bad.terms.seq)).toBe(
        ChainSessionState.Open,
      );
    }
    // ev0 paid once for its one good session, not for the duplicate.
    expect((await fx.operator.client.depositOf(ev0.address)).balance).toBe(
      evBefore - (10_000n * PRICE) / 1000n,
    );
    // The contract's return value agrees with the events.
    const count = await relayer.client.contract
      .getFunction('settleBatch')
      .staticCall(
        [good[0]!.terms, (await entry(ev3, hcs0)).terms],
        [good[0]!.evReport, good[0]!.evReport],
        [good[0]!.hcsReport, good[0]!.hcsReport],
      );
    expect(count).toBe(0n);
  });

  it('skips a bill beyond the deposit without touching the other entries', async () => {
    const [ev0, ev1] = fx.evs as [Member, Member];
    const hcs = fx.hcss[0]!;
    const tooDear = await entry(ev0, hcs, 40_000n, 40_000n, { priceWeiPerKWh: PRICE * 1000n });
    const fine = await entry(ev1, hcs);
    const result = await relayer.client.settleBatch([tooDear, fine]);
    expect(result.settled).toBe(1);
    expect(result.skipped).toEqual([{ txid: tooDear.txid, reason: 'InsufficientDeposit' }]);
  });

  it('refuses arrays of different lengths as a whole', async () => {
    const e = await entry(fx.evs[0]!, fx.hcss[0]!);
    await expectRevert(
      relayer.client.contract.getFunction('settleBatch').staticCall([e.terms], [e.evReport], []),
      'BatchLengthMismatch',
    );
  });
});

describe('settleDisputed', () => {
  it('pays only the uncontested part and records both amounts', async () => {
    const ev = fx.evs[2]!;
    const hcs = fx.hcss[1]!;
    const d = await entry(ev, hcs, 8_000n, 12_000n); // the EV says 8 kWh, the HCS 12 kWh
    await expectRevert(relayer.client.settle(d.terms, d.evReport, d.hcsReport), 'ToleranceExceeded');
    const earningsBefore = await fx.operator.client.earningsOf(hcs.address);
    const receipt = await relayer.client.settleDisputed(d.terms, d.evReport, d.hcsReport);
    const event = receipt.logs
      .map((l) => relayer.client.contract.interface.parseLog(l))
      .find((e) => e?.name === 'SettledDisputed');
    const paid = (8_000n * PRICE) / 1000n;
    expect(event?.args.toObject()).toMatchObject({
      txid: d.txid,
      evEnergyWh: 8_000n,
      hcsEnergyWh: 12_000n,
      amountWei: paid,
      seq: d.terms.seq,
    });
    expect(await fx.operator.client.earningsOf(hcs.address)).toBe(earningsBefore + paid);
    expect(await fx.operator.client.sessionState(hcs.address, d.terms.seq)).toBe(ChainSessionState.Settled);
    // Settled is settled: no second payment through either path.
    await expectRevert(relayer.client.settleDisputed(d.terms, d.evReport, d.hcsReport), 'AlreadySettled');
    // And the EV can still rate it.
    await ev.client.rate(d.terms, 2, 'disputed', d.hcsReport);
  });

  it('refuses reports that agree (they settle normally) and keeps every other check', async () => {
    const agreed = await entry(fx.evs[0]!, fx.hcss[0]!, 10_000n, 10_010n);
    await expectRevert(
      relayer.client.settleDisputed(agreed.terms, agreed.evReport, agreed.hcsReport),
      'WithinTolerance',
    );
    const forged = await entry(fx.evs[0]!, fx.hcss[0]!, 1_000n, 10_000n);
    const wrong = sessionReports(fx, forged.terms, 1_000n, 10_000n, { hcs: fx.strangers[0]!.privateKey });
    await expectRevert(
      relayer.client.settleDisputed(forged.terms, forged.evReport, wrong.hcsReport),
      'WrongSigner',
    );
  });
});

describe('expire', () => {
  it('lets the HCS close an unsettled session after its window, for good', async () => {
    const ev = fx.evs[3]!;
    const hcs = fx.hcss[0]!;
    const e = await entry(ev, hcs);
    await expectRevert(hcs.client.expire(e.terms), 'SettlementWindowOpen');
    await increaseTime(
      fx.provider,
      e.terms.settleBy - BigInt((await fx.provider.getBlock('latest'))!.timestamp) + 1n,
    );
    // Not the EV: closing made-up terms with a live seq would let it dodge a bill.
    await expectRevert(ev.client.expire(e.terms), 'NotSessionHcs');
    const receipt = await hcs.client.expire(e.terms);
    const event = receipt.logs
      .map((l) => hcs.client.contract.interface.parseLog(l))
      .find((x) => x?.name === 'SessionExpired');
    expect(event?.args.txid).toBe(e.txid);
    expect(await fx.operator.client.sessionState(hcs.address, e.terms.seq)).toBe(ChainSessionState.Expired);
    await expectRevert(hcs.client.expire(e.terms), 'AlreadyExpired');
    await expectRevert(relayer.client.settle(e.terms, e.evReport, e.hcsReport), 'SettlementWindowClosed');
    // The seq is closed whatever terms name it: even reports for a later window do not settle.
    const later = { ...e.terms, settleBy: e.terms.settleBy + 10n * 86_400n };
    const reports = sessionReports(fx, later, 10_000n, 10_000n);
    await expectRevert(relayer.client.settle(later, reports.evReport, reports.hcsReport), 'AlreadyExpired');
  });

  it('refuses to expire a settled session', async () => {
    const hcs = fx.hcss[1]!;
    const s = await entry(fx.evs[0]!, hcs);
    await relayer.client.settle(s.terms, s.evReport, s.hcsReport);
    await increaseTime(
      fx.provider,
      s.terms.settleBy - BigInt((await fx.provider.getBlock('latest'))!.timestamp) + 1n,
    );
    await expectRevert(hcs.client.expire(s.terms), 'AlreadySettled');
  });
});
