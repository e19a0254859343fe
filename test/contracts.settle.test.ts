/**
 * Reservation and settlement of one session on a real anvil node: the happy path, the billing
 * rule, and every attack of issues 3 and 12 as a failing call.
 */
import { getBytes, hexlify, Signature } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packSettlements, receiptResults, type SettlementTerms, SessionState } from '../contracts/client.js';
import { signEnvelope } from '../protocol/envelope.js';
import { computeTxId } from '../protocol/terms.js';
import { expectRevert } from './helpers/anvilExpect.js';
import {
  evReceipt,
  increaseTime,
  latestTimestamp,
  type Member,
  newTerms,
  PRICE,
  reportPayload,
  reserve,
  type SettlementFixture,
  sessionReports,
  setupSettlement,
} from './helpers/anvilSettlement.js';

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

let fx: SettlementFixture;
let ev: Member;
let hcs: Member;
let relayer: Member;

beforeAll(async () => {
  fx = await setupSettlement({ evs: 3, hcss: 3, strangers: 2 });
  [ev] = fx.evs as [Member];
  [hcs] = fx.hcss as [Member];
  relayer = fx.strangers[1]!;
});
afterAll(async () => {
  await fx?.stop();
});

const bill = (wh: bigint, price = PRICE) => (wh * price) / 1000n;

/** A reserved session and both its signed reports. */
async function freshSession(
  evWh: bigint,
  hcsWh: bigint,
  overrides: Partial<SettlementTerms> = {},
  parties: { ev?: Member; hcs?: Member } = {},
) {
  const terms = await newTerms(fx, parties.ev ?? ev, parties.hcs ?? hcs, overrides);
  await reserve(fx, terms);
  return { terms, ...sessionReports(fx, terms, evWh, hcsWh) };
}

describe('reserve', () => {
  it('holds cap × price of the deposit, and the withdrawal cannot take it', async () => {
    const ev2 = fx.evs[2]!;
    const before = await fx.operator.client.depositOf(ev2.address);
    const terms = await newTerms(fx, ev2, hcs, { maxEnergyWh: 20_000n });
    await reserve(fx, terms);
    const held = bill(20_000n);
    const after = await fx.operator.client.depositOf(ev2.address);
    expect(after.reserved).toBe(before.reserved + held);
    expect(await fx.operator.client.availableDeposit(ev2.address)).toBe(after.balance - after.reserved);
    expect(await fx.operator.client.sessionState(hcs.address, terms.seq)).toBe(SessionState.Reserved);
    await expectRevert(ev2.client.requestWithdrawal(after.balance), 'AmountExceedsDeposit');
    // The unreserved part can go.
    await ev2.client.requestWithdrawal(after.balance - after.reserved);
    await ev2.client.cancelWithdrawal();
    // Settled for 5 kWh: 5 kWh billed, the whole hold released.
    const r = sessionReports(fx, terms, 5_000n, 5_000n);
    await relayer.client.settle(terms, r.evReport, r.hcsReport);
    const done = await fx.operator.client.depositOf(ev2.address);
    expect(done.reserved).toBe(before.reserved);
    expect(done.balance).toBe(before.balance - bill(5_000n));
  });

  it('needs the EV’s own consent, signed for these terms', async () => {
    const terms = await newTerms(fx, ev, hcs);
    const txid = computeTxId(terms, fx.domain);
    const notTheEv = signEnvelope(
      reportPayload('ev', terms, txid, 0n, 0),
      fx.strangers[0]!.privateKey,
      fx.domain,
    );
    await expectRevert(relayer.client.reserve(terms, notTheEv), 'WrongSigner');
    const otherTerms = await newTerms(fx, ev, hcs);
    await expectRevert(relayer.client.reserve(terms, evReceipt(fx, otherTerms, 0n, 0)), 'WrongSigner');
  });

  it('refuses a window longer than the withdrawal notice or shorter than the charge', async () => {
    const now = await latestTimestamp(fx.provider);
    const window = await fx.operator.client.settlementWindow();
    const tooLate = await newTerms(fx, ev, hcs, { settleBy: now + window + 100n });
    await expectRevert(reserve(fx, tooLate), 'SettleByTooLate');
    // 40 kWh at 11 kW take 13,091 s.
    const tooShort = await newTerms(fx, ev, hcs, { maxEnergyWh: 40_000n, settleBy: now + 13_000n });
    await expectRevert(reserve(fx, tooShort), 'WindowShorterThanCharge');
  });

  it('refuses non-members, suspended members and a deposit that does not cover the cap', async () => {
    await expectRevert(reserve(fx, await newTerms(fx, fx.strangers[0]!, hcs)), 'EvNotVerified');
    const ev2 = fx.evs[1]!;
    const hcs2 = fx.hcss[1]!;
    await fx.operator.client.suspend(ev2.address);
    await expectRevert(reserve(fx, await newTerms(fx, ev2, hcs2)), 'EvNotVerified');
    await fx.operator.client.verify(ev2.address);
    await fx.operator.client.suspend(hcs2.address);
    await expectRevert(reserve(fx, await newTerms(fx, ev2, hcs2)), 'HcsNotVerified');
    await fx.operator.client.verify(hcs2.address);
    await reserve(fx, await newTerms(fx, ev2, hcs2));
    // 40 kWh at 0.03 ether/kWh = 1.2 ether > the 1 ether deposit.
    await expectRevert(
      reserve(fx, await newTerms(fx, ev2, hcs2, { priceWeiPerKWh: PRICE * 100n })),
      'InsufficientDeposit',
    );
  });

  it('reserves a seq once, ever, and at most 16 open sessions per station', async () => {
    const station = fx.hcss[2]!;
    const first = await newTerms(fx, ev, station, { maxEnergyWh: 100n });
    await reserve(fx, first);
    await expectRevert(reserve(fx, { ...first, maxEnergyWh: 99n }), 'SeqUsed');
    await expectRevert(reserve(fx, { ...first, seq: 0n }), 'SeqOutOfRange');
    for (let i = 1; i < 16; i++) await reserve(fx, await newTerms(fx, ev, station, { maxEnergyWh: 100n }));
    const seventeenth = await newTerms(fx, ev, station, { maxEnergyWh: 100n });
    await expectRevert(reserve(fx, seventeenth), 'TooManyOpenReservations');
    const r = sessionReports(fx, first, 100n, 100n);
    await station.client.settle(first, r.evReport, r.hcsReport);
    await reserve(fx, seventeenth);
    expect(await fx.operator.client.sessionState(station.address, first.seq)).toBe(SessionState.Superseded);
    expect(await fx.operator.client.lastSeq(station.address)).toBe(seventeenth.seq);
  });

  it('is released by anyone once the window closed, and then cannot settle', async () => {
    const now = await latestTimestamp(fx.provider);
    const { terms, evReport, hcsReport } = await freshSession(1000n, 1000n, {
      maxEnergyWh: 1000n,
      settleBy: now + 3600n,
    });
    await expectRevert(relayer.client.release(terms), 'SettlementWindowOpen');
    const { reserved } = await fx.operator.client.depositOf(ev.address);
    await increaseTime(fx.provider, 3601n);
    await expectRevert(relayer.client.release({ ...terms, maxEnergyWh: 999n }), 'NotReserved');
    await relayer.client.release(terms);
    expect((await fx.operator.client.depositOf(ev.address)).reserved).toBe(reserved - bill(1000n));
    expect(await fx.operator.client.sessionState(hcs.address, terms.seq)).toBe(SessionState.Released);
    await expectRevert(relayer.client.release(terms), 'AlreadyReleased');
    await expectRevert(hcs.client.settle(terms, evReport, hcsReport), 'SettlementWindowClosed');
  });
});

describe('settle: the bill', () => {
  it('bills the station’s meter inside the tolerance: debits the EV, credits the HCS', async () => {
    const { terms, evReport, hcsReport, txid } = await freshSession(20_950n, 21_000n);
    const evBefore = (await fx.operator.client.depositOf(ev.address)).balance;
    const hcsBefore = await fx.operator.client.earningsOf(hcs.address);
    // Anyone (here a relayer that is not a member) may submit the two signed reports.
    const receipt = await relayer.client.settle(terms, evReport, hcsReport);
    expect((await fx.operator.client.depositOf(ev.address)).balance).toBe(evBefore - bill(21_000n));
    expect(await fx.operator.client.earningsOf(hcs.address)).toBe(hcsBefore + bill(21_000n));
    expect(await fx.operator.client.sessionState(hcs.address, terms.seq)).toBe(SessionState.Settled);
    const [result] = receiptResults(relayer.client.contract.interface, receipt);
    expect(result).toEqual({ txid, reason: '', billedWh: 21_000n, amountWei: bill(21_000n) });
    expect(await fx.operator.client.txIdOf(terms)).toBe(txid);
  });

  it('uses the absolute tolerance for small sessions (50 Wh)', async () => {
    const { terms, evReport, hcsReport } = await freshSession(100n, 150n);
    await relayer.client.settle(terms, evReport, hcsReport);
  });

  it('caps the bill at the agreed energy', async () => {
    const { terms, evReport, hcsReport } = await freshSession(40_100n, 40_100n, { maxEnergyWh: 40_000n });
    const [r] = receiptResults(
      relayer.client.contract.interface,
      await relayer.client.settle(terms, evReport, hcsReport),
    );
    expect(r!.billedWh).toBe(40_000n);
  });

  it('outside the tolerance only the station settles, for what the EV acknowledged, and records both figures', async () => {
    // 2% of 20,000 is 400 Wh; the EV acknowledged 1,000 Wh less than the HCS measured.
    const under = await freshSession(19_000n, 20_000n);
    await expectRevert(
      relayer.client.settle(under.terms, under.evReport, under.hcsReport),
      'ToleranceExceeded',
    );
    await expectRevert(ev.client.settle(under.terms, under.evReport, under.hcsReport), 'ToleranceExceeded');
    const receipt = await hcs.client.settle(under.terms, under.evReport, under.hcsReport);
    const iface = hcs.client.contract.interface;
    const disputed = receipt.logs.map((l) => iface.parseLog(l)).find((e) => e?.name === 'Disputed');
    expect(disputed?.args.txid).toBe(under.txid);
    expect([disputed?.args.evEnergyWh, disputed?.args.hcsEnergyWh, disputed?.args.billedWh]).toEqual([
      19_000n,
      20_000n,
      19_000n,
    ]);
    // An EV that acknowledges more than the station measured never pays more than the station's meter.
    const over = await freshSession(22_000n, 20_000n);
    const [r] = receiptResults(iface, await hcs.client.settle(over.terms, over.evReport, over.hcsReport));
    expect(r!.billedWh).toBe(20_000n);
  });

  it('accepts exactly at the edge of the tolerance and refuses just past it', async () => {
    const edge = await freshSession(20_000n, 20_408n); // 2% of 20,408 = 408.16 → 408
    await relayer.client.settle(edge.terms, edge.evReport, edge.hcsReport);
    const past = await freshSession(20_000n, 20_409n); // diff 409 > 408
    await expectRevert(relayer.client.settle(past.terms, past.evReport, past.hcsReport), 'ToleranceExceeded');
  });

  it('settles a session whose members were suspended after the agreement', async () => {
    const ev2 = fx.evs[1]!;
    const hcs2 = fx.hcss[1]!;
    const s = await freshSession(5_000n, 5_000n, {}, { ev: ev2, hcs: hcs2 });
    await fx.operator.client.suspend(ev2.address);
    await fx.operator.client.suspend(hcs2.address);
    await relayer.client.settle(s.terms, s.evReport, s.hcsReport);
    await fx.operator.client.verify(ev2.address);
    await fx.operator.client.verify(hcs2.address);
  });
});

describe('settle: attacks', () => {
  it('refuses a forged signature', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    const forged = Uint8Array.from(evReport);
    const n = forged.length;
    forged[n - 40] = forged[n - 40]! ^ 0xff; // flip bits of s
    forged[n - 60] = forged[n - 60]! ^ 0x01; // and of r
    const err = await relayer.client.settle(terms, forged, hcsReport).catch((e) => e);
    // Either the signature does not recover or it recovers someone else.
    expect(['InvalidSignature', 'WrongSigner']).toContain(err.revert?.name);
  });

  it('refuses a report signed by someone other than the session EV', async () => {
    const terms = await newTerms(fx, ev, hcs);
    await reserve(fx, terms);
    const { evReport, hcsReport } = sessionReports(fx, terms, 10_000n, 10_000n, {
      ev: fx.strangers[0]!.privateKey,
    });
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'WrongSigner');
  });

  it('refuses a session that was never reserved', async () => {
    const terms = await newTerms(fx, ev, hcs);
    const { evReport, hcsReport } = sessionReports(fx, terms, 10_000n, 10_000n);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'NotReserved');
  });

  it('refuses the EV and HCS reports swapped, and reports of two sessions combined', async () => {
    const a = await freshSession(10_000n, 10_000n);
    const b = await freshSession(10_000n, 10_000n);
    // The head is rebuilt from the terms: a report of the wrong type or session recovers no one.
    await expectRevert(relayer.client.settle(a.terms, a.hcsReport, a.evReport), 'WrongSigner');
    await expectRevert(relayer.client.settle(a.terms, a.evReport, b.hcsReport), 'WrongSigner');
    await expectRevert(relayer.client.settle(b.terms, a.evReport, b.hcsReport), 'WrongSigner');
  });

  it('refuses terms changed after the agreement (price, cap or window)', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    for (const changed of [
      { ...terms, priceWeiPerKWh: terms.priceWeiPerKWh * 2n },
      { ...terms, maxEnergyWh: terms.maxEnergyWh + 1n },
      { ...terms, settleBy: terms.settleBy + 1n },
    ]) {
      await expectRevert(relayer.client.settle(changed, evReport, hcsReport), 'NotReserved');
    }
  });

  it('settles a transaction ID at most once', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    await relayer.client.settle(terms, evReport, hcsReport);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'AlreadySettled');
    // Nor by the station with other amounts for the same session.
    const other = sessionReports(fx, terms, 1n, 30_000n);
    await expectRevert(hcs.client.settle(terms, other.evReport, other.hcsReport), 'AlreadySettled');
  });

  it('refuses signatures made for another chain id or another contract address', async () => {
    const terms = await newTerms(fx, ev, hcs);
    await reserve(fx, terms);
    const txid = computeTxId(terms, fx.domain); // the right txid, only the signing domain is wrong
    const hcsReport = signEnvelope(reportPayload('hcs', terms, txid, 10_000n), hcs.privateKey, fx.domain);
    const evPayload = reportPayload('ev', terms, txid, 10_000n);
    const otherChain = signEnvelope(evPayload, ev.privateKey, { ...fx.domain, chainId: 1n });
    const otherContract = signEnvelope(evPayload, ev.privateKey, {
      ...fx.domain,
      verifyingContract: '0x000000000000000000000000000000000000dEaD',
    });
    await expectRevert(relayer.client.settle(terms, otherChain, hcsReport), 'WrongSigner');
    await expectRevert(relayer.client.settle(terms, otherContract, hcsReport), 'WrongSigner');
    // And reports whose txid was computed for another deployment name another session.
    const foreignTxid = computeTxId(terms, { ...fx.domain, chainId: 1n });
    const foreign = signEnvelope(reportPayload('ev', terms, foreignTxid, 10_000n), ev.privateKey, fx.domain);
    await expectRevert(relayer.client.settle(terms, foreign, hcsReport), 'WrongSigner');
  });

  it('refuses a high-s (malleated) signature of a valid report', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    const n = evReport.length;
    const sig = Signature.from(hexlify(evReport.subarray(n - 65)));
    const highS = SECP256K1_N - BigInt(sig.s);
    const malleated = Uint8Array.from(evReport);
    malleated.set(Buffer.from(highS.toString(16).padStart(64, '0'), 'hex'), n - 33);
    malleated[n - 1] = sig.v === 27 ? 28 : 27;
    await expectRevert(relayer.client.settle(terms, malleated, hcsReport), 'InvalidSignature');
    await relayer.client.settle(terms, evReport, hcsReport); // the low-s original still settles
  });

  it('refuses a signature from which no signer recovers (v neither 27 nor 28, r = 0)', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    const n = hcsReport.length;
    const badV = Uint8Array.from(hcsReport);
    badV[n - 1] = 29;
    await expectRevert(relayer.client.settle(terms, evReport, badV), 'InvalidSignature');
    const zeroR = Uint8Array.from(hcsReport);
    zeroR.fill(0, n - 65, n - 33);
    await expectRevert(relayer.client.settle(terms, evReport, zeroR), 'InvalidSignature');
    await relayer.client.settle(terms, evReport, hcsReport);
  });

  it('refuses packed calldata cut short or with optional data over 1 KiB', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    const blob = packSettlements([{ terms, evReport, hcsReport }]);
    const settle = relayer.client.contract.getFunction('settle');
    await expectRevert(settle.staticCall(blob.subarray(0, blob.length - 1)), 'MalformedBatch');
    const huge = Uint8Array.from(blob);
    huge.set([0xff, 0xff], 80 + 8); // the EV receipt's optional length
    await expectRevert(settle.staticCall(huge), 'MalformedBatch');
    await expectRevert(settle.staticCall(new Uint8Array()), 'MalformedBatch');
    expect(getBytes(blob).length).toBeGreaterThan(80);
  });

  it('refuses a settlement after the window closed', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    await increaseTime(fx.provider, terms.settleBy - (await latestTimestamp(fx.provider)) + 1n);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'SettlementWindowClosed');
  });
});
