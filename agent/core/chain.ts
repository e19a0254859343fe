/**
 * The agent's chain client: one wallet per device over ethers, a serial send queue with the
 * nonce taken from the node ('pending' count, so it is right after any restart), retries with
 * backoff while the node is unreachable (reverts are not retried: they are answers), a
 * confirmation depth, and a cache of member status for the message bus.
 */
import { type JsonRpcProvider, NonceManager, type TransactionReceipt, Wallet } from 'ethers';
import { BatchSender } from '../../contracts/batchsender.js';
import { MemberStatus, revertName, SettlementClient } from '../../contracts/client.js';
import { retry } from '../../drivers/index.js';
import { type Deployment, readDeployment } from '../../contracts/deploy.js';
import { connectRpc, DEVICE_MAX_SOCKETS, EDGE_MAX_SOCKETS, jsonRpc } from '../../contracts/rpc.js';
import type { Domain } from '../../protocol/index.js';
import type { Logger } from './log.js';

export interface ChainOptions {
  rpcUrl: string;
  deploymentFile: string;
  privateKey: string;
  confirmations: number;
  retryMaxMs: number;
  log: Logger;
  /** An edge keeps more connections to its node than a device (contracts/rpc.ts). */
  role?: 'ev' | 'hcs' | 'edge';
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'NETWORK_ERROR',
  'TIMEOUT',
  'SERVER_ERROR',
  'UND_ERR_SOCKET',
  // contracts/rpc.ts: a request that timed out.
  'TimeoutError',
]);

/** Whether an error is the node being away (retry) rather than an answer (do not). */
export function isNetworkError(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string }; message?: string };
  if (revertName(err)) return false;
  if (e?.code === 'CALL_EXCEPTION') return false;
  return (
    NETWORK_CODES.has(e?.code ?? '') ||
    NETWORK_CODES.has(e?.cause?.code ?? '') ||
    /fetch failed|ECONNREFUSED|socket hang up|unreachable/i.test(e?.message ?? '')
  );
}

/** How long a call made while the agent is running may wait for an unreachable node. */
export const CALL_BUDGET_MS = 5000;

export class Chain {
  readonly deployment: Deployment;
  readonly domain: Domain;
  readonly address: string;
  private provider!: JsonRpcProvider;
  private signer!: NonceManager;
  client!: SettlementClient;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly members = new Map<string, { ok: boolean; until: number }>();
  reachable = false;
  /** The raw JSON-RPC client (kept-alive connections, no ethers in the way): the views and the edge's batches. */
  private batchRpc: ReturnType<typeof jsonRpc> | undefined;

  private constructor(private readonly opts: ChainOptions) {
    this.deployment = readDeployment(opts.deploymentFile);
    this.domain = {
      chainId: BigInt(this.deployment.chainId),
      verifyingContract: this.deployment.address.toLowerCase(),
    };
    this.address = new Wallet(opts.privateKey).address.toLowerCase();
  }

  /**
   * The raw JSON-RPC client, opened once. Every answer or network failure through it says whether
   * the node is reachable, as `retry` does: the edge's batches and receipts go over it outside
   * `retry`, and while the node was away its status said reachable for as long as nothing else
   * asked the chain.
   */
  private rawRpc(): ReturnType<typeof jsonRpc> {
    if (this.batchRpc) return this.batchRpc;
    const rpc = jsonRpc(
      this.opts.rpcUrl,
      undefined,
      this.opts.role === 'edge' ? EDGE_MAX_SOCKETS : DEVICE_MAX_SOCKETS,
    );
    this.batchRpc = {
      send: async (method, params) => {
        try {
          const out = await rpc.send(method, params);
          this.reachable = true;
          return out;
        } catch (err) {
          // A refusal (a JsonRpcError, a revert) is an answer: the node is there.
          this.reachable = !isNetworkError(err);
          throw err;
        }
      },
    };
    return this.batchRpc;
  }

  /** Connects, waiting (with backoff) for the node if it is not up yet. */
  static async connect(opts: ChainOptions): Promise<Chain> {
    const chain = new Chain(opts);
    await chain.retry(
      'connect',
      async () => {
        const { provider, chainId } = await connectRpc(opts.rpcUrl);
        if (chainId !== chain.domain.chainId) {
          throw Object.assign(
            new Error(
              `${opts.rpcUrl} is chain ${chainId}, but ${opts.deploymentFile} is for chain ${chain.domain.chainId}: wrong node or wrong deployment file`,
            ),
            { fatal: true },
          );
        }
        if ((await provider.getCode(chain.deployment.address)) === '0x') {
          throw Object.assign(
            new Error(
              `no contract at ${chain.deployment.address} on ${opts.rpcUrl}: was the chain reset? deploy again`,
            ),
            { fatal: true },
          );
        }
        chain.provider = provider;
        chain.signer = new NonceManager(new Wallet(opts.privateKey, provider));
        // Views over kept-alive node:http, not ethers' provider (contracts/client.ts readsOver).
        chain.client = SettlementClient.fromDeployment(chain.deployment, chain.signer).readsOver(
          chain.rawRpc(),
        );
      },
      Number.POSITIVE_INFINITY,
    );
    chain.reachable = true;
    return chain;
  }

  /**
   * Runs `fn`, retrying network failures with exponential backoff (and jitter) for up to `budgetMs`; other
   * errors pass through at once. The budget is short by default: a call made while handling a
   * message or a tick must not hold the agent while the node is away (the caller's state stays
   * journaled, and the next tick tries again). Start-up passes Infinity.
   */
  async retry<T>(what: string, fn: () => Promise<T>, budgetMs = CALL_BUDGET_MS): Promise<T> {
    const out = await retry(fn, {
      baseMs: 250,
      maxMs: this.opts.retryMaxMs,
      budgetMs,
      retryable: (err) => {
        const away = !(err as { fatal?: boolean }).fatal && isNetworkError(err);
        if (away) this.reachable = false;
        return away;
      },
      onRetry: (_err, retryMs) =>
        this.opts.log.warn({ what, rpc: this.opts.rpcUrl, retryMs }, 'chain node unreachable; retrying'),
      giveUp: (err) =>
        Object.assign(new Error(`chain node ${this.opts.rpcUrl} unreachable (${what}); will retry later`), {
          code: 'NETWORK_ERROR',
          cause: err,
        }),
    });
    this.reachable = true;
    return out;
  }

  /**
   * Sends one transaction at a time from this device's wallet (the nonce manager counts from the
   * node's pending nonce; after a failed send it is reset, since a nonce may not have been used).
   */
  send<T>(what: string, fn: (client: SettlementClient) => Promise<T>): Promise<T> {
    const run = async () =>
      this.retry(what, async () => {
        try {
          return await fn(this.client);
        } catch (err) {
          this.signer.reset();
          throw err;
        }
      });
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => {});
    return next;
  }

  /**
   * A raw-transaction sender for this device's batches (the edge's: contracts/batchsender.ts),
   * its nonce past `journaledNonces`. The edge sends nothing else, so it and the ethers wallet of
   * `send` never give out the same nonce.
   */
  openBatchSender(journaledNonces: bigint[] = []): Promise<BatchSender> {
    const rpc = this.rawRpc();
    return this.retry('nonce', () =>
      BatchSender.open(rpc, this.opts.privateKey, this.address, this.domain.chainId, journaledNonces),
    );
  }

  async confirmations(receipt: TransactionReceipt): Promise<void> {
    if (this.opts.confirmations > 1)
      await receipt.confirmations().then(async (n) => {
        if (n < this.opts.confirmations)
          await this.provider.waitForTransaction(receipt.hash, this.opts.confirmations);
      });
  }

  /** Verified and not suspended (cached: 30 s when yes, 5 s when no). */
  async isMember(address: string): Promise<boolean> {
    const hit = this.members.get(address);
    if (hit && hit.until > Date.now()) return hit.ok;
    let info: { status: number };
    try {
      info = await this.retry('authInfo', () => this.client.authInfo(address));
    } catch (err) {
      // The node is away: the last answer we had is better than dropping a member's message.
      if (hit && isNetworkError(err)) return hit.ok;
      throw err;
    }
    const ok = info.status === MemberStatus.Verified;
    // Bounded: the addresses asked about are whatever a message claimed (agent/core/gate.ts).
    const oldest = this.members.size >= 10_000 ? this.members.keys().next().value : undefined;
    if (oldest !== undefined) this.members.delete(oldest);
    this.members.set(address, { ok, until: Date.now() + (ok ? 30_000 : 5_000) });
    return ok;
  }

  async balance(): Promise<bigint> {
    return this.retry('balance', () => this.provider.getBalance(this.address));
  }

  async blockTimestamp(): Promise<number> {
    const block = await this.retry('block', () => this.provider.getBlock('latest'));
    return block?.timestamp ?? Math.floor(Date.now() / 1000);
  }

  get rpc(): JsonRpcProvider {
    return this.provider;
  }

  close(): void {
    this.provider?.destroy();
  }
}
