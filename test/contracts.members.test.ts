/**
 * Registry, verification, deposits and withdrawals, earnings and ratings on a real anvil node.
 */
import { ContractFactory, parseEther } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commentBytes10, MemberStatus, MemberRole, ChainSessionState } from '../contracts/client.js';
import { loadArtifact } from '../contracts/build.js';
import { expectRevert } from './helpers/anvilExpect.js';
import {
  commitment,
  DAY,
  increaseTime,
  type Member,
  newTerms,
  PRICE,
  registerHcs,
  type SettlementFixture,
  sessionReports,
  setupSettlement,
} from './helpers/anvilSettlement.js';

let fx: SettlementFixture;

beforeAll(async () => {
  fx = await setupSettlement({ evs: 3, hcss: 2, strangers: 4 });
});
afterAll(async () => {
  await fx?.stop();
});

async function settledSession(ev: Member, hcs: Member, wh = 10_000n) {
  const terms = await newTerms(fx, ev, hcs);
  const reports = sessionReports(fx, terms, wh, wh);
  await fx.operator.client.settle(terms, reports.evReport, reports.hcsReport);
  return { terms, ...reports };
}

describe('registry and verification', () => {
  it('registers members as Pending, and the operator verifies, suspends and revokes them', async () => {
    const [a, b] = fx.strangers as [Member, Member];
    await a.client.registerEv(commitment('a'));
    expect(await fx.operator.client.authInfo(a.address)).toEqual({
      role: MemberRole.EV,
      status: MemberStatus.Pending,
      identityCommitment: commitment('a'),
    });
    expect(await fx.operator.client.isVerified(a.address, MemberRole.EV)).toBe(false);
    await fx.operator.client.verify(a.address);
    expect(await fx.operator.client.isVerified(a.address, MemberRole.EV)).toBe(true);
    expect(await fx.operator.client.isVerified(a.address, MemberRole.HCS)).toBe(false);
    await fx.operator.client.suspend(a.address);
    expect((await fx.operator.client.authInfo(a.address)).status).toBe(MemberStatus.Suspended);
    await fx.operator.client.revoke(a.address);
    await expectRevert(fx.operator.client.verify(a.address), 'InvalidStatusTransition');
    await expectRevert(a.client.registerEv(commitment('a again')), 'AlreadyRegistered');
    await expectRevert(
      a.client.registerHcs({ ...hcsRegistration(), identityCommitment: commitment('x') }),
      'AlreadyRegistered',
    );
    await registerHcs(b, 7);
    const profile = await fx.operator.client.hcsProfile(b.address);
    expect(profile).toMatchObject({
      latMicroDeg: 52_520_015,
      lonMicroDeg: 13_404_954,
      powerW: 11_000,
      priceWeiPerKWh: PRICE,
    });
    const counts = await fx.operator.client.memberCounts();
    expect(counts).toEqual({ evs: 4, hcss: 3 });
  });

  it('lets only operators verify, suspend or revoke', async () => {
    const outsider = fx.evs[0]!;
    await expectRevert(outsider.client.verify(fx.evs[1]!.address), 'AccessControlUnauthorizedAccount');
    await expectRevert(outsider.client.suspend(fx.evs[1]!.address), 'AccessControlUnauthorizedAccount');
    await expectRevert(outsider.client.revoke(fx.evs[1]!.address), 'AccessControlUnauthorizedAccount');
    await expectRevert(fx.operator.client.verify(fx.strangers[3]!.address), 'NotRegistered');
  });

  it('refuses a zero identity commitment and an impossible location', async () => {
    const c = fx.strangers[2]!;
    await expectRevert(c.client.registerEv(`0x${'00'.repeat(32)}`), 'ZeroIdentityCommitment');
    await expectRevert(
      c.client.registerHcs({ ...hcsRegistration(), latMicroDeg: 90_000_001 }),
      'InvalidLocation',
    );
  });

  it('lets an HCS, and only an HCS, set its price', async () => {
    const hcs = fx.hcss[1]!;
    await hcs.client.setPrice(PRICE + 1n);
    expect((await fx.operator.client.hcsProfile(hcs.address)).priceWeiPerKWh).toBe(PRICE + 1n);
    await expectRevert(fx.evs[0]!.client.setPrice(1n), 'NotAnHcs');
  });
});

describe('deposits and withdrawals', () => {
  it('refuses a withdrawal inside the settlement window, while settlements still debit the deposit', async () => {
    const ev = fx.evs[1]!;
    const hcs = fx.hcss[0]!;
    const { balance } = await fx.operator.client.depositOf(ev.address);
    // An agreement made before the withdrawal request: the HCS counted on the full deposit.
    const terms = await newTerms(fx, ev, hcs);
    const { evReport, hcsReport } = sessionReports(fx, terms, 10_000n, 10_000n);
    await ev.client.requestWithdrawal(balance);
    expect(await fx.operator.client.availableDeposit(ev.address)).toBe(0n);
    await expectRevert(ev.client.withdraw(), 'WithdrawalNotReady');
    await increaseTime(fx.provider, DAY - 60n);
    await expectRevert(ev.client.withdraw(), 'WithdrawalNotReady');
    // The session settles inside the window and is paid from the deposit under notice.
    await fx.operator.client.settle(terms, evReport, hcsReport);
    const bill = (10_000n * PRICE) / 1000n;
    await increaseTime(fx.provider, 120n);
    const before = await fx.provider.getBalance(ev.address);
    const receipt = await ev.client.withdraw();
    const paid = (await fx.provider.getBalance(ev.address)) - before + receipt.gasUsed * receipt.gasPrice;
    expect(paid).toBe(balance - bill); // what the settlement left, not the announced amount
    expect(await fx.operator.client.depositOf(ev.address)).toEqual({
      balance: 0n,
      pendingWithdrawal: 0n,
      withdrawableAt: 0n,
    });
    await expectRevert(ev.client.withdraw(), 'NothingToWithdraw');
  });

  it('refuses deposits from non-EVs, empty deposits and over-sized withdrawal requests', async () => {
    await expectRevert(fx.hcss[0]!.client.deposit(1n), 'NotAnEv');
    await expectRevert(fx.evs[2]!.client.deposit(0n), 'ZeroAmount');
    await expectRevert(fx.evs[2]!.client.requestWithdrawal(parseEther('100')), 'AmountExceedsDeposit');
  });

  it('lets an EV cancel its announcement, which restores the available deposit', async () => {
    const ev = fx.evs[2]!;
    const { balance } = await fx.operator.client.depositOf(ev.address);
    await ev.client.requestWithdrawal(balance / 2n);
    expect(await fx.operator.client.availableDeposit(ev.address)).toBe(balance - balance / 2n);
    await ev.client.cancelWithdrawal();
    expect(await fx.operator.client.availableDeposit(ev.address)).toBe(balance);
  });

  it('pays an HCS its earnings once (pull), and only to an HCS', async () => {
    const hcs = fx.hcss[1]!;
    await settledSession(fx.evs[0]!, hcs);
    const earnings = await fx.operator.client.earningsOf(hcs.address);
    expect(earnings).toBeGreaterThan(0n);
    const before = await fx.provider.getBalance(hcs.address);
    const receipt = await hcs.client.withdrawEarnings();
    expect((await fx.provider.getBalance(hcs.address)) - before + receipt.gasUsed * receipt.gasPrice).toBe(
      earnings,
    );
    expect(await fx.operator.client.earningsOf(hcs.address)).toBe(0n);
    await expectRevert(hcs.client.withdrawEarnings(), 'NothingToWithdraw');
    await expectRevert(fx.evs[0]!.client.withdrawEarnings(), 'NotAnHcs');
  });

  it('refuses reentrancy through the withdrawal (attacker contract)', async () => {
    const artifact = await loadArtifact('ReentrancyAttacker');
    const attackerOwner = fx.strangers[3]!.wallet;
    const factory = new ContractFactory(artifact.abi, artifact.bytecode, attackerOwner);
    const attacker = await factory.deploy(fx.deployment.address);
    await attacker.waitForDeployment();
    const attackerAddress = await attacker.getAddress();
    const call = async (method: string, ...args: unknown[]) =>
      (await attacker.getFunction(method)(...args)).wait();
    await call('join', commitment('attacker'), { value: parseEther('1') });
    // A second EV's money sits in the same contract: what a reentrancy would steal.
    const contractBefore = await fx.provider.getBalance(fx.deployment.address);
    await call('announce', parseEther('1'));
    await increaseTime(fx.provider, DAY + 1n);
    await call('attack');
    const iface = fx.operator.client.contract.interface;
    expect(await attacker.getFunction('reentryAttempts')()).toBe(1n);
    expect(iface.getError(await attacker.getFunction('reentryError')())?.name).toBe(
      'ReentrancyGuardReentrantCall',
    );
    expect(await fx.provider.getBalance(attackerAddress)).toBe(parseEther('1')); // paid once
    expect(await fx.provider.getBalance(fx.deployment.address)).toBe(contractBefore - parseEther('1'));
  });
});

describe('ratings', () => {
  // evs[1] emptied its deposit above.
  it('lets the session EV rate a settled session once, and keeps the mean per HCS', async () => {
    const [ev1, ev2] = [fx.evs[0]!, fx.evs[2]!];
    const hcs = fx.hcss[0]!;
    const s1 = await settledSession(ev1, hcs);
    const s2 = await settledSession(ev2, hcs);
    const meanBefore = await fx.operator.client.meanRating(hcs.address);
    expect(meanBefore).toBe(0);
    const receipt = await ev1.client.rate(s1.terms, 5, 'great!', s1.hcsReport);
    const event = receipt.logs
      .map((l) => ev1.client.contract.interface.parseLog(l))
      .find((e) => e?.name === 'Rated');
    expect(event?.args.comment).toBe(commentBytes10('great!'));
    await ev2.client.rate(s2.terms, 4, 'ok', s2.hcsReport);
    expect(await fx.operator.client.meanRating(hcs.address)).toBe(450);
    expect(await fx.operator.client.ratingCount(hcs.address)).toBe(2);
    expect(await fx.operator.client.sessionState(hcs.address, s1.terms.seq)).toBe(ChainSessionState.Rated);
  });

  it('refuses a rating twice, by a stranger, before settlement, or out of 1..5', async () => {
    const [ev1, ev2] = [fx.evs[0]!, fx.evs[2]!];
    const hcs = fx.hcss[1]!;
    const s = await settledSession(ev1, hcs);
    await ev1.client.rate(s.terms, 3, '', s.hcsReport);
    await expectRevert(ev1.client.rate(s.terms, 3, '', s.hcsReport), 'AlreadyRated');

    const fresh = await settledSession(ev1, hcs);
    // A stranger sending the real terms is not the session's EV.
    await expectRevert(ev2.client.rate(fresh.terms, 1, 'bad', fresh.hcsReport), 'NotSessionEv');
    // Nor can it pose as the EV with made-up terms for the same (hcs, seq): the HCS's signed
    // report names the real EV and txid.
    const forged = { ...fresh.terms, ev: ev2.address };
    await expectRevert(ev2.client.rate(forged, 1, 'bad', fresh.hcsReport), 'ReportPartiesMismatch');
    const own = sessionReports(fx, forged, 1n, 1n, { hcs: ev2.privateKey });
    await expectRevert(ev2.client.rate(forged, 1, 'bad', own.hcsReport), 'WrongSigner');

    await expectRevert(ev1.client.rate(fresh.terms, 0, '', fresh.hcsReport), 'InvalidRating');
    await expectRevert(ev1.client.rate(fresh.terms, 6, '', fresh.hcsReport), 'InvalidRating');

    const open = await newTerms(fx, ev1, hcs);
    const unsettled = sessionReports(fx, open, 10_000n, 10_000n);
    await expectRevert(ev1.client.rate(open, 5, '', unsettled.hcsReport), 'NotSettled');
  });
});

function hcsRegistration() {
  return {
    identityCommitment: commitment('h'),
    latMicroDeg: 0,
    lonMicroDeg: 0,
    priceWeiPerKWh: PRICE,
    powerW: 7_400,
    profileHash: commitment('p'),
  };
}
