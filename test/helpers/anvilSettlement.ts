/**
 * Test fixture for the settlement contract: a real anvil node, a fresh deployment, verified and
 * funded members, and signed charge reports made with the protocol package (the same bytes and
 * signatures the agents send). Free of vitest, so the gas benchmark builds on it too.
 */
import { getBytes, JsonRpcProvider, keccak256, Network, parseEther, Wallet } from 'ethers';
import {
  type SettlementClient as Client,
  type SettlementTerms,
  SettlementClient,
} from '../../contracts/client.js';
import { type Deployment, deploySettlement, type SettlementParams } from '../../contracts/deploy.js';
import { encode } from '../../protocol/codec.js';
import { encodeOptional } from '../../protocol/optional.js';
import { type Domain, signEnvelope } from '../../protocol/envelope.js';
import { computeTxId } from '../../protocol/terms.js';
import { type Anvil, type AnvilOptions, startAnvil } from '../../sim/chain.js';

export interface Member {
  address: string;
  privateKey: string;
  wallet: Wallet;
  /** The contract as this member. */
  client: Client;
}

export interface SettlementFixture {
  anvil: Anvil;
  provider: JsonRpcProvider;
  deployment: Deployment;
  domain: Domain;
  /** Deployer, admin and operator. */
  operator: Member;
  evs: Member[];
  hcss: Member[];
  /** Funded, never registered. */
  strangers: Member[];
  /** Next unused seq per HCS address. */
  nextSeq: Map<string, bigint>;
  stop(): Promise<void>;
}

export interface FixtureOptions {
  evs?: number;
  hcss?: number;
  strangers?: number;
  depositWei?: bigint;
  params?: Partial<SettlementParams>;
  anvil?: AnvilOptions;
}

export const PRICE = 300_000_000_000_000n; // 0.0003 ether per kWh
export const DAY = 86_400n;

/** anvil, deploy from its first account (so the first deployment has the vectors' address). */
export async function setupSettlement(options: FixtureOptions = {}): Promise<SettlementFixture> {
  const nEv = options.evs ?? 3;
  const nHcs = options.hcss ?? 2;
  const nStrangers = options.strangers ?? 2;
  const anvil = await startAnvil({ ...options.anvil, accounts: 1 + nEv + nHcs + nStrangers });
  const provider = new JsonRpcProvider(anvil.rpcUrl, Network.from(anvil.chainId), {
    staticNetwork: true,
    cacheTimeout: -1,
  });
  provider.pollingInterval = 50;
  const wallets = anvil.accounts.map((a) => new Wallet(a.privateKey, provider));
  const deployment = await deploySettlement({ signer: wallets[0]!, params: options.params });
  const member = (w: Wallet): Member => ({
    address: w.address,
    privateKey: w.privateKey,
    wallet: w,
    client: SettlementClient.fromDeployment(deployment, w),
  });
  const [operatorWallet, ...rest] = wallets;
  const operator = member(operatorWallet!);
  const evs = rest.slice(0, nEv).map(member);
  const hcss = rest.slice(nEv, nEv + nHcs).map(member);
  const strangers = rest.slice(nEv + nHcs).map(member);
  const depositWei = options.depositWei ?? parseEther('1');
  for (const [i, ev] of evs.entries()) {
    await ev.client.registerEv(commitment(`ev${i}`));
    await operator.client.verify(ev.address);
    if (depositWei > 0n) await ev.client.deposit(depositWei);
  }
  for (const [i, hcs] of hcss.entries()) {
    await registerHcs(hcs, i);
    await operator.client.verify(hcs.address);
  }
  return {
    anvil,
    provider,
    deployment,
    domain: { chainId: anvil.chainId, verifyingContract: deployment.address },
    operator,
    evs,
    hcss,
    strangers,
    nextSeq: new Map(),
    stop: async () => {
      provider.destroy();
      await anvil.stop();
    },
  };
}

export function commitment(label: string): string {
  const hex = Buffer.from(label.padEnd(32, '.')).toString('hex');
  return `0x${hex.slice(0, 64)}`;
}

export function registerHcs(hcs: Member, i = 0) {
  return hcs.client.registerHcs({
    identityCommitment: commitment(`hcs${i}`),
    latMicroDeg: 52_520_008 + i,
    lonMicroDeg: 13_404_954,
    priceWeiPerKWh: PRICE,
    powerW: 11_000,
    profileHash: commitment(`profile${i}`),
  });
}

export async function latestTimestamp(provider: JsonRpcProvider): Promise<bigint> {
  const block = await provider.getBlock('latest');
  return BigInt(block!.timestamp);
}

/** Moves anvil's clock forward and mines a block. */
export async function increaseTime(provider: JsonRpcProvider, seconds: bigint): Promise<void> {
  await provider.send('evm_increaseTime', [Number(seconds)]);
  await provider.send('evm_mine', []);
}

/** Terms of a new session between `ev` and `hcs`, with the HCS's next seq. */
export async function newTerms(
  fx: SettlementFixture,
  ev: Member,
  hcs: Member,
  overrides: Partial<SettlementTerms> = {},
): Promise<SettlementTerms> {
  const seq = fx.nextSeq.get(hcs.address) ?? 1n;
  fx.nextSeq.set(hcs.address, seq + 1n);
  return {
    ev: ev.address,
    hcs: hcs.address,
    seq,
    priceWeiPerKWh: PRICE,
    maxEnergyWh: 40_000n,
    settleBy: (await latestTimestamp(fx.provider)) + DAY,
    ...overrides,
  };
}

/**
 * The packed chargeReceived (EV) or chargeProvided (HCS) payload. A final report carries the
 * audit data of docs/DESIGN.md (meter serial, profile, start/end register, times, status) as its
 * 32-byte hash `a` (docs/PROTOCOL.md): it is part of the signed bytes and of the calldata, so it
 * counts in the gas figures. An interim receipt (`interim` = its index, 0 for the consent) carries
 * `{ i }` only.
 */
export function reportPayload(
  kind: 'ev' | 'hcs',
  terms: SettlementTerms,
  txid: string,
  energyWh: bigint,
  interim?: number,
): Uint8Array {
  const start = kind === 'ev' ? 1_000_000 : 5_000_000;
  const audit = {
    m: kind === 'ev' ? 'SDM630-EV-0001' : 'B23-1234567',
    p: kind === 'ev' ? 'sdm630' : 'abb-b23',
    s: start,
    e: start + Number(energyWh),
    t0: 1_800_000_000,
    t1: 1_800_007_200,
    st: 1,
  };
  return encode({
    type: kind === 'ev' ? 'chargeReceived' : 'chargeProvided',
    ev: terms.ev,
    hcs: terms.hcs,
    txid,
    energyWh,
    optional: interim === undefined ? { a: getBytes(keccak256(encodeOptional(audit))) } : { i: interim },
  });
}

/** The EV's signed interim receipt `index` for `energyWh` (index 0 at 0 Wh: its consent). */
export function evReceipt(fx: SettlementFixture, terms: SettlementTerms, energyWh: bigint, index: number) {
  const txid = computeTxId(terms, fx.domain);
  return signEnvelope(reportPayload('ev', terms, txid, energyWh, index), keyOf(fx, terms.ev), fx.domain);
}

/** Reserves the session on chain with the EV's consent, as the HCS (or the edge) does. */
export async function reserve(fx: SettlementFixture, terms: SettlementTerms, by?: Member) {
  const sender = by ?? [...fx.hcss, ...fx.evs].find((m) => m.address === terms.hcs) ?? fx.operator;
  return sender.client.reserve(terms, evReceipt(fx, terms, 0n, 0));
}

/** Both signed reports of a session, made by the members' own keys in the deployment's domain. */
export function sessionReports(
  fx: SettlementFixture,
  terms: SettlementTerms,
  evWh: bigint,
  hcsWh: bigint,
  keys: { ev?: string; hcs?: string } = {},
): { evReport: Uint8Array; hcsReport: Uint8Array; txid: string } {
  const txid = computeTxId(terms, fx.domain);
  const evKey = keys.ev ?? keyOf(fx, terms.ev);
  const hcsKey = keys.hcs ?? keyOf(fx, terms.hcs);
  return {
    evReport: signEnvelope(reportPayload('ev', terms, txid, evWh), evKey, fx.domain),
    hcsReport: signEnvelope(reportPayload('hcs', terms, txid, hcsWh), hcsKey, fx.domain),
    txid,
  };
}

function keyOf(fx: SettlementFixture, address: string): string {
  const all = [fx.operator, ...fx.evs, ...fx.hcss, ...fx.strangers];
  const found = all.find((m) => m.address.toLowerCase() === address.toLowerCase());
  if (!found) throw new Error(`no key for ${address}`);
  return found.privateKey;
}

/** Open reservations a station may hold at once (the contract's ring of session slots). */
export const RING = 16;

/** One batch entry as an edge sends it: the terms, the EV's consent and both signed reports. */
export async function batchEntry(fx: SettlementFixture, ev: Member, hcs: Member) {
  const terms = await newTerms(fx, ev, hcs);
  return { terms, evConsent: evReceipt(fx, terms, 0n, 0), ...sessionReports(fx, terms, 20_950n, 21_000n) };
}

/**
 * Reserves and settles one session per station RING times, so that every ring slot has been
 * written once, as in steady operation (a first write of a slot costs a zero → non-zero store).
 */
export async function warmRings(fx: SettlementFixture, relayer: Member): Promise<void> {
  for (let round = 0; round < RING; round++) {
    const entries = await Promise.all(fx.hcss.map((h, i) => batchEntry(fx, fx.evs[i]!, h)));
    await relayer.client.reserveBatch(entries);
    await relayer.client.settleBatch(entries);
  }
}

/**
 * Settles `count` sessions, many per transaction as an edge does (a reserveBatch, then a
 * settleBatch of up to RING sessions per station), spread over every EV and station of the
 * fixture: a network's worth of history, fast. Returns the txids in settling order.
 */
export async function settleMany(
  fx: SettlementFixture,
  count: number,
  opts: { relayer?: Member; evs?: Member[]; hcss?: Member[] } = {},
): Promise<string[]> {
  const relayer = opts.relayer ?? fx.operator;
  const evs = opts.evs ?? fx.evs;
  const hcss = opts.hcss ?? fx.hcss;
  const txids: string[] = [];
  let n = 0;
  while (n < count) {
    const entries: Awaited<ReturnType<typeof batchEntry>>[] = [];
    for (let slot = 0; slot < RING && n < count; slot++)
      for (const hcs of hcss) {
        if (n >= count) break;
        entries.push(await batchEntry(fx, evs[n % evs.length]!, hcs));
        n++;
      }
    await relayer.client.reserveBatch(entries);
    const settled = await relayer.client.settleBatch(entries);
    if (settled.skipped.length)
      throw new Error(`settleMany: ${settled.skipped.length} refused (${settled.skipped[0]!.reason})`);
    txids.push(...entries.map((e) => e.txid.toLowerCase()));
  }
  return txids;
}
