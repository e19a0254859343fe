/**
 * Settlement of one session from two signed charge reports, on a real anvil node: the happy
 * path, the reconciliation rule, and every attack of issue 3 as a failing call.
 */
import { Signature, hexlify } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SettlementTerms, ChainSessionState } from '../contracts/client.js';
import { signEnvelope } from '../protocol/envelope.js';
import { computeTxId } from '../protocol/terms.js';
import {
  increaseTime,
  type Member,
  newTerms,
  PRICE,
  reportPayload,
  type SettlementFixture,
  sessionReports,
  setupSettlement,
} from './helpers/anvilSettlement.js';
import { expectRevert } from './helpers/anvilExpect.js';

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

let fx: SettlementFixture;
let ev: Member;
let hcs: Member;
let relayer: Member;

beforeAll(async () => {
  fx = await setupSettlement({ evs: 3, hcss: 2, strangers: 2 });
  [ev] = fx.evs as [Member];
  [hcs] = fx.hcss as [Member];
  relayer = fx.strangers[1]!;
});
afterAll(async () => {
  await fx?.stop();
});

async function freshSession(evWh: bigint, hcsWh: bigint, overrides: Partial<SettlementTerms> = {}) {
  const terms = await newTerms(fx, ev, hcs, overrides);
  return { terms, ...sessionReports(fx, terms, evWh, hcsWh) };
}

describe('settle: happy path', () => {
  it('debits the EV, credits the HCS, and bills min(eEV, eHCS) inside the tolerance', async () => {
    const { terms, evReport, hcsReport, txid } = await freshSession(20_950n, 21_000n);
    const evBefore = (await fx.operator.client.depositOf(ev.address)).balance;
    const hcsBefore = await fx.operator.client.earningsOf(hcs.address);
    // Anyone (here a relayer that is not a member) may submit the two signed reports.
    const receipt = await relayer.client.settle(terms, evReport, hcsReport);
    const bill = (20_950n * PRICE) / 1000n;
    expect((await fx.operator.client.depositOf(ev.address)).balance).toBe(evBefore - bill);
    expect(await fx.operator.client.earningsOf(hcs.address)).toBe(hcsBefore + bill);
    expect(await fx.operator.client.sessionState(hcs.address, terms.seq)).toBe(ChainSessionState.Settled);
    const event = receipt.logs
      .map((l) => relayer.client.contract.interface.parseLog(l))
      .find((e) => e?.name === 'Settled');
    expect(event?.args.txid).toBe(txid);
    expect(event?.args.energyWh).toBe(20_950n);
    expect(event?.args.amountWei).toBe(bill);
    expect(await fx.operator.client.txIdOf(terms)).toBe(txid);
  });

  it('settles a session cut short with what was delivered (status only in the optional data)', async () => {
    const { terms, evReport, hcsReport } = await freshSession(3_000n, 3_010n, { maxEnergyWh: 40_000n });
    await relayer.client.settle(terms, evReport, hcsReport);
    expect(await fx.operator.client.sessionState(hcs.address, terms.seq)).toBe(ChainSessionState.Settled);
  });

  it('uses the absolute tolerance for small sessions (50 Wh)', async () => {
    const { terms, evReport, hcsReport } = await freshSession(100n, 150n);
    await relayer.client.settle(terms, evReport, hcsReport);
  });
});

describe('settle: reconciliation refusals (tolerance both ways)', () => {
  it('refuses an EV that under-reports beyond the tolerance', async () => {
    // 2% of 20,000 is 400 Wh; the EV claims 1,000 Wh less than the HCS measured.
    const { terms, evReport, hcsReport } = await freshSession(19_000n, 20_000n);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'ToleranceExceeded');
  });

  it('refuses an HCS that over-reports beyond the tolerance', async () => {
    const { terms, evReport, hcsReport } = await freshSession(20_000n, 22_000n);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'ToleranceExceeded');
  });

  it('refuses just past the edge and accepts exactly at it', async () => {
    const edge = await freshSession(20_000n, 20_408n); // 2% of 20,408 = 408.16 → 408
    await relayer.client.settle(edge.terms, edge.evReport, edge.hcsReport);
    const past = await freshSession(20_000n, 20_409n); // diff 409 > 408
    await expectRevert(relayer.client.settle(past.terms, past.evReport, past.hcsReport), 'ToleranceExceeded');
  });
});

describe('settle: attacks', () => {
  it('refuses a forged signature', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    const forged = Uint8Array.from(evReport);
    const n = forged.length;
    forged[n - 40] = forged[n - 40]! ^ 0xff; // flip bits of s
    forged[n - 60] = forged[n - 60]! ^ 0x01; // and of r
    const res = relayer.client.settle(terms, forged, hcsReport);
    await expect(res).rejects.toThrow();
    // Either the signature does not recover or it recovers someone else.
    const err = await res.catch((e) => e);
    expect(['InvalidSignature', 'WrongSigner']).toContain(err.revert?.name);
  });

  it('refuses a report signed by someone other than the session EV', async () => {
    const terms = await newTerms(fx, ev, hcs);
    const { evReport, hcsReport } = sessionReports(fx, terms, 10_000n, 10_000n, {
      ev: fx.strangers[0]!.privateKey,
    });
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'WrongSigner');
  });

  it('refuses a non-member named as the EV, even with its own valid signature', async () => {
    const stranger = fx.strangers[0]!;
    const terms = await newTerms(fx, stranger, hcs);
    const { evReport, hcsReport } = sessionReports(fx, terms, 10_000n, 10_000n);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'EvNotVerified');
  });

  it('refuses a suspended EV and a suspended HCS, and settles again once reinstated', async () => {
    const ev2 = fx.evs[1]!;
    const hcs2 = fx.hcss[1]!;
    const terms = await newTerms(fx, ev2, hcs2);
    const { evReport, hcsReport } = sessionReports(fx, terms, 10_000n, 10_000n);
    await fx.operator.client.suspend(ev2.address);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'EvNotVerified');
    await fx.operator.client.verify(ev2.address);
    await fx.operator.client.suspend(hcs2.address);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'HcsNotVerified');
    await fx.operator.client.verify(hcs2.address);
    await relayer.client.settle(terms, evReport, hcsReport);
  });

  it('refuses the EV and HCS reports swapped', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    await expectRevert(relayer.client.settle(terms, hcsReport, evReport), 'WrongReportType');
  });

  it('refuses reports from two different sessions combined', async () => {
    const a = await freshSession(10_000n, 10_000n);
    const b = await freshSession(10_000n, 10_000n);
    await expectRevert(relayer.client.settle(a.terms, a.evReport, b.hcsReport), 'TxIdMismatch');
    await expectRevert(relayer.client.settle(b.terms, a.evReport, b.hcsReport), 'TxIdMismatch');
  });

  it('refuses terms changed after the agreement (price, cap or window)', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    for (const changed of [
      { ...terms, priceWeiPerKWh: terms.priceWeiPerKWh * 2n },
      { ...terms, maxEnergyWh: terms.maxEnergyWh + 1n },
      { ...terms, settleBy: terms.settleBy + 1n },
    ]) {
      await expectRevert(relayer.client.settle(changed, evReport, hcsReport), 'TxIdMismatch');
    }
  });

  it('refuses a replayed transaction ID (a txid settles at most once)', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    await relayer.client.settle(terms, evReport, hcsReport);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'AlreadySettled');
    // Nor through the dispute path with other amounts for the same session.
    const other = sessionReports(fx, terms, 1n, 30_000n);
    await expectRevert(
      relayer.client.settleDisputed(terms, other.evReport, other.hcsReport),
      'AlreadySettled',
    );
  });

  it('refuses an energy above the agreed cap', async () => {
    const { terms, evReport, hcsReport } = await freshSession(40_100n, 40_100n, { maxEnergyWh: 40_000n });
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'EnergyAboveCap');
  });

  it('refuses a bill beyond the deposit', async () => {
    // 40 kWh at 0.03 ether/kWh = 1.2 ether > the 1 ether deposit.
    const { terms, evReport, hcsReport } = await freshSession(40_000n, 40_000n, {
      priceWeiPerKWh: PRICE * 100n,
    });
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'InsufficientDeposit');
  });

  it('refuses signatures made for another chain id or another contract address', async () => {
    const terms = await newTerms(fx, ev, hcs);
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
    await expectRevert(relayer.client.settle(terms, foreign, hcsReport), 'TxIdMismatch');
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

  it('refuses a report too short to hold the fixed head and a signature', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    await expectRevert(relayer.client.settle(terms, evReport.subarray(0, 157), hcsReport), 'MalformedReport');
  });

  it('refuses a report naming other parties than the terms', async () => {
    const terms = await newTerms(fx, ev, hcs);
    const txid = computeTxId(terms, fx.domain);
    const wrongHcs = { ...terms, hcs: fx.hcss[1]!.address };
    const evReport = signEnvelope(reportPayload('ev', wrongHcs, txid, 10_000n), ev.privateKey, fx.domain);
    const { hcsReport } = sessionReports(fx, terms, 10_000n, 10_000n);
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'ReportPartiesMismatch');
  });

  it('refuses a settlement after the window closed', async () => {
    const { terms, evReport, hcsReport } = await freshSession(10_000n, 10_000n);
    await increaseTime(
      fx.provider,
      terms.settleBy - BigInt((await fx.provider.getBlock('latest'))!.timestamp) + 1n,
    );
    await expectRevert(relayer.client.settle(terms, evReport, hcsReport), 'SettlementWindowClosed');
  });
});
