/**
 * Registry, verification, deposits and withdrawals, earnings and ratings on a real anvil node.
 */
import { ContractFactory, parseEther, toBeHex, Wallet } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  callData,
  commentBytes10,
  MemberStatus,
  MemberRole,
  ChainSessionState,
  SettlementClient,
} from '../contracts/client.js';
import { loadArtifact } from '../contracts/build.js';
import { deploySettlement } from '../contracts/deploy.js';
import { jsonRpc } from '../contracts/rpc.js';
import { expectRevert } from './helpers/anvilExpect.js';
import {
  commitment,
  DAY,
  increaseTime,
  type Member,
  newTerms,
  PRICE,
  registerHcs,
  reserve,
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
  await reserve(fx, terms);
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
  it('pays a withdrawal only out of the unreserved deposit, strictly after the notice', async () => {
    const ev = fx.evs[1]!;
    const hcs = fx.hcss[0]!;
    const { balance } = await fx.operator.client.depositOf(ev.address);
    // An agreement made before the withdrawal request: its cap is reserved.
    const terms = await newTerms(fx, ev, hcs);
    await reserve(fx, terms);
    const held = (terms.maxEnergyWh * PRICE) / 1000n;
    const { evReport, hcsReport } = sessionReports(fx, terms, 10_000n, 10_000n);
    await expectRevert(ev.client.requestWithdrawal(balance), 'AmountExceedsDeposit');
    await ev.client.requestWithdrawal(balance - held);
    expect(await fx.operator.client.availableDeposit(ev.address)).toBe(0n);
    const { withdrawableAt } = await fx.operator.client.depositOf(ev.address);
    await expectRevert(ev.client.withdraw(), 'WithdrawalNotReady');
    // The session settles inside the window, from the reservation.
    await fx.operator.client.settle(terms, evReport, hcsReport);
    const bill = (10_000n * PRICE) / 1000n;
    // In a block at withdrawableAt itself the withdrawal still fails: strictly after (a bill of
    // that second comes first).
    await fx.provider.send('evm_setNextBlockTimestamp', [Number(withdrawableAt)]);
    const early = await ev.client.contract.getFunction('withdraw').send({ gasLimit: 200_000n });
    const mined = await early.wait().then(
      (r) => r?.status,
      (e: { receipt?: { status: number } }) => e.receipt?.status,
    );
    expect(mined).toBe(0);
    await increaseTime(fx.provider, 1n);
    const before = await fx.provider.getBalance(ev.address);
    const receipt = await ev.client.withdraw();
    const paid = (await fx.provider.getBalance(ev.address)) - before + receipt.gasUsed * receipt.gasPrice;
    expect(paid).toBe(balance - held);
    expect(await fx.operator.client.depositOf(ev.address)).toEqual({
      balance: held - bill, // what the reservation held, less the bill
      reserved: 0n,
      pendingWithdrawal: 0n,
      withdrawableAt: 0n,
    });
    await expectRevert(ev.client.withdraw(), 'NothingToWithdraw');
  });

  it('refuses a deposit that would not fit the 96-bit balance (SafeCast), instead of truncating it', async () => {
    const ev = fx.evs[2]!;
    await fx.provider.send('anvil_setBalance', [ev.address, toBeHex(2n ** 100n)]);
    await expectRevert(ev.client.deposit(2n ** 96n), 'SafeCastOverflowedUintDowncast');
    await fx.provider.send('anvil_setBalance', [ev.address, toBeHex(parseEther('10000'))]);
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
    const receipt = await ev1.client.rate(s1.terms, 5, 'great!');
    const event = receipt.logs
      .map((l) => ev1.client.contract.interface.parseLog(l))
      .find((e) => e?.name === 'Rated');
    expect(event?.args.comment).toBe(commentBytes10('great!'));
    await ev2.client.rate(s2.terms, 4, 'ok');
    expect(await fx.operator.client.meanRating(hcs.address)).toBe(450);
    expect(await fx.operator.client.ratingCount(hcs.address)).toBe(2);
    expect(await fx.operator.client.sessionState(hcs.address, s1.terms.seq)).toBe(ChainSessionState.Rated);
  });

  it('refuses a rating twice, by a stranger, before settlement, or out of 1..5', async () => {
    const [ev1, ev2] = [fx.evs[0]!, fx.evs[2]!];
    const hcs = fx.hcss[1]!;
    const s = await settledSession(ev1, hcs);
    await ev1.client.rate(s.terms, 3, '');
    await expectRevert(ev1.client.rate(s.terms, 3, ''), 'AlreadyRated');

    const fresh = await settledSession(ev1, hcs);
    // A stranger sending the real terms is not the session's EV.
    await expectRevert(ev2.client.rate(fresh.terms, 1, 'bad'), 'NotSessionEv');
    // Nor can it pose as the EV with made-up terms for the same (hcs, seq): the ring slot binds
    // the txid that was reserved and settled.
    const forged = { ...fresh.terms, ev: ev2.address };
    await expectRevert(ev2.client.rate(forged, 1, 'bad'), 'NotSettled');

    await expectRevert(ev1.client.rate(fresh.terms, 0, ''), 'InvalidRating');
    await expectRevert(ev1.client.rate(fresh.terms, 6, ''), 'InvalidRating');

    const open = await newTerms(fx, ev1, hcs);
    await reserve(fx, open);
    await expectRevert(ev1.client.rate(open, 5, ''), 'NotSettled');
  });

  it('refuses a rating of a session billed 0 wei (ratings cost a paid session)', async () => {
    const ev = fx.evs[0]!;
    const hcs = fx.hcss[1]!;
    const terms = await newTerms(fx, ev, hcs, { priceWeiPerKWh: 0n });
    await reserve(fx, terms);
    const r = sessionReports(fx, terms, 5_000n, 5_000n);
    await fx.operator.client.settle(terms, r.evReport, r.hcsReport);
    expect(await fx.operator.client.sessionState(hcs.address, terms.seq)).toBe(ChainSessionState.SettledFree);
    await expectRevert(ev.client.rate(terms, 5, 'free'), 'NotSettled');
  });
});

describe('roles and construction', () => {
  it('keeps admin and operator apart, and hands the admin role over only after its delay', async () => {
    const [admin, operator, next] = fx.strangers.slice(0, 3) as [Member, Member, Member];
    const d = await deploySettlement({
      signer: fx.operator.wallet,
      params: { admin: admin.address, operator: operator.address, adminDelaySec: 3600n },
    });
    const asAdmin = admin.client.contract.attach(d.address) as typeof admin.client.contract;
    const asOperator = operator.client.contract.attach(d.address) as typeof operator.client.contract;
    const OPERATOR_ROLE = await asAdmin.getFunction('OPERATOR_ROLE')();
    expect(await asAdmin.getFunction('hasRole')(OPERATOR_ROLE, admin.address)).toBe(false);
    expect(await asAdmin.getFunction('hasRole')(OPERATOR_ROLE, operator.address)).toBe(true);
    expect(await asAdmin.getFunction('defaultAdmin')()).toBe(admin.address);
    // The operator cannot grant roles; the admin transfer waits for its delay.
    await expect(
      asOperator.getFunction('grantRole').staticCall(OPERATOR_ROLE, next.address),
    ).rejects.toThrow();
    await (await asAdmin.getFunction('beginDefaultAdminTransfer')(next.address)).wait();
    const asNext = next.client.contract.attach(d.address) as typeof next.client.contract;
    await expect(asNext.getFunction('acceptDefaultAdminTransfer').staticCall()).rejects.toThrow();
    await increaseTime(fx.provider, 3601n);
    await (await asNext.getFunction('acceptDefaultAdminTransfer')()).wait();
    expect(await asNext.getFunction('defaultAdmin')()).toBe(next.address);
  });

  it('refuses a relative tolerance above 10,000 bps and a window of 0', async () => {
    const deploy = (params: object) =>
      deploySettlement({ signer: fx.operator.wallet, params }).then(() => '');
    await expect(deploy({ relToleranceBps: 10_001n })).rejects.toThrow();
    await expect(deploy({ settlementWindowSec: 0n })).rejects.toThrow();
    await expect(deploy({ relToleranceBps: 10_000n })).resolves.toBe('');
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

describe('views as raw eth_calls (contracts/client.ts, issue 16)', () => {
  it('write the same calldata as ethers, and read what the contract call reads', async () => {
    const { terms } = await settledSession(fx.evs[0]!, fx.hcss[1]!, 2_000n);
    const ev = fx.evs[0]!.address;
    const hcs = fx.hcss[1]!.address;
    const iface = fx.operator.client.contract.interface;
    // A wallet without a provider: only the transport given can answer.
    const viaRpc = SettlementClient.fromDeployment(
      fx.deployment,
      new Wallet(fx.operator.privateKey),
    ).readsOver(jsonRpc(fx.anvil.rpcUrl));
    const cases: [string, unknown[]][] = [
      ['authInfo', [ev]],
      ['authInfo', [fx.strangers[0]!.address.toLowerCase()]],
      ['isVerified', [hcs, BigInt(MemberRole.HCS)]],
      ['sessionState', [hcs, terms.seq]],
      ['sessionState', [hcs, terms.seq + 1000n]],
      ['availableDeposit', [ev]],
      ['depositOf', [ev]],
      ['earningsOf', [hcs]],
      ['lastSeq', [hcs]],
      ['hcsProfile', [hcs]],
      ['meanRating', [hcs]],
    ];
    for (const [method, args] of cases) {
      const fragment = iface.getFunction(method)!;
      expect(callData(fragment, args), method).toBe(iface.encodeFunctionData(fragment, args));
      const raw = await (
        fx.operator.client as unknown as { view: (m: string, ...a: unknown[]) => Promise<unknown> }
      ).view(method, ...args);
      const viaContract = await fx.operator.client.contract.getFunction(method).staticCall(...args);
      expect(String(raw), method).toBe(String(viaContract));
      expect(Array.isArray(raw), method).toBe(Array.isArray(viaContract));
      // And over the raw JSON-RPC transport the agents use (contracts/rpc.ts jsonRpc).
      const overRpc = await (
        viaRpc as unknown as { view: (m: string, ...a: unknown[]) => Promise<unknown> }
      ).view(method, ...args);
      expect(String(overRpc), method).toBe(String(viaContract));
    }
    // Not fixed-size words (out of range, not an address): left to ethers, which says why.
    const f = iface.getFunction('sessionState')!;
    expect(callData(f, [hcs, -1n])).toBeUndefined();
    expect(callData(f, [hcs, 2n ** 64n])).toBeUndefined();
    expect(callData(f, ['station.eth', 1n])).toBeUndefined();
  });
});
