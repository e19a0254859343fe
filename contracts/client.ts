/**
 * A thin typed client over ethers.Contract for the agents: one method per contract function,
 * transactions awaited to their receipt, custom errors surfaced by name. Every call's arguments
 * and results, every event's fields and every enum are typed from the ABI and the Solidity that
 * contracts/build.ts compiled (contracts/generated/settlement.ts, through abitype): a change to the
 * contract that the agents do not follow fails `tsc`.
 */
import type {
  AbiParameter,
  AbiParameterToPrimitiveType,
  AbiParametersToPrimitiveTypes,
  ExtractAbiEvent,
  ExtractAbiEventNames,
  ExtractAbiFunction,
  ExtractAbiFunctionNames,
} from 'abitype';
import {
  type BytesLike,
  Contract,
  type ContractRunner,
  type ContractTransactionResponse,
  encodeBytes32String,
  type Interface,
  type InterfaceAbi,
  type Log,
  type TransactionReceipt,
} from 'ethers';
import type { Terms } from '../protocol/terms.js';
import type { Deployment } from './deploy.js';
import { type SETTLEMENT_ABI, SOLIDITY_ENUMS } from './generated/settlement.js';

declare module 'abitype' {
  // How ethers v6 moves ABI values: addresses and bytes as hex strings (bytes in: also Uint8Array),
  // every integer as a bigint (it accepts numbers going in, and always returns bigints).
  interface Register {
    addressType: string;
    bytesType: { inputs: BytesLike; outputs: string };
    intType: bigint;
  }
}

export type SettlementAbi = typeof SETTLEMENT_ABI;
type FunctionName = ExtractAbiFunctionNames<SettlementAbi>;
type ViewName = ExtractAbiFunctionNames<SettlementAbi, 'view' | 'pure'>;
type SendName = ExtractAbiFunctionNames<SettlementAbi, 'nonpayable' | 'payable'>;
/** A function's arguments, as ethers takes them. */
export type ArgsOf<F extends FunctionName> = AbiParametersToPrimitiveTypes<
  ExtractAbiFunction<SettlementAbi, F>['inputs'],
  'inputs'
>;
type OutputsOf<F extends FunctionName> = AbiParametersToPrimitiveTypes<
  ExtractAbiFunction<SettlementAbi, F>['outputs'],
  'outputs'
>;
/** A view's result, as ethers returns it: the value itself when there is one, else the tuple. */
export type ResultOf<F extends FunctionName> =
  OutputsOf<F> extends readonly [infer Only] ? Only : OutputsOf<F>;

type EventName = ExtractAbiEventNames<SettlementAbi>;
type EventArgs<E extends EventName> = {
  [P in ExtractAbiEvent<SettlementAbi, E>['inputs'][number] as P extends { name: infer N extends string }
    ? N
    : never]: P extends AbiParameter ? AbiParameterToPrimitiveType<P, 'outputs'> : never;
};
/** A contract event read from a log: its name and its typed fields. */
export type SettlementEvent = { [E in EventName]: { name: E; args: EventArgs<E> } }[EventName];
/** One kind of event. */
export type SettlementEventOf<E extends EventName> = Extract<SettlementEvent, { name: E }>;

/**
 * Reads a log of the Settlement contract into a typed event (undefined for another contract's log).
 * ethers's `LogDescription.args` is an untyped Result; the ABI it was parsed with is the one the
 * type comes from, so the one cast here is checked by construction.
 */
export function parseSettlementLog(iface: Interface, log: Log | { topics: readonly string[]; data: string }) {
  const parsed = iface.parseLog(log);
  return parsed ? ({ name: parsed.name, args: parsed.args } as SettlementEvent) : undefined;
}

/** Agreement terms, as the contract's `Terms` struct (docs/DESIGN.md); the protocol's own type. */
export type SettlementTerms = Terms;

/** A member's role on chain (Solidity `Role`, generated). */
export const MemberRole = SOLIDITY_ENUMS.Role;
/** A member's status on chain (Solidity `Status`, generated); the wire's MEMBER_STATUS has the same values. */
export const MemberStatus = SOLIDITY_ENUMS.Status;
/** A session's state on chain (Solidity `SessionState`, generated); not the agent's local session state. */
export const ChainSessionState = SOLIDITY_ENUMS.SessionState;
export type MemberRoleValue = (typeof MemberRole)[keyof typeof MemberRole];

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

  /** A view, its arguments and result typed from the ABI. */
  private async view<F extends ViewName>(method: F, ...args: ArgsOf<F>): Promise<ResultOf<F>> {
    return this.contract.getFunction(method)(...args);
  }

  private async send<F extends SendName>(
    method: F,
    args: ArgsOf<F>,
    value?: bigint,
  ): Promise<TransactionReceipt> {
    return this.receiptOf(method, await this.sendOnly(method, args, value));
  }

  /** Sends a transaction without waiting for it to be mined. */
  private async sendOnly<F extends SendName>(
    method: F,
    args: ArgsOf<F>,
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
      BigInt(r.latMicroDeg),
      BigInt(r.lonMicroDeg),
      r.priceWeiPerKWh,
      BigInt(r.powerW),
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
      const e = parseSettlementLog(iface, log);
      if (e?.name === 'Settled') settled++;
      if (e?.name === 'Settled' || e?.name === 'SettledDisputed') settledTxids.push(e.args.txid);
      if (e?.name === 'SettlementSkipped')
        skipped.push({ txid: e.args.txid, reason: iface.getError(e.args.reason)?.name ?? e.args.reason });
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
    return this.send('rate', [terms, BigInt(rating), raw, hcsReport]);
  }

  // ---- views
  async authInfo(member: string): Promise<{ role: number; status: number; identityCommitment: string }> {
    const [role, status, identityCommitment] = await this.view('authInfo', member);
    return { role: Number(role), status: Number(status), identityCommitment };
  }
  async isVerified(member: string, role: MemberRoleValue): Promise<boolean> {
    return this.view('isVerified', member, BigInt(role));
  }
  async hcsProfile(hcs: string): Promise<Omit<HcsRegistration, 'identityCommitment'>> {
    const p = await this.view('hcsProfile', hcs);
    return {
      latMicroDeg: Number(p.latMicroDeg),
      lonMicroDeg: Number(p.lonMicroDeg),
      powerW: Number(p.powerW),
      priceWeiPerKWh: p.priceWeiPerKWh,
      profileHash: p.profileHash,
    };
  }
  async availableDeposit(ev: string): Promise<bigint> {
    return this.view('availableDeposit', ev);
  }
  async depositOf(
    ev: string,
  ): Promise<{ balance: bigint; pendingWithdrawal: bigint; withdrawableAt: bigint }> {
    const [balance, pendingWithdrawal, withdrawableAt] = await this.view('depositOf', ev);
    return { balance, pendingWithdrawal, withdrawableAt };
  }
  async earningsOf(hcs: string): Promise<bigint> {
    return this.view('earningsOf', hcs);
  }
  /** Hundredths of a star, 0..500. */
  async meanRating(hcs: string): Promise<number> {
    return Number(await this.view('meanRating', hcs));
  }
  async ratingCount(hcs: string): Promise<number> {
    return Number(await this.view('ratingCount', hcs));
  }
  async txIdOf(terms: SettlementTerms): Promise<string> {
    return this.view('txIdOf', terms);
  }
  async sessionState(hcs: string, seq: bigint): Promise<number> {
    return Number(await this.view('sessionState', hcs, seq));
  }
  async memberCounts(): Promise<{ evs: number; hcss: number }> {
    const [evs, hcss] = await this.view('memberCounts');
    return { evs: Number(evs), hcss: Number(hcss) };
  }
  /** The contract's `name` events from `fromBlock` on, typed, each with the log it came from. */
  async events<E extends EventName>(
    name: E,
    fromBlock: number,
  ): Promise<(SettlementEventOf<E> & { log: Log })[]> {
    const logs = await this.contract.queryFilter(name, fromBlock);
    return logs.flatMap((log) => {
      const e = parseSettlementLog(this.contract.interface, log);
      return e?.name === name ? [{ ...(e as SettlementEventOf<E>), log }] : [];
    });
  }
  async settlementWindow(): Promise<bigint> {
    return this.view('SETTLEMENT_WINDOW');
  }
}
