/**
 * A thin typed client over ethers.Contract for the agents: one method per contract function,
 * transactions awaited to their receipt, custom errors surfaced by name.
 */
import {
  type BytesLike,
  Contract,
  type ContractRunner,
  type ContractTransactionResponse,
  encodeBytes32String,
  type InterfaceAbi,
  type TransactionReceipt,
} from 'ethers';
import type { Terms } from '../protocol/terms.js';
import type { Deployment } from './deploy.js';

/** Agreement terms, as the contract's `Terms` struct (docs/DESIGN.md); the protocol's own type. */
export type SettlementTerms = Terms;

export const Role = { None: 0, EV: 1, HCS: 2 } as const;
export const MemberStatus = { None: 0, Pending: 1, Verified: 2, Suspended: 3, Revoked: 4 } as const;
export const SessionState = { Open: 0, Settled: 1, Rated: 2, Expired: 3 } as const;
export type RoleValue = (typeof Role)[keyof typeof Role];

export interface HcsRegistration {
  identityCommitment: BytesLike;
  latMicroDeg: number;
  lonMicroDeg: number;
  priceWeiPerKWh: bigint;
  powerW: number;
  profileHash: BytesLike;
}

export interface SettlementEntry {
  terms: SettlementTerms;
  evReport: BytesLike;
  hcsReport: BytesLike;
}

export interface BatchResult {
  receipt: TransactionReceipt;
  /** Entries settled within tolerance (`Settled` events). */
  settled: number;
  /** Every entry settled by this batch, within tolerance or disputed (`Settled`, `SettledDisputed`). */
  settledTxids: string[];
  /** Entries the contract refused, with the name of the custom error it gave. */
  skipped: { txid: string; reason: string }[];
}

/** A batch sent to the chain: its hash at once, its outcome once mined. */
export interface PendingBatch {
  hash: string;
  result(): Promise<BatchResult>;
}

/** The custom error a failed call or transaction reverted with (e.g. 'WrongSigner'), if known. */
export function revertName(err: unknown): string | undefined {
  const e = err as { revert?: { name?: string }; info?: { error?: unknown }; error?: unknown };
  return e?.revert?.name ?? (e?.error ? revertName(e.error) : undefined);
}

/** A comment string as the contract's bytes10 (UTF-8, zero-padded, at most 10 bytes). */
export function commentBytes10(comment: string): string {
  const bytes = new TextEncoder().encode(comment);
  if (bytes.length > 10) throw new Error(`comment is ${bytes.length} bytes of UTF-8; at most 10 fit`);
  return encodeBytes32String(comment).slice(0, 22);
}

export class SettlementClient {
  readonly contract: Contract;

  constructor(address: string, abi: InterfaceAbi, runner: ContractRunner) {
    this.contract = new Contract(address, abi, runner);
  }

  /** A client for the contract of a deployment file. */
  static fromDeployment(deployment: Deployment, runner: ContractRunner): SettlementClient {
    return new SettlementClient(deployment.address, deployment.abi, runner);
  }

  /** The same contract through another runner (another member's wallet). */
  connect(runner: ContractRunner): SettlementClient {
    return new SettlementClient(this.contract.target as string, this.contract.interface.fragments, runner);
  }

  get address(): string {
    return this.contract.target as string;
  }

  private async send(method: string, args: unknown[], value?: bigint): Promise<TransactionReceipt> {
    return this.receiptOf(method, await this.sendOnly(method, args, value));
  }

  /** Sends a transaction without waiting for it to be mined. */
  private async sendOnly(
    method: string,
    args: unknown[],
    value?: bigint,
  ): Promise<ContractTransactionResponse> {
    const fn = this.contract.getFunction(method);
    try {
      return await (value === undefined ? fn(...args) : fn(...args, { value }));
    } catch (err) {
      throw this.withRevertName(method, err);
    }
  }

  private async receiptOf(method: string, tx: ContractTransactionResponse): Promise<TransactionReceipt> {
    const receipt = await tx.wait();
    if (!receipt) throw new Error(`${method}: no receipt for ${tx.hash}`);
    return receipt;
  }

  /**
   * A transaction's gas estimate runs in the signer, which does not know our ABI, so ethers
   * leaves a custom error undecoded there; decode it here so `revertName` works for sends too.
   */
  private withRevertName(method: string, err: unknown): unknown {
    const e = err as { data?: unknown; revert?: unknown; message?: string };
    if (e && !e.revert && typeof e.data === 'string' && e.data.length >= 10) {
      const parsed = this.contract.interface.parseError(e.data);
      if (parsed) {
        e.revert = { name: parsed.name, signature: parsed.signature, args: parsed.args };
        e.message = `${method} reverted with ${parsed.signature}: ${e.message}`;
      }
    }
    return err;
  }

  // ---- registry
  registerEv(identityCommitment: BytesLike): Promise<TransactionReceipt> {
    return this.send('registerEV', [identityCommitment]);
  }
  registerHcs(r: HcsRegistration): Promise<TransactionReceipt> {
    return this.send('registerHCS', [
      r.identityCommitment,
      r.latMicroDeg,
      r.lonMicroDeg,
      r.priceWeiPerKWh,
      r.powerW,
      r.profileHash,
    ]);
  }
  /** Registers with the role's own function. */
  register(role: 'ev', identityCommitment: BytesLike): Promise<TransactionReceipt>;
  register(role: 'hcs', registration: HcsRegistration): Promise<TransactionReceipt>;
  register(role: 'ev' | 'hcs', arg: BytesLike | HcsRegistration): Promise<TransactionReceipt> {
    return role === 'ev' ? this.registerEv(arg as BytesLike) : this.registerHcs(arg as HcsRegistration);
  }
  setPrice(priceWeiPerKWh: bigint): Promise<TransactionReceipt> {
    return this.send('setPrice', [priceWeiPerKWh]);
  }
  verify(member: string): Promise<TransactionReceipt> {
    return this.send('verify', [member]);
  }
  suspend(member: string): Promise<TransactionReceipt> {
    return this.send('suspend', [member]);
  }
  revoke(member: string): Promise<TransactionReceipt> {
    return this.send('revoke', [member]);
  }

  // ---- escrow
  deposit(amountWei: bigint): Promise<TransactionReceipt> {
    return this.send('deposit', [], amountWei);
  }
  requestWithdrawal(amountWei: bigint): Promise<TransactionReceipt> {
    return this.send('requestWithdrawal', [amountWei]);
  }
  cancelWithdrawal(): Promise<TransactionReceipt> {
    return this.send('cancelWithdrawal', []);
  }
  withdraw(): Promise<TransactionReceipt> {
    return this.send('withdraw', []);
  }
  withdrawEarnings(): Promise<TransactionReceipt> {
    return this.send('withdrawEarnings', []);
  }

  // ---- settlement
  settle(terms: SettlementTerms, evReport: BytesLike, hcsReport: BytesLike): Promise<TransactionReceipt> {
    return this.send('settle', [terms, evReport, hcsReport]);
  }
  settleDisputed(
    terms: SettlementTerms,
    evReport: BytesLike,
    hcsReport: BytesLike,
  ): Promise<TransactionReceipt> {
    return this.send('settleDisputed', [terms, evReport, hcsReport]);
  }
  /** Sends a batch and waits for its receipt; what each entry came to is read from the logs. */
  async settleBatch(entries: SettlementEntry[]): Promise<BatchResult> {
    return (await this.submitSettleBatch(entries)).result();
  }
  /**
   * Sends a batch without waiting for it: the hash is known at once (to journal before waiting);
   * `result()` waits for the receipt and reads each entry's outcome from its logs (it may be
   * called again after a failed wait).
   */
  async submitSettleBatch(entries: SettlementEntry[]): Promise<PendingBatch> {
    const tx = await this.sendOnly('settleBatch', [
      entries.map((e) => e.terms),
      entries.map((e) => e.evReport),
      entries.map((e) => e.hcsReport),
    ]);
    return { hash: tx.hash, result: async () => this.batchResult(await this.receiptOf('settleBatch', tx)) };
  }
  private batchResult(receipt: TransactionReceipt): BatchResult {
    const iface = this.contract.interface;
    const skipped: BatchResult['skipped'] = [];
    const settledTxids: string[] = [];
    let settled = 0;
    for (const log of receipt.logs) {
      const parsed = iface.parseLog(log);
      if (parsed?.name === 'Settled') settled++;
      if (parsed?.name === 'Settled' || parsed?.name === 'SettledDisputed')
        settledTxids.push(String(parsed.args.txid));
      if (parsed?.name === 'SettlementSkipped') {
        const selector = parsed.args.reason as string;
        skipped.push({ txid: String(parsed.args.txid), reason: iface.getError(selector)?.name ?? selector });
      }
    }
    return { receipt, settled, settledTxids, skipped };
  }
  expire(terms: SettlementTerms): Promise<TransactionReceipt> {
    return this.send('expire', [terms]);
  }
  /** `comment` as a string (≤ 10 bytes UTF-8) or raw bytes10. */
  rate(
    terms: SettlementTerms,
    rating: number,
    comment: string,
    hcsReport: BytesLike,
  ): Promise<TransactionReceipt> {
    const raw = /^0x[0-9a-fA-F]{20}$/.test(comment) ? comment : commentBytes10(comment);
    return this.send('rate', [terms, rating, raw, hcsReport]);
  }

  // ---- views
  async authInfo(member: string): Promise<{ role: number; status: number; identityCommitment: string }> {
    const [role, status, identityCommitment] = await this.contract.getFunction('authInfo')(member);
    return { role: Number(role), status: Number(status), identityCommitment };
  }
  async isVerified(member: string, role: RoleValue): Promise<boolean> {
    return this.contract.getFunction('isVerified')(member, role);
  }
  async hcsProfile(hcs: string): Promise<Omit<HcsRegistration, 'identityCommitment'>> {
    const p = await this.contract.getFunction('hcsProfile')(hcs);
    return {
      latMicroDeg: Number(p.latMicroDeg),
      lonMicroDeg: Number(p.lonMicroDeg),
      powerW: Number(p.powerW),
      priceWeiPerKWh: p.priceWeiPerKWh,
      profileHash: p.profileHash,
    };
  }
  async availableDeposit(ev: string): Promise<bigint> {
    return this.contract.getFunction('availableDeposit')(ev);
  }
  async depositOf(
    ev: string,
  ): Promise<{ balance: bigint; pendingWithdrawal: bigint; withdrawableAt: bigint }> {
    const [balance, pendingWithdrawal, withdrawableAt] = await this.contract.getFunction('depositOf')(ev);
    return { balance, pendingWithdrawal, withdrawableAt };
  }
  async earningsOf(hcs: string): Promise<bigint> {
    return this.contract.getFunction('earningsOf')(hcs);
  }
  /** Hundredths of a star, 0..500. */
  async meanRating(hcs: string): Promise<number> {
    return Number(await this.contract.getFunction('meanRating')(hcs));
  }
  async ratingCount(hcs: string): Promise<number> {
    return Number(await this.contract.getFunction('ratingCount')(hcs));
  }
  async txIdOf(terms: SettlementTerms): Promise<string> {
    return this.contract.getFunction('txIdOf')(terms);
  }
  async sessionState(hcs: string, seq: bigint): Promise<number> {
    return Number(await this.contract.getFunction('sessionState')(hcs, seq));
  }
  async memberCounts(): Promise<{ evs: number; hcss: number }> {
    const [evs, hcss] = await this.contract.getFunction('memberCounts')();
    return { evs: Number(evs), hcss: Number(hcss) };
  }
  async settlementWindow(): Promise<bigint> {
    return this.contract.getFunction('SETTLEMENT_WINDOW')();
  }
}
