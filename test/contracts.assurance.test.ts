/**
 * Issue 12: "an honest station is always paid". Each test is one attack of the issue, played on a
 * real anvil node against the deployed contract, and asserts the promise that the attack broke:
 * a station whose agreement stood is paid for what it delivered (I1), an EV never pays for more
 * than it received (I2). The honest parties act through `honest` below (what the agents do); the
 * attacker does whatever the contract lets it.
 */
import { parseEther } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packSettlements, revertName, type SettlementTerms } from '../contracts/client.js';
import {
  increaseTime,
  latestTimestamp,
  type Member,
  newTerms,
  reserve,
  type SettlementFixture,
  sessionReports,
  setupSettlement,
} from './helpers/anvilSettlement.js';

let fx: SettlementFixture;

beforeAll(async () => {
  fx = await setupSettlement({ evs: 6, hcss: 4, strangers: 1, depositWei: parseEther('1') });
});
afterAll(async () => {
  await fx?.stop();
});

const bill = (wh: bigint, t: SettlementTerms) => (wh * t.priceWeiPerKWh) / 1000n;
const earnings = (m: Member) => fx.operator.client.earningsOf(m.address);
const attempt = (p: Promise<unknown>) =>
  p.then(
    () => true,
    () => false,
  );

/**
 * What the honest agents do: the agreement is a reservation on chain (the station switches on
 * once it stands), the station settles with the highest receipt the EV signed and its own meter,
 * and numbers its sessions above what the chain holds.
 */
const honest = {
  /** The agreement: true if it stands and the station may switch on. */
  async agree(t: SettlementTerms): Promise<boolean> {
    return attempt(reserve(fx, t));
  },
  /** The station settles with the EV's highest receipt and its own meter. */
  async settle(t: SettlementTerms, evReceiptsWh: bigint[], hcsWh: bigint): Promise<void> {
    const evWh = evReceiptsWh.reduce((a, b) => (a > b ? a : b), 0n);
    const r = sessionReports(fx, t, evWh, hcsWh);
    const hcs = fx.hcss.find((h) => h.address === t.hcs)!;
    await attempt(hcs.client.settle(t, r.evReport, r.hcsReport));
  },
  /** The seq a station picks after losing its journal: above what the chain holds. */
  async seqAfterJournalLoss(hcs: Member): Promise<bigint> {
    return (await fx.operator.client.lastSeq(hcs.address)) + 1n;
  },
};

describe('issue 12: an honest station is always paid', () => {
  it('A. deposit drained ahead of the honest station', async () => {
    const [ev] = fx.evs as [Member];
    const [station, accomplice] = fx.hcss as [Member, Member];
    const terms = await newTerms(fx, ev, station);
    expect(await fx.operator.client.availableDeposit(ev.address)).toBeGreaterThanOrEqual(
      bill(terms.maxEnergyWh, terms),
    );
    const agreed = await honest.agree(terms);
    expect(agreed).toBe(true);
    // 30 kWh delivered; before the bill lands the EV settles a made-up session priced at its whole
    // balance with a station it controls, which takes the money at once.
    const balance = (await fx.operator.client.depositOf(ev.address)).balance;
    const madeUp = await newTerms(fx, ev, accomplice, { priceWeiPerKWh: balance, maxEnergyWh: 1000n });
    const r = sessionReports(fx, madeUp, 1000n, 1000n);
    await attempt(honestOrNot(madeUp, accomplice, ev));
    await attempt(accomplice.client.settle(madeUp, r.evReport, r.hcsReport));
    await attempt(accomplice.client.withdrawEarnings());
    const before = await earnings(station);
    await honest.settle(terms, [30_000n], 30_000n);
    expect((await earnings(station)) - before).toBe(bill(30_000n, terms));
  });

  it('B. one deposit behind two agreements', async () => {
    const ev = fx.evs[1]!;
    const [s1, s2] = fx.hcss as [Member, Member];
    const deposit = (await fx.operator.client.depositOf(ev.address)).balance;
    // Each station sees the whole balance and asks a cap worth 60 % of it.
    const price = (deposit * 600n) / 40_000n;
    // Both stations look at the deposit before either has delivered.
    const sessions: { t: SettlementTerms; station: Member }[] = [];
    for (const station of [s1, s2]) {
      const t = await newTerms(fx, ev, station, { priceWeiPerKWh: price, maxEnergyWh: 40_000n });
      expect(await fx.operator.client.availableDeposit(ev.address)).toBeGreaterThanOrEqual(
        bill(t.maxEnergyWh, t),
      );
      sessions.push({ t, station });
    }
    const agreed: typeof sessions = [];
    for (const s of sessions) if (await honest.agree(s.t)) agreed.push(s); // refused: never switches on
    const paid: bigint[] = [];
    for (const { t, station } of agreed) {
      const before = await earnings(station);
      await honest.settle(t, [40_000n], 40_000n);
      paid.push((await earnings(station)) - before);
      expect(paid.at(-1)).toBe(bill(40_000n, t));
    }
    expect(paid.length).toBeGreaterThanOrEqual(1);
  });

  it('C. the EV sets the bill', async () => {
    const ev = fx.evs[2]!;
    const station = fx.hcss[2]!;
    // 1: a report 2 % under the station's, inside the tolerance: the station's meter is billed.
    const t1 = await newTerms(fx, ev, station);
    expect(await honest.agree(t1)).toBe(true);
    let before = await earnings(station);
    await honest.settle(t1, [19_600n], 20_000n);
    expect((await earnings(station)) - before).toBe(bill(20_000n, t1));

    // 2: the EV acknowledged 15 kWh while charging, then reports 0 Wh and hurries to settle
    // first with it; the station is still paid at least what the EV acknowledged.
    const t2 = await newTerms(fx, ev, station);
    expect(await honest.agree(t2)).toBe(true);
    const zero = sessionReports(fx, t2, 0n, 20_000n);
    await attempt(ev.client.settle(t2, zero.evReport, zero.hcsReport));
    before = await earnings(station);
    await honest.settle(t2, [5_000n, 10_000n, 15_000n, 0n], 20_000n);
    expect((await earnings(station)) - before).toBeGreaterThanOrEqual(bill(15_000n, t2));
  });

  it('D. suspension voids open bills', async () => {
    const ev = fx.evs[3]!;
    const station = fx.hcss[3]!;
    const t = await newTerms(fx, ev, station);
    expect(await honest.agree(t)).toBe(true);
    // Mid-session the operator suspends the EV; the EV asks for its deposit back.
    await fx.operator.client.suspend(ev.address);
    const { balance } = await fx.operator.client.depositOf(ev.address);
    await attempt(ev.client.requestWithdrawal(balance));
    let before = await earnings(station);
    await honest.settle(t, [10_000n], 10_000n);
    expect((await earnings(station)) - before).toBe(bill(10_000n, t));
    await fx.operator.client.verify(ev.address);
    await attempt(ev.client.cancelWithdrawal());

    // The same for a suspended station's delivered session.
    const t2 = await newTerms(fx, ev, station);
    expect(await honest.agree(t2)).toBe(true);
    await fx.operator.client.suspend(station.address);
    before = await earnings(station);
    await honest.settle(t2, [5_000n], 5_000n);
    expect((await earnings(station)) - before).toBe(bill(5_000n, t2));
    await fx.operator.client.verify(station.address);
  });

  it('E. the window is shorter than the charge', async () => {
    const ev = fx.evs[4]!;
    const station = fx.hcss[0]!;
    // Today's station terms: settleBy = offer + 3,600 s, a 22 kWh cap at 11 kW (2 h of charging).
    const now = await latestTimestamp(fx.provider);
    const t = await newTerms(fx, ev, station, { maxEnergyWh: 22_000n, settleBy: now + 3600n });
    const refusal = await reserve(fx, t).then(
      () => '',
      (e) => revertName(e),
    );
    // Refused up front (the station never switches on) ...
    expect(refusal).toBe('WindowShorterThanCharge');
    // ... and a window from the terms (start + maxWh ÷ power + a margin) holds the whole charge.
    const fromTerms = await newTerms(fx, ev, station, {
      maxEnergyWh: 22_000n,
      settleBy: (await latestTimestamp(fx.provider)) + (22_000n * 3600n) / 11_000n + 600n,
    });
    expect(await honest.agree(fromTerms)).toBe(true);
    await increaseTime(fx.provider, 7200n);
    const before = await earnings(station);
    await honest.settle(fromTerms, [22_000n], 22_000n);
    expect((await earnings(station)) - before).toBe(bill(22_000n, fromTerms));
  });

  it('F. ratings for free', async () => {
    const ev = fx.evs[5]!;
    const station = fx.hcss[1]!;
    const countBefore = await fx.operator.client.ratingCount(station.address);
    for (let i = 0; i < 3; i++) {
      const t = await newTerms(fx, ev, station, { priceWeiPerKWh: 0n, maxEnergyWh: 0n });
      await attempt(honestOrNot(t, station, ev));
      const r = sessionReports(fx, t, 0n, 0n);
      await attempt(station.client.settle(t, r.evReport, r.hcsReport));
      await attempt(ev.client.rate(t, 5, 'great'));
    }
    expect(await fx.operator.client.ratingCount(station.address)).toBe(countBefore);
  });

  it('G. withdraw and settle in the same second', async () => {
    const ev = fx.evs[0]!;
    const station = fx.hcss[2]!;
    const window = await fx.operator.client.settlementWindow();
    const now = await latestTimestamp(fx.provider);
    // The EV announces its withdrawal in the second of the offer: both end at the same second.
    const t = await newTerms(fx, ev, station, { maxEnergyWh: 10_000n, settleBy: now + 1n + window });
    await fx.provider.send('evm_setNextBlockTimestamp', [Number(now + 1n)]);
    const agreed = await honest.agree(t);
    expect(agreed).toBe(true);
    const { balance } = await fx.operator.client.depositOf(ev.address);
    await attempt(ev.client.requestWithdrawal(balance));
    const { withdrawableAt } = await fx.operator.client.depositOf(ev.address);
    // One block at exactly settleBy: the EV's withdrawal goes first.
    const r = sessionReports(fx, t, 10_000n, 10_000n);
    await fx.provider.send('evm_setAutomine', [false]);
    const before = await earnings(station);
    try {
      const w = await ev.client.contract
        .getFunction('withdraw')
        .send({ gasLimit: 200_000n, maxPriorityFeePerGas: 5_000_000_000n, maxFeePerGas: 50_000_000_000n })
        .catch(() => undefined);
      const s = await settleTx(t, r, station);
      await fx.provider.send('evm_setNextBlockTimestamp', [
        Number(withdrawableAt > 0n ? withdrawableAt : t.settleBy),
      ]);
      await fx.provider.send('evm_mine', []);
      await w?.wait().catch(() => undefined);
      await s?.wait().catch(() => undefined);
    } finally {
      await fx.provider.send('evm_setAutomine', [true]);
    }
    expect((await earnings(station)) - before).toBe(bill(10_000n, t));
  });

  it('H. the session counter lives only in the journal', async () => {
    const ev = fx.evs[1]!;
    const station = fx.hcss[3]!;
    // A settled session with seq 1 ...
    const first = await newTerms(fx, ev, station, { seq: 1n });
    if (await honest.agree(first)) await honest.settle(first, [1000n], 1000n);
    // ... then the journal is lost: the station numbers its next session from what it knows.
    const seq = await honest.seqAfterJournalLoss(station);
    // A reused seq is refused before any energy flows.
    const reused = await newTerms(fx, ev, station, { seq: 1n, maxEnergyWh: 8000n });
    expect(await reserve(fx, reused).then(() => '', revertName)).toBe('SeqUsed');
    const t = await newTerms(fx, ev, station, { seq, maxEnergyWh: 8000n });
    if (!(await honest.agree(t))) throw new Error('the station could not agree after losing its journal');
    const before = await earnings(station);
    await honest.settle(t, [8000n], 8000n);
    expect((await earnings(station)) - before).toBe(bill(8000n, t));
  });
});

/** The attacker's own agreement for made-up terms (an accomplice station agrees to anything). */
function honestOrNot(t: SettlementTerms, _hcs: Member, _ev: Member): Promise<boolean> {
  return honest.agree(t);
}

/** The station's settlement as a transaction sent without waiting (for a block mined by hand). */
async function settleTx(
  t: SettlementTerms,
  r: { evReport: Uint8Array; hcsReport: Uint8Array },
  station: Member,
) {
  return station.client.contract
    .getFunction('settle')
    .send(packSettlements([{ terms: t, ...r }]), {
      gasLimit: 500_000n,
      maxPriorityFeePerGas: 1_000_000_000n,
      maxFeePerGas: 50_000_000_000n,
    })
    .catch(() => undefined);
}
