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
  type FunctionFragment,
  getBytes,
  hexlify,
  type Interface,
  type InterfaceAbi,
  type Log,
  type TransactionReceipt,
} from 'ethers';
import { fromHex } from '../protocol/hex.js';
import type { Terms } from '../protocol/terms.js';
import { bytesCalldata, bytesFromEventData } from './rawtx.js';
import { JsonRpcError } from './rpc.js';
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
/** The same, under the name the contract tests use. */
export const SessionState = ChainSessionState;

/** True for the states in which a session's bill is on chain (or its ring slot moved past it). */
export function isSettledState(state: number): boolean {
  return (
    state === ChainSessionState.Settled ||
    state === ChainSessionState.Rated ||
    state === ChainSessionState.SettledFree ||
    state === ChainSessionState.Superseded
  );
}
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
  /** The EV's highest signed receipt or report (envelope). */
  evReport: BytesLike;
  /** The HCS's signed chargeProvided (envelope). */
  hcsReport: BytesLike;
}

export interface ReservationEntry {
  terms: SettlementTerms;
  /** The EV's signed consent: its first chargeReceived for the session (0 Wh, interim). */
  evConsent: BytesLike;
}

/** One entry's outcome, from the call's SessionsSettled / SessionsReserved event. */
export interface EntryResult {
  txid: string;
  /** '' when it went through, else the name of the custom error. */
  reason: string;
  billedWh: bigint;
  amountWei: bigint;
}

export interface BatchResult {
  receipt: TransactionReceipt;
  /** Entries that went through (settled, or reserved). */
  settled: number;
  /** Their txids. */
  settledTxids: string[];
  /** Entries the contract refused, with the name of the custom error it gave. */
  skipped: { txid: string; reason: string }[];
  /** Every entry's outcome, in order. */
  results: EntryResult[];
}

/** A log as eth_getTransactionReceipt returns it (hex strings). */
export interface RawLog {
  address: string;
  topics: string[];
  data: string;
}

const errorNamesByIface = new WeakMap<Interface, Map<string, string>>();
/** The contract's custom errors by selector (0x + 8 hex). */
function errorNames(iface: Interface): Map<string, string> {
  let names = errorNamesByIface.get(iface);
  if (!names) {
    names = new Map();
    iface.forEachError((e) => names?.set(e.selector, e.name));
    errorNamesByIface.set(iface, names);
  }
  return names;
}

/**
 * Every entry result in the SessionsSettled / SessionsReserved events of a raw receipt's logs
 * (the contract at `address` only), read straight from the bytes: what ethers' log parsing did
 * through hex strings and the ABI coder for every ~30 kB event.
 */
export function resultsFromLogs(iface: Interface, address: string, logs: readonly RawLog[]): EntryResult[] {
  const settledTopic = iface.getEvent('SessionsSettled')?.topicHash;
  const reservedTopic = iface.getEvent('SessionsReserved')?.topicHash;
  const names = errorNames(iface);
  const out: EntryResult[] = [];
  for (const log of logs) {
    if (log.address.toLowerCase() !== address.toLowerCase()) continue;
    const settled = log.topics[0] === settledTopic;
    if (!settled && log.topics[0] !== reservedTopic) continue;
    const b = bytesFromEventData(log.data);
    const size = settled ? 60 : 36;
    for (let p = 0; p + size <= b.length; p += size) {
      const selector = `0x${Buffer.from(b.subarray(p + 32, p + 36)).toString('hex')}`;
      const num = (from: number, to: number) =>
        BigInt(`0x${Buffer.from(b.subarray(from, to)).toString('hex')}`);
      out.push({
        txid: `0x${Buffer.from(b.subarray(p, p + 32)).toString('hex')}`,
        reason: selector === '0x00000000' ? '' : (names.get(selector) ?? selector),
        billedWh: settled ? num(p + 36, p + 44) : 0n,
        amountWei: settled ? num(p + 44, p + 60) : 0n,
      });
    }
  }
  return out;
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

/**
 * The calldata of a call whose arguments are all fixed-size words (an address, an unsigned
 * integer, bytes32, a bool), written directly; undefined for anything else (ethers encodes it).
 */
export function callData(
  fragment: FunctionFragment,
  args: readonly unknown[],
  selector = fragment.selector,
): string | undefined {
  if (args.length !== fragment.inputs.length) return undefined;
  let data = selector;
  for (let i = 0; i < args.length; i++) {
    const type = fragment.inputs[i]?.type ?? '';
    const v = args[i];
    let word: string | undefined;
    if (type === 'address' && typeof v === 'string' && /^0x[0-9a-fA-F]{40}$/.test(v))
      word = v.slice(2).toLowerCase().padStart(64, '0');
    else if (type === 'bytes32' && typeof v === 'string' && /^0x[0-9a-fA-F]{64}$/.test(v))
      word = v.slice(2).toLowerCase();
    else if (type === 'bool' && typeof v === 'boolean') word = v ? '1'.padStart(64, '0') : '0'.repeat(64);
    else if (/^uint\d*$/.test(type) && (typeof v === 'bigint' || Number.isSafeInteger(v))) {
      const n = BigInt(v as bigint | number);
      const bits = BigInt(type.slice(4) || 256);
      if (n >= 0n && n < 1n << bits) word = n.toString(16).padStart(64, '0');
    }
    if (word === undefined) return undefined;
    data += word;
  }
  return data;
}

/** A comment string as the contract's bytes10 (UTF-8, zero-padded, at most 10 bytes). */
export function commentBytes10(comment: string): string {
  const bytes = new TextEncoder().encode(comment);
  if (bytes.length > 10) throw new Error(`comment is ${bytes.length} bytes of UTF-8; at most 10 fit`);
  return encodeBytes32String(comment).slice(0, 22);
}

const HEAD_BYTES = 93;
const SIGNATURE_BYTES = 65;
const MAX_OPTIONAL_BYTES = 1024;

/** Bytes of a BytesLike: hex through Buffer (native), not through ethers' checked hex path. */
function bytesOf(b: BytesLike): Uint8Array {
  if (typeof b !== 'string') return b;
  if (!/^0x[0-9a-fA-F]*$/.test(b) || b.length % 2) return getBytes(b);
  return Buffer.from(b.slice(2), 'hex');
}

/** `n` big-endian into `out` at `at`, `size` bytes; an error if it does not fit. */
function putUint(out: Uint8Array, at: number, size: number, n: bigint, what: string): void {
  if (n < 0n || n >= 1n << BigInt(8 * size)) throw new Error(`${what} ${n} does not fit ${size} bytes`);
  let v = n;
  for (let i = at + size - 1; i >= at; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function putAddress(out: Uint8Array, at: number, address: string): void {
  // Checked and decoded in one pass (a regular expression and a Buffer per address were ~1 % of
  // an edge's CPU as it packed its batches, bench:edge).
  const bytes = typeof address === 'string' && address.startsWith('0x') ? fromHex(address, 20) : undefined;
  if (!bytes) throw new Error(`not an address: ${address}`);
  out.set(bytes, at);
}

/** The terms as the contract's packed calldata: ev 20 ‖ hcs 20 ‖ seq 8 ‖ price 16 ‖ maxWh 8 ‖ settleBy 8. */
export function packTerms(t: SettlementTerms): Uint8Array {
  const out = new Uint8Array(80);
  putAddress(out, 0, t.ev);
  putAddress(out, 20, t.hcs);
  putUint(out, 40, 8, BigInt(t.seq), 'seq');
  putUint(out, 48, 16, BigInt(t.priceWeiPerKWh), 'price');
  putUint(out, 64, 8, BigInt(t.maxEnergyWh), 'maxEnergyWh');
  putUint(out, 72, 8, BigInt(t.settleBy), 'settleBy');
  return out;
}

/**
 * A signed report envelope as the contract's packed receipt: the 73-byte head (type, EV, HCS,
 * txid) is left out (the contract rebuilds it from the terms): energy 8 ‖ n 2 ‖ optional n ‖ r ‖ s ‖ v.
 */
export function packReceipt(envelope: BytesLike): Uint8Array {
  const b = bytesOf(envelope);
  if (b.length < HEAD_BYTES + SIGNATURE_BYTES)
    throw new Error(`a signed report is at least ${HEAD_BYTES + SIGNATURE_BYTES} bytes; got ${b.length}`);
  // The energy is a uint160 in the envelope (bytes 73..93); the contract takes its low 64 bits.
  for (let i = 73; i < 85; i++)
    if (b[i] !== 0) {
      const energy = BigInt(`0x${Buffer.from(b.subarray(73, 93)).toString('hex')}`);
      throw new Error(`report energy ${energy} Wh does not fit the contract's 64 bits`);
    }
  const optional = b.subarray(HEAD_BYTES, b.length - SIGNATURE_BYTES);
  if (optional.length > MAX_OPTIONAL_BYTES)
    throw new Error(`report optional data is ${optional.length} bytes; at most ${MAX_OPTIONAL_BYTES}`);
  const out = new Uint8Array(10 + optional.length + SIGNATURE_BYTES);
  out.set(b.subarray(85, 93), 0);
  out[8] = optional.length >> 8;
  out[9] = optional.length & 0xff;
  out.set(optional, 10);
  out.set(b.subarray(b.length - SIGNATURE_BYTES), 10 + optional.length);
  return out;
}

/** The packed entries of a settlement call, back to back. */
export function packSettlements(entries: SettlementEntry[]): Uint8Array {
  return Buffer.concat(
    entries.flatMap((e) => [packTerms(e.terms), packReceipt(e.evReport), packReceipt(e.hcsReport)]),
  );
}

/**
 * The entries grouped by station, otherwise in their order (a stable sort): the contract credits a
 * station's earnings once per run of its entries, so a sorted batch writes each station's word
 * once. What each entry came to is read back by txid, so the order is free.
 */
export function byStation<T extends { terms: SettlementTerms }>(entries: readonly T[]): T[] {
  return [...entries].sort((a, b) => {
    const x = a.terms.hcs.toLowerCase();
    const y = b.terms.hcs.toLowerCase();
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

/** The packed entries of a reservation call, back to back. */
export function packReservations(entries: ReservationEntry[]): Uint8Array {
  return Buffer.concat(entries.flatMap((e) => [packTerms(e.terms), packReceipt(e.evConsent)]));
}

/** One packed receipt read back: energy, optional data, signature, and its length. */
export interface PackedReceipt {
  energyWh: bigint;
  optional: Uint8Array;
  signature: Uint8Array;
}

/** Reads packed entries (settlement: two receipts each; reservation: one) back into their parts. */
export function unpackEntries(
  blob: BytesLike,
  receiptsPerEntry: 1 | 2,
): { terms: SettlementTerms; receipts: PackedReceipt[] }[] {
  const b = getBytes(blob);
  const big = (from: number, to: number) => BigInt(hexlify(b.subarray(from, to)));
  const out: { terms: SettlementTerms; receipts: PackedReceipt[] }[] = [];
  let p = 0;
  while (p < b.length) {
    if (p + 80 > b.length) throw new Error(`packed entry at byte ${p} is cut short`);
    const terms: SettlementTerms = {
      ev: `0x${Buffer.from(b.subarray(p, p + 20)).toString('hex')}`,
      hcs: `0x${Buffer.from(b.subarray(p + 20, p + 40)).toString('hex')}`,
      seq: big(p + 40, p + 48),
      priceWeiPerKWh: big(p + 48, p + 64),
      maxEnergyWh: big(p + 64, p + 72),
      settleBy: big(p + 72, p + 80),
    };
    p += 80;
    const receipts: PackedReceipt[] = [];
    for (let i = 0; i < receiptsPerEntry; i++) {
      if (p + 75 > b.length) throw new Error(`packed receipt at byte ${p} is cut short`);
      const n = Number(big(p + 8, p + 10));
      receipts.push({
        energyWh: big(p, p + 8),
        optional: b.subarray(p + 10, p + 10 + n),
        signature: b.subarray(p + 10 + n, p + 75 + n),
      });
      p += 75 + n;
    }
    if (p > b.length) throw new Error('packed entries are cut short');
    out.push({ terms, receipts });
  }
  return out;
}

/** The per-entry results of a SessionsSettled (60 bytes each) or SessionsReserved (36) event. */
export function parseEntryResults(iface: Interface, results: BytesLike, settled: boolean): EntryResult[] {
  const b = getBytes(results);
  const size = settled ? 60 : 36;
  const out: EntryResult[] = [];
  for (let p = 0; p + size <= b.length; p += size) {
    const selector = hexlify(b.subarray(p + 32, p + 36));
    const reason = selector === '0x00000000' ? '' : (iface.getError(selector)?.name ?? selector);
    out.push({
      txid: hexlify(b.subarray(p, p + 32)),
      reason,
      billedWh: settled ? BigInt(hexlify(b.subarray(p + 36, p + 44))) : 0n,
      amountWei: settled ? BigInt(hexlify(b.subarray(p + 44, p + 60))) : 0n,
    });
  }
  return out;
}

/** Every entry result in a receipt's SessionsSettled / SessionsReserved events. */
export function receiptResults(iface: Interface, receipt: TransactionReceipt): EntryResult[] {
  const out: EntryResult[] = [];
  for (const log of receipt.logs) {
    let parsed: ReturnType<Interface['parseLog']>;
    try {
      parsed = iface.parseLog(log);
    } catch {
      continue;
    }
    if (parsed?.name === 'SessionsSettled') out.push(...parseEntryResults(iface, parsed.args.results, true));
    if (parsed?.name === 'SessionsReserved')
      out.push(...parseEntryResults(iface, parsed.args.results, false));
  }
  return out;
}

/** A batch sent to the chain: its hash at once, its outcome once mined. */
export interface PendingBatch {
  hash: string;
  result(): Promise<BatchResult>;
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

  /**
   * A view, its arguments and result typed from the ABI. Where the runner has a JSON-RPC provider
   * and the arguments are fixed-size words (addresses, unsigned integers, bytes32: every view an
   * agent reads per session), a raw eth_call with the words written here: ethers' contract call
   * (wrapping the method, looking up its fragment by name, copying and resolving the request,
   * checksumming each address with a keccak) cost the EV and station workers at scale more than
   * the read itself (docs/BENCHMARKS.md). The result is decoded by the same ABI, the same shape
   * as the contract call's (one output: the value; several: the Result); a revert is decoded
   * into the contract's custom error as the contract call would.
   */
  private async view<F extends ViewName>(method: F, ...args: ArgsOf<F>): Promise<ResultOf<F>> {
    const provider = this.contract.runner?.provider as
      | { send?: (method: string, params: unknown[]) => Promise<unknown> }
      | null
      | undefined;
    const rpc = this.rpc ?? (typeof provider?.send === 'function' ? provider : undefined);
    const { fragment, selector } = this.fragment(method);
    const data = rpc?.send ? callData(fragment, args, selector) : undefined;
    if (!rpc?.send || data === undefined) return this.contract.getFunction(method)(...args);
    const iface = this.contract.interface;
    let out: unknown;
    try {
      out = await rpc.send('eth_call', [{ to: this.address, data }, 'latest']);
    } catch (err) {
      // The node's revert data: in ethers' CALL_EXCEPTION, or in the raw JSON-RPC error.
      const e = err as { code?: unknown; data?: unknown };
      const revert =
        e.code === 'CALL_EXCEPTION' ? e.data : err instanceof JsonRpcError ? err.error.data : undefined;
      if (typeof revert === 'string' && /^0x[0-9a-fA-F]{8,}$/.test(revert))
        throw iface.makeError(revert, { to: this.address, data });
      throw err;
    }
    if (typeof out !== 'string')
      throw Object.assign(new Error(`eth_call ${method}: the node answered ${JSON.stringify(out)}`), {
        code: 'BAD_DATA',
      });
    const result = iface.decodeFunctionResult(fragment, out);
    return (result.length === 1 ? result[0] : result) as ResultOf<F>;
  }

  /** Where the views go, if not through the runner's provider (readsOver). */
  private rpc?: { send(method: string, params: unknown[]): Promise<unknown> };

  /**
   * The views straight over this JSON-RPC transport (contracts/rpc.ts `jsonRpc`: kept-alive
   * node:http, one request a call), not through ethers' provider, whose request objects, copies
   * and batching queue were the rest of ethers' share of the agents' CPU at scale.
   */
  readsOver(rpc: { send(method: string, params: unknown[]): Promise<unknown> }): this {
    this.rpc = rpc;
    return this;
  }

  private readonly fragments = new Map<string, { fragment: FunctionFragment; selector: string }>();

  /** A function's fragment and selector, looked up by name once (the selector getter hashes anew each time). */
  private fragment(method: string): { fragment: FunctionFragment; selector: string } {
    let f = this.fragments.get(method);
    if (!f) {
      const fragment = this.contract.interface.getFunction(method);
      if (!fragment) throw new Error(`the contract's ABI has no function ${method}`);
      f = { fragment, selector: fragment.selector };
      this.fragments.set(method, f);
    }
    return f;
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
    gasLimit?: bigint,
  ): Promise<ContractTransactionResponse> {
    const fn = this.contract.getFunction(method);
    const overrides = {
      ...(value === undefined ? {} : { value }),
      ...(gasLimit === undefined ? {} : { gasLimit }),
    };
    try {
      return await (Object.keys(overrides).length === 0 ? fn(...args) : fn(...args, overrides));
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

  // ---- reservation and settlement
  /** Reserves cap × price of one session against the EV's deposit (the EV's signed consent). */
  reserve(terms: SettlementTerms, evConsent: BytesLike): Promise<TransactionReceipt> {
    return this.send('reserve', [packReservations([{ terms, evConsent }])]);
  }
  async reserveBatch(entries: ReservationEntry[]): Promise<BatchResult> {
    return (await this.submitReserveBatch(entries)).result();
  }
  /** Sends a reservation batch without waiting for it (as submitSettleBatch). */
  async submitReserveBatch(
    entries: ReservationEntry[],
    opts: { gasLimit?: bigint } = {},
  ): Promise<PendingBatch> {
    const tx = await this.sendOnly('reserveBatch', [packReservations(entries)], undefined, opts.gasLimit);
    return { hash: tx.hash, result: async () => this.batchResult(await this.receiptOf('reserveBatch', tx)) };
  }
  /** Settles one session from the EV's highest signed receipt and the HCS's signed report. */
  settle(terms: SettlementTerms, evReport: BytesLike, hcsReport: BytesLike): Promise<TransactionReceipt> {
    return this.send('settle', [packSettlements([{ terms, evReport, hcsReport }])]);
  }
  /** Sends a batch and waits for its receipt; what each entry came to is read from its event. */
  async settleBatch(entries: SettlementEntry[]): Promise<BatchResult> {
    return (await this.submitSettleBatch(entries)).result();
  }
  /**
   * Sends a batch without waiting for it: the hash is known at once (to journal before waiting);
   * `result()` waits for the receipt and reads each entry's outcome from its event (it may be
   * called again after a failed wait).
   */
  async submitSettleBatch(
    entries: SettlementEntry[],
    opts: { gasLimit?: bigint } = {},
  ): Promise<PendingBatch> {
    const sorted = byStation(entries.map((entry, i) => ({ terms: entry.terms, entry, i })));
    const order = sorted.map((e) => e.i);
    // `gasLimit`: a bound instead of the node's estimate, which runs the whole batch a dozen times
    // (a binary search: ~1 s for 100 bills on anvil) and holds up every call sent in the same
    // JSON-RPC batch. Only the gas used is paid; a batch that ran out would revert whole.
    const tx = await this.sendOnly(
      'settleBatch',
      [packSettlements(sorted.map((e) => e.entry))],
      undefined,
      opts.gasLimit,
    );
    return {
      hash: tx.hash,
      result: async () => this.batchResult(await this.receiptOf('settleBatch', tx), order),
    };
  }
  /**
   * The calldata of a settlement batch, for a transaction built and signed by the caller
   * (contracts/batchsender.ts), and the order the entries went in (`order[k]`: the caller's index
   * of the k-th entry sent; sorted by station, as submitSettleBatch sends them).
   */
  settleBatchCalldata(entries: SettlementEntry[]): { data: Uint8Array; order: number[] } {
    const sorted = byStation(entries.map((entry, i) => ({ terms: entry.terms, entry, i })));
    return {
      data: bytesCalldata(this.selector('settleBatch'), packSettlements(sorted.map((e) => e.entry))),
      order: sorted.map((e) => e.i),
    };
  }
  /** The calldata of a reservation batch, in the entries' order. */
  reserveBatchCalldata(entries: ReservationEntry[]): Uint8Array {
    return bytesCalldata(this.selector('reserveBatch'), packReservations(entries));
  }
  private selector(method: 'settleBatch' | 'reserveBatch'): string {
    const fn = this.contract.interface.getFunction(method);
    if (!fn) throw new Error(`the contract's ABI has no ${method}`);
    return fn.selector;
  }
  /** What each entry of a batch came to, from its raw receipt's logs, in the caller's order. */
  resultsOfLogs(logs: readonly RawLog[], order?: number[]): EntryResult[] {
    const sent = resultsFromLogs(this.contract.interface, this.address, logs);
    const results = [...sent];
    if (order && order.length === sent.length)
      for (const [k, r] of sent.entries()) results[order[k] ?? k] = r;
    return results;
  }
  /** `order[k]`: the caller's index of the k-th entry sent; results come back in the caller's order. */
  private batchResult(receipt: TransactionReceipt, order?: number[]): BatchResult {
    const sent = receiptResults(this.contract.interface, receipt);
    const results = [...sent];
    if (order && order.length === sent.length) {
      for (const [k, r] of sent.entries()) results[order[k] ?? k] = r;
    }
    const skipped = results.filter((r) => r.reason !== '').map(({ txid, reason }) => ({ txid, reason }));
    const settledTxids = results.filter((r) => r.reason === '').map((r) => r.txid);
    return { receipt, settled: settledTxids.length, settledTxids, skipped, results };
  }
  /** Gives an unsettled reservation back to its EV once the window is over. */
  release(terms: SettlementTerms): Promise<TransactionReceipt> {
    return this.send('release', [terms]);
  }
  /** `comment` as a string (≤ 10 bytes UTF-8) or raw bytes10. */
  rate(terms: SettlementTerms, rating: number, comment: string): Promise<TransactionReceipt> {
    const raw = /^0x[0-9a-fA-F]{20}$/.test(comment) ? comment : commentBytes10(comment);
    return this.send('rate', [terms, BigInt(rating), raw]);
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
  /**
   * What the EV's deposit can still cover. Read with a raw eth_call where the runner has a JSON-RPC
   * provider: the edge reads one per agreement, and ethers' contract call (populate, encode,
   * checksum, decode) cost it more than the read (bench:edge).
   */
  async availableDeposit(ev: string): Promise<bigint> {
    return this.view('availableDeposit', ev);
  }
  /** The deposit (announced withdrawal excluded), what open reservations hold of it, the announcement. */
  async depositOf(
    ev: string,
  ): Promise<{ balance: bigint; reserved: bigint; pendingWithdrawal: bigint; withdrawableAt: bigint }> {
    const [balance, reserved, pendingWithdrawal, withdrawableAt] = await this.view('depositOf', ev);
    return { balance, reserved, pendingWithdrawal, withdrawableAt };
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
  /** The highest seq the station's ring holds (0 if none): number new sessions above it. */
  async lastSeq(hcs: string): Promise<bigint> {
    return this.view('lastSeq', hcs);
  }
  /**
   * Every session settled since `fromBlock` (optionally only `txid`), from the SessionsSettled
   * events, with the disputed ones marked (a Disputed event in the same transaction).
   */
  async settledSessions(
    fromBlock: number,
    txid?: string,
  ): Promise<(EntryResult & { disputed: boolean; txHash: string; blockNumber: number })[]> {
    const settled = await this.events('SessionsSettled', fromBlock);
    const disputes = await this.events('Disputed', fromBlock);
    const disputed = new Set(disputes.map((d) => `${d.log.transactionHash}:${d.args.txid.toLowerCase()}`));
    const out: (EntryResult & { disputed: boolean; txHash: string; blockNumber: number })[] = [];
    for (const e of settled) {
      for (const r of parseEntryResults(this.contract.interface, e.args.results, true)) {
        if (r.reason !== '' || (txid && r.txid.toLowerCase() !== txid.toLowerCase())) continue;
        out.push({
          ...r,
          disputed: disputed.has(`${e.log.transactionHash}:${r.txid.toLowerCase()}`),
          txHash: e.log.transactionHash,
          blockNumber: e.log.blockNumber,
        });
      }
    }
    return out;
  }
  async memberCounts(): Promise<{ evs: number; hcss: number }> {
    const [evs, hcss] = await this.view('memberCounts');
    return { evs: Number(evs), hcss: Number(hcss) };
  }
  /** The contract's `name` events from `fromBlock` on, typed, each with the log it came from. */
  async events<E extends EventName>(
    name: E,
    fromBlock: number,
    toBlock?: number,
  ): Promise<(SettlementEventOf<E> & { log: Log })[]> {
    const logs = await this.contract.queryFilter(name, fromBlock, toBlock);
    return logs.flatMap((log) => {
      const e = parseSettlementLog(this.contract.interface, log);
      return e?.name === name ? [{ ...(e as SettlementEventOf<E>), log }] : [];
    });
  }
  async settlementWindow(): Promise<bigint> {
    return this.view('SETTLEMENT_WINDOW');
  }
}
