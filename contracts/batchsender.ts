/**
 * The edge's transactions, built, signed and sent raw (contracts/rawtx.ts), with the nonce kept
 * here: several batches may be on their way at once, each sent as soon as it is signed, their
 * receipts awaited together.
 *
 * The rules that keep a batch from being lost or sent twice under different nonces:
 * - A nonce is given to a transaction when it is signed, and the signed bytes are what the caller
 *   journals before `broadcast`; a batch is only ever sent again as those same bytes (same nonce,
 *   same hash), never signed anew.
 * - Signing and sending go one at a time (the caller's queue): a nonce the node refused outright
 *   (bad fee, too large, …) is the last one given, and is given again to the next transaction.
 * - A send that failed for the network leaves its nonce taken: the bytes may have reached the node,
 *   and are sent again until a receipt for the hash shows, or the node says the nonce is used (by
 *   another transaction of this account: then the batch's entries are queued again; the contract
 *   settles and reserves a session at most once, so a resubmission cannot bill twice).
 * - On start the next nonce is the node's pending count, or one past the highest journaled batch.
 */
import { type Eip1559Fields, type SignedTx, signEip1559 } from './rawtx.js';

/** A receipt as the node gives it, the fields the edge reads. */
export interface RawReceipt {
  transactionHash: string;
  status: number;
  gasUsed: bigint;
  blockNumber: number;
  logs: { address: string; topics: string[]; data: string }[];
}

/** The node refused a transaction outright (not the network): it was not taken. */
export class TxRefused extends Error {
  constructor(
    message: string,
    readonly nonceUsed: boolean,
  ) {
    super(message);
    this.name = 'TxRefused';
  }
}

/** How long fee data is reused before it is read again. */
const FEES_TTL_MS = 10_000;

/** The JSON-RPC error's message, wherever ethers put it. */
function rpcMessage(err: unknown): string {
  const e = err as {
    error?: { message?: string };
    info?: { error?: { message?: string } };
    message?: string;
  };
  return e?.error?.message ?? e?.info?.error?.message ?? e?.message ?? String(err);
}

/** Whether a JSON-RPC error is the node answering (refusal) rather than the network failing. */
function isNodeAnswer(err: unknown): boolean {
  const e = err as { error?: { code?: number }; info?: { error?: { code?: number } }; code?: unknown };
  return typeof (e?.error?.code ?? e?.info?.error?.code) === 'number';
}

/** What the sender needs of a node: JSON-RPC calls (contracts/rpc.ts `jsonRpc`, or an ethers provider). */
export interface RpcPort {
  send(method: string, params: unknown[]): Promise<unknown>;
}

export class BatchSender {
  private next = 0n;
  private fees: { at: number; maxFee: bigint; tip: bigint } | undefined;

  private constructor(
    private readonly provider: RpcPort,
    private readonly secretKey: Uint8Array,
    readonly address: string,
    readonly chainId: bigint,
  ) {}

  /**
   * A sender for `address` (the key's own), its next nonce the node's pending count or one past
   * `journaledNonces`' highest, whichever is more.
   */
  static async open(
    provider: RpcPort,
    privateKey: string,
    address: string,
    chainId: bigint,
    journaledNonces: bigint[] = [],
  ): Promise<BatchSender> {
    const key = Buffer.from(privateKey.replace(/^0x/, ''), 'hex');
    if (key.length !== 32) throw new Error('the device key must be 32 bytes');
    const sender = new BatchSender(provider, key, address.toLowerCase(), chainId);
    await sender.resync(journaledNonces);
    return sender;
  }

  /** The nonce the next signed transaction gets. */
  get nextNonce(): bigint {
    return this.next;
  }

  /** Reads the node's pending count again (after the node said a nonce was used). */
  async resync(journaledNonces: bigint[] = []): Promise<void> {
    const pending = BigInt(
      (await this.provider.send('eth_getTransactionCount', [this.address, 'pending'])) as string,
    );
    let next = pending;
    for (const n of journaledNonces) if (n + 1n > next) next = n + 1n;
    this.next = next;
  }

  private async feeData(): Promise<{ maxFee: bigint; tip: bigint }> {
    if (this.fees && Date.now() - this.fees.at < FEES_TTL_MS) return this.fees;
    const [block, tipHex] = await Promise.all([
      this.provider.send('eth_getBlockByNumber', ['latest', false]) as Promise<{ baseFeePerGas?: string }>,
      (this.provider.send('eth_maxPriorityFeePerGas', []) as Promise<string>).catch(() => '0x3b9aca00'),
    ]);
    const base = BigInt(block?.baseFeePerGas ?? '0x0');
    const tip = BigInt(tipHex);
    // Twice the base fee: room for it to rise for several full blocks before the batch would wait.
    this.fees = { at: Date.now(), maxFee: 2n * base + tip, tip };
    return this.fees;
  }

  /** Signs a call of `to` with `data`, giving it the next nonce. Journal the result, then `broadcast` it. */
  async sign(to: string, data: Uint8Array, gasLimit: bigint): Promise<SignedTx> {
    const { maxFee, tip } = await this.feeData();
    const fields: Eip1559Fields = {
      chainId: this.chainId,
      nonce: this.next,
      maxPriorityFeePerGas: tip,
      maxFeePerGas: maxFee,
      gasLimit,
      to,
      value: 0n,
      data,
    };
    const signed = signEip1559(fields, this.secretKey);
    this.next++;
    return signed;
  }

  /**
   * Sends signed bytes (again, if need be). Resolves when the node took them or already had them;
   * throws TxRefused when it refused them (with `nonceUsed` when their nonce is taken), and the
   * network's error when it could not be asked.
   */
  async broadcast(tx: SignedTx): Promise<void> {
    try {
      await this.provider.send('eth_sendRawTransaction', [tx.raw]);
    } catch (err) {
      if (!isNodeAnswer(err)) throw err;
      const message = rpcMessage(err);
      if (/already known|known transaction|already imported|AlreadyKnown/i.test(message)) return;
      throw new TxRefused(message, /nonce too low|nonce.*(already|used)|NonceTooLow/i.test(message));
    }
  }

  /**
   * The node refused `tx` outright: its nonce is given to the next transaction if it was the last
   * one given, else (or when the node says the nonce is used) the count is read again.
   */
  async refused(tx: SignedTx, nonceUsed: boolean): Promise<void> {
    if (!nonceUsed && tx.nonce === this.next - 1n) this.next = tx.nonce;
    else await this.resync();
  }

  /** The receipt of `hash`, or undefined while it is not mined. */
  async receipt(hash: string): Promise<RawReceipt | undefined> {
    const r = (await this.provider.send('eth_getTransactionReceipt', [hash])) as {
      transactionHash: string;
      status: string;
      gasUsed: string;
      blockNumber: string;
      logs: RawReceipt['logs'];
    } | null;
    if (!r) return undefined;
    return {
      transactionHash: r.transactionHash,
      status: Number(r.status),
      gasUsed: BigInt(r.gasUsed),
      blockNumber: Number(r.blockNumber),
      logs: r.logs,
    };
  }

  /** The account's mined transaction count (nonces below it are used). */
  async minedCount(): Promise<bigint> {
    return BigInt((await this.provider.send('eth_getTransactionCount', [this.address, 'latest'])) as string);
  }
}
