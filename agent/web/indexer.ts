/**
 * The page's only source: the contract's events, read from the deployment block on and followed
 * as blocks arrive, plus the settlement calldata (parties, terms, each side's report) of the
 * sessions they name: a call's one SessionsSettled event is expanded into one `Settled` /
 * `SettledDisputed` per session (see `expand`).
 * Nothing is copied from an agent's journal, so the page can never drift from the chain.
 *
 * Reorg safety:
 * - only blocks with `confirmations` confirmations are indexed (head − confirmations + 1);
 * - the hash of every block we took logs from, and of the tip of every step, is kept as a
 *   checkpoint; after a read, every log's block hash is checked against the node's header for
 *   that height, so a read that straddles a reorg is thrown away, never half-applied;
 * - every step first compares the tip's hash with the node's; on a mismatch the checkpoints are
 *   walked back to the newest one the node still agrees with (the fork point: a matching hash
 *   means every block below it matches too), everything above it is dropped and indexed again.
 *   A reorg deeper than the kept checkpoints re-indexes from the deployment block.
 */
import type { Interface, JsonRpcProvider, Log } from 'ethers';
import { Contract } from 'ethers';
import { parseEntryResults } from '../../contracts/client.js';
import type { Deployment } from '../../contracts/deploy.js';
import { decodeSettlementInput, type SettlementInput } from './calldata.js';

/** One contract event with its place on the chain. Addresses are lowercase 0x hex. */
export interface IndexedEvent {
  name: string;
  block: number;
  logIndex: number;
  txHash: string;
  /** Block timestamp, unix seconds. */
  time: number;
  args: Record<string, string | bigint | number | boolean>;
}

export interface IndexerOptions {
  provider: JsonRpcProvider;
  deployment: Deployment;
  /** A block is indexed once it has this many confirmations (1 = as soon as it is mined). */
  confirmations?: number;
  pollMs?: number;
  /** Blocks per eth_getLogs call while catching up (public nodes cap the range). */
  chunkBlocks?: number;
  /** Checkpoints kept below the tip: the deepest reorg handled without a full re-index. */
  keepBlocks?: number;
  onError?: (err: Error) => void;
}

/** A read that met a reorg half-way: nothing of it is applied; the next step starts over. */
class ReorgDuringRead extends Error {}

export class ChainIndexer {
  readonly iface: Interface;
  /** Events in chain order (block, then log index). */
  events: IndexedEvent[] = [];
  /** Each settled session's terms and both reports, by txid, from its settling transaction. */
  readonly settlements = new Map<string, SettlementInput & { block: number }>();
  tip: { number: number; hash: string } | undefined;
  head = 0;
  reorgs = 0;
  /** Bumped on every change, so derived views can be cached per version. */
  version = 0;
  lastError: string | undefined;
  private readonly checkpoints = new Map<number, string>();
  private readonly confirmations: number;
  private readonly chunkBlocks: number;
  private readonly keepBlocks: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private caughtUp: Promise<void> | undefined;

  constructor(private readonly opts: IndexerOptions) {
    this.iface = new Contract(opts.deployment.address, opts.deployment.abi).interface;
    this.confirmations = Math.max(1, opts.confirmations ?? 1);
    this.chunkBlocks = opts.chunkBlocks ?? 2000;
    this.keepBlocks = opts.keepBlocks ?? 256;
  }

  get address(): string {
    return this.opts.deployment.address.toLowerCase();
  }

  get chainId(): number {
    return this.opts.deployment.chainId;
  }

  get provider(): JsonRpcProvider {
    return this.opts.provider;
  }

  get confirmationsNeeded(): number {
    return this.confirmations;
  }

  /** Starts following the chain; resolves once the first catch-up is done. */
  start(): Promise<void> {
    this.caughtUp ??= (async () => {
      this.stopped = false;
      await this.sync();
      this.schedule();
    })();
    return this.caughtUp;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(async () => {
      try {
        await this.sync();
      } catch (err) {
        // The node away or a reorg mid-read: the next step tries again from the tip.
        this.lastError = (err as Error).message;
        this.opts.onError?.(err as Error);
      }
      this.schedule();
    }, this.opts.pollMs ?? 1000);
  }

  /** One step: check the tip for a reorg, then index every confirmed block after it. Serialised. */
  sync(): Promise<void> {
    const run = (this.running ?? Promise.resolve()).then(() => this.syncNow());
    this.running = run.catch(() => {});
    return run;
  }

  private async syncNow(): Promise<void> {
    const provider = this.opts.provider;
    this.head = await provider.getBlockNumber();
    if (this.tip) {
      const header = await provider.getBlock(this.tip.number);
      if (header?.hash !== this.tip.hash) await this.rollBack();
    }
    const safe = this.head - this.confirmations + 1;
    let from = this.tip ? this.tip.number + 1 : this.opts.deployment.block;
    while (from <= safe && !this.stopped) {
      const to = Math.min(safe, from + this.chunkBlocks - 1);
      await this.indexRange(from, to);
      from = to + 1;
    }
    this.lastError = undefined;
  }

  private async indexRange(from: number, to: number): Promise<void> {
    const provider = this.opts.provider;
    const logs = await provider.getLogs({
      address: this.opts.deployment.address,
      fromBlock: from,
      toBlock: to,
    });
    // One batched JSON-RPC request: ethers groups calls made in the same tick.
    const numbers = [...new Set([...logs.map((l) => l.blockNumber), to])];
    const headers = await Promise.all(numbers.map((n) => provider.getBlock(n)));
    const byNumber = new Map(headers.map((h, i) => [numbers[i]!, h]));
    for (const log of logs) {
      if (byNumber.get(log.blockNumber)?.hash !== log.blockHash)
        throw new ReorgDuringRead(`block ${log.blockNumber} changed while it was read`);
    }
    const tipHeader = byNumber.get(to);
    if (!tipHeader?.hash) throw new ReorgDuringRead(`block ${to} is gone`);

    const raw = logs.flatMap((l) => this.parse(l, byNumber.get(l.blockNumber)!.timestamp));
    const settling = [...new Set(raw.filter((e) => e.name === 'SessionsSettled').map((e) => e.txHash))];
    const txs = await Promise.all(settling.map((h) => provider.getTransaction(h)));
    const inputs = new Map<string, SettlementInput>();
    const domain = { chainId: BigInt(this.chainId), verifyingContract: this.opts.deployment.address };
    for (const tx of txs) {
      if (!tx || tx.to?.toLowerCase() !== this.address) continue;
      for (const [txid, input] of decodeSettlementInput(this.iface, tx.data, domain)) inputs.set(txid, input);
    }
    const events = this.expand(raw, inputs);

    // Applied only now, all at once: a throw above leaves the index as it was.
    for (const e of events) {
      if (e.name !== 'Settled' && e.name !== 'SettledDisputed') continue;
      const input = inputs.get(String(e.args.txid));
      if (input) this.settlements.set(input.txid, { ...input, block: e.block });
    }
    this.events.push(...events);
    for (const h of headers) if (h?.hash) this.checkpoints.set(h.number, h.hash);
    this.tip = { number: to, hash: tipHeader.hash };
    for (const n of this.checkpoints.keys()) if (n < to - this.keepBlocks) this.checkpoints.delete(n);
    if (events.length > 0) this.version++;
  }

  /**
   * One SessionsSettled event per call becomes one `Settled` (or `SettledDisputed`, when the
   * same transaction recorded a Disputed event for it) per settled session, with its parties
   * from the calldata: `{txid, ev, hcs, energyWh, amountWei}` (+ `evEnergyWh`, `hcsEnergyWh`
   * when disputed). Refused entries are left out, as the contract changed nothing for them.
   */
  private expand(raw: IndexedEvent[], inputs: ReadonlyMap<string, SettlementInput>): IndexedEvent[] {
    const disputes = new Map<string, IndexedEvent>();
    for (const e of raw) if (e.name === 'Disputed') disputes.set(`${e.txHash}:${String(e.args.txid)}`, e);
    const out: IndexedEvent[] = [];
    for (const e of raw) {
      if (e.name === 'Disputed') continue;
      if (e.name !== 'SessionsSettled') {
        out.push(e);
        continue;
      }
      for (const r of parseEntryResults(this.iface, String(e.args.results), true)) {
        if (r.reason !== '') continue;
        const txid = r.txid.toLowerCase();
        const input = inputs.get(txid);
        const dispute = disputes.get(`${e.txHash}:${txid}`);
        out.push({
          ...e,
          name: dispute ? 'SettledDisputed' : 'Settled',
          args: {
            txid,
            ev: input?.ev ?? '',
            hcs: input?.hcs ?? '',
            energyWh: r.billedWh,
            amountWei: r.amountWei,
            ...(dispute
              ? { evEnergyWh: dispute.args.evEnergyWh!, hcsEnergyWh: dispute.args.hcsEnergyWh! }
              : {}),
          },
        });
      }
    }
    return out;
  }

  private parse(log: Log, time: number): IndexedEvent[] {
    const parsed = this.iface.parseLog({ topics: [...log.topics], data: log.data });
    if (!parsed) return [];
    const args: IndexedEvent['args'] = {};
    parsed.fragment.inputs.forEach((input, i) => {
      const v = parsed.args[i];
      args[input.name] = typeof v === 'string' ? v.toLowerCase() : (v as bigint | boolean);
    });
    return [
      {
        name: parsed.name,
        block: log.blockNumber,
        logIndex: log.index,
        txHash: log.transactionHash,
        time,
        args,
      },
    ];
  }

  /** Finds the newest checkpoint the node still agrees with and drops everything above it. */
  private async rollBack(): Promise<void> {
    const numbers = [...this.checkpoints.keys()].sort((a, b) => b - a);
    let fork: { number: number; hash: string } | undefined;
    for (let i = 0; i < numbers.length && !fork; i += 32) {
      const batch = numbers.slice(i, i + 32);
      const headers = await Promise.all(batch.map((n) => this.opts.provider.getBlock(n)));
      const at = batch.findIndex((n, j) => headers[j]?.hash === this.checkpoints.get(n));
      if (at >= 0) fork = { number: batch[at]!, hash: this.checkpoints.get(batch[at]!)! };
    }
    const keep = fork?.number ?? this.opts.deployment.block - 1;
    this.events = this.events.filter((e) => e.block <= keep);
    for (const [txid, s] of this.settlements) if (s.block > keep) this.settlements.delete(txid);
    for (const n of this.checkpoints.keys()) if (n > keep) this.checkpoints.delete(n);
    this.tip = fork;
    this.reorgs++;
    this.version++;
    this.opts.onError?.(new Error(`chain reorganised: re-indexing from block ${keep + 1}`));
  }
}
