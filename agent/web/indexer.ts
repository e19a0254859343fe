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
 *   that height, so a read that straddles a reorg is thrown away, never half-applied; and a
 *   read's first block must name the indexed tip as its parent (a reorg between two reads);
 * - every step first compares the tip's hash with the node's; on a mismatch the checkpoints are
 *   walked back to the newest one the node still agrees with (the fork point: a matching hash
 *   means every block below it matches too), everything above it is dropped and indexed again.
 *   A reorg deeper than the kept checkpoints re-indexes from the deployment block.
 *
 * Bounded memory (a device runs for years in 1 GB while the network settles millions of
 * sessions): only the tail of the chain a reorg may still replace is held as events. Once a
 * block is `keepBlocks` below the tip its events are final, and are folded (in batches, for few
 * writes on an SD card) into
 * - the aggregates the page shows of the whole network, in memory: the stations' tally (a few
 *   figures per station), the network's session count and sums, its newest `recentSessions`
 *   sessions (the network-wide list; older ones are listed per member);
 * - one append-only file per member in `dir` (rows.ts), read back when the page asks for that
 *   member's sessions or statement.
 * A reorg therefore only ever drops events from memory: nothing on disk is above the fold's
 * block, whose checkpoint is always kept; a reorg below it (deeper than `keepBlocks`) clears the
 * directory and re-indexes. base.json keeps the fold's block and hash, so a restart resumes from
 * there (after checking the node still has that block) instead of reading the whole history.
 */
import { join } from 'node:path';
import type { Interface, JsonRpcProvider, Log } from 'ethers';
import { Contract } from 'ethers';
import { parseEntryResults } from '../../contracts/client.js';
import type { Deployment } from '../../contracts/deploy.js';
import { decodeSettlementInput, type SettlementInput } from './calldata.js';
import { compactInput, IndexDamaged, type MemberRow, RowFiles } from './rows.js';
import { type SessionView, type StationView, StationTally, sessionsOf } from './views.js';

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
  /**
   * Where final rows are kept: a directory per deployment is made under it (the agent's
   * dataDir/page-index). A cache of the chain: deleting it costs a re-index, nothing else.
   */
  dir: string;
  /** The network's newest sessions kept in memory for the network-wide list. */
  recentSessions?: number;
  /** Final events held until this many are written out at once… */
  foldEvents?: number;
  /** …or until this long has passed since the last write. */
  foldMs?: number;
  /** base.json (the restart's resume point) is rewritten at most this often, and on stop(). */
  baseMs?: number;
  onError?: (err: Error) => void;
}

/** A read that met a reorg half-way: nothing of it is applied; the next step starts over. */
class ReorgDuringRead extends Error {}

/** What the index holds of the final blocks (below the reorg window), as base.json keeps it. */
interface Folded {
  /** Every event at or below this block is folded; its hash ('' when nothing is) is a checkpoint. */
  block: number;
  hash: string;
  events: number;
  lastEventTime: number;
  /** The network's sessions (settled, disputed, expired): count, billed energy, amounts. */
  sessions: number;
  billedWh: bigint;
  amountWei: bigint;
  tally: StationTally;
  /** The network's newest sessions, oldest first. */
  recent: SessionView[];
  /** Each member file's indexed length in bytes (rows.ts). */
  lengths: Map<string, number>;
}

interface SavedBase extends Omit<Folded, 'tally' | 'lengths'> {
  format: 1;
  chainId: number;
  address: string;
  tally: ReturnType<StationTally['toJSON']>;
  lengths: [string, number][];
}

/** A member's history: its events (final rows, then the tail) and its sessions' settling inputs. */
export interface MemberHistory {
  events: IndexedEvent[];
  inputs: Map<string, SettlementInput>;
}

/** The members an event names (its `ev`, `hcs`, `member`): the files its row goes to. */
function membersOf(e: IndexedEvent): string[] {
  const out: string[] = [];
  for (const key of ['ev', 'hcs', 'member'] as const) {
    const v = e.args[key];
    if (typeof v === 'string' && v !== '' && !out.includes(v)) out.push(v);
  }
  return out;
}

/** How long a member's history read for the page stays cached after its last read. */
const MEMBER_CACHE_MS = 30_000;

const isSessionEnd = (e: IndexedEvent) =>
  e.name === 'Settled' || e.name === 'SettledDisputed' || e.name === 'SessionReleased';

export class ChainIndexer {
  readonly iface: Interface;
  /** Events not yet final (the reorg window, and final ones not yet written out), chain order. */
  tail: IndexedEvent[] = [];
  /** The tail's settled sessions: terms and both reports, by txid, from the settling transaction. */
  private readonly tailInputs = new Map<string, SettlementInput & { block: number }>();
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
  private readonly recentSessions: number;
  private readonly foldEvents: number;
  private readonly foldMs: number;
  private readonly baseMs: number;
  private baseWrittenAt = 0;
  private baseDirty = false;
  private readonly files: RowFiles;
  private folded: Folded;
  private lastFold = Date.now();
  private loaded = false;
  /** Why the files were found damaged: the next step clears them and re-indexes. */
  private damaged: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private caughtUp: Promise<void> | undefined;
  private cache: { version: number; stations: StationView[]; sessions: SessionView[] } | undefined;
  private memberCache: { version: number; member: string; history: MemberHistory } | undefined;
  private rowsCache: (MemberHistory & { member: string; length: number }) | undefined;
  private forget: NodeJS.Timeout | undefined;

  constructor(private readonly opts: IndexerOptions) {
    this.iface = new Contract(opts.deployment.address, opts.deployment.abi).interface;
    this.confirmations = Math.max(1, opts.confirmations ?? 1);
    this.chunkBlocks = opts.chunkBlocks ?? 2000;
    this.keepBlocks = opts.keepBlocks ?? 256;
    this.recentSessions = opts.recentSessions ?? 1000;
    this.foldEvents = opts.foldEvents ?? 512;
    this.foldMs = opts.foldMs ?? 60 * 60_000;
    this.baseMs = opts.baseMs ?? 10 * 60_000;
    this.files = new RowFiles(
      join(opts.dir, `${opts.deployment.chainId}-${opts.deployment.address.toLowerCase()}`),
    );
    this.folded = this.empty();
  }

  private empty(): Folded {
    return {
      block: this.opts.deployment.block - 1,
      hash: '',
      events: 0,
      lastEventTime: 0,
      sessions: 0,
      billedWh: 0n,
      amountWei: 0n,
      tally: new StationTally(),
      recent: [],
      lengths: new Map(),
    };
  }

  /** Every event indexed (folded and in the tail). */
  get eventCount(): number {
    return this.folded.events + this.tail.length;
  }

  /** The newest indexed event's block time (unix seconds), 0 before any. */
  get lastEventTime(): number {
    return this.tail.at(-1)?.time ?? this.folded.lastEventTime;
  }

  /** What the index holds in memory, counted in entries: none of it grows with the sessions. */
  footprint(): Record<string, number> {
    return {
      tailEvents: this.tail.length,
      tailInputs: this.tailInputs.size,
      recentSessions: this.folded.recent.length,
      checkpoints: this.checkpoints.size,
      tallyEntries: this.folded.tally.size,
      memberFiles: this.folded.lengths.size,
      cachedMemberEvents:
        (this.memberCache?.history.events.length ?? 0) + (this.rowsCache?.events.length ?? 0),
    };
  }

  private derived() {
    if (this.cache?.version !== this.version) {
      const tally = this.folded.tally.clone();
      for (const e of this.tail) tally.apply(e);
      this.cache = {
        version: this.version,
        stations: tally.view(),
        sessions: sessionsOf(this.tail, this.tailInputs, this.folded.recent),
      };
    }
    return this.cache;
  }

  stations(): StationView[] {
    return this.derived().stations;
  }

  /**
   * The network's sessions, newest first: every one in the tail and the newest `recentSessions`
   * folded ones (`complete` false when older ones exist: they are listed per member), with the
   * count and sums of all of them.
   */
  networkSessions(): {
    sessions: SessionView[];
    complete: boolean;
    total: number;
    billedWh: bigint;
    amountWei: bigint;
  } {
    const { sessions } = this.derived();
    const tail = sessionsOf(this.tail, this.tailInputs).length;
    const f = this.folded;
    const inTail = sessions.slice(0, tail);
    const sum = (k: (s: SessionView) => bigint) => inTail.reduce((t, s) => t + k(s), 0n);
    return {
      sessions,
      complete: f.sessions === f.recent.length,
      total: f.sessions + tail,
      billedWh: f.billedWh + sum((s) => s.billedWh),
      amountWei: f.amountWei + sum((s) => s.amountWei),
    };
  }

  /** A member's whole history: its file's rows, then the tail's events that name it. */
  memberHistory(member: string): MemberHistory {
    const me = member.toLowerCase();
    if (this.memberCache?.version === this.version && this.memberCache.member === me)
      return this.memberCache.history;
    // The file's part changes only when a fold appends to it: parsed again only then.
    const length = this.folded.lengths.get(me) ?? 0;
    let rows = this.rowsCache;
    if (rows?.member !== me || rows.length !== length) {
      const events: IndexedEvent[] = [];
      const inputs = new Map<string, SettlementInput>();
      for (const r of this.readRows(me)) {
        events.push(r.e);
        if (r.i) inputs.set(r.i.txid, r.i);
      }
      rows = { member: me, length, events, inputs };
      this.rowsCache = rows;
    }
    const events = [...rows.events];
    const inputs = new Map(rows.inputs);
    for (const e of this.tail) {
      if (!membersOf(e).includes(me)) continue;
      events.push(e);
      const input = isSessionEnd(e) ? this.tailInputs.get(String(e.args.txid)) : undefined;
      if (input) inputs.set(input.txid, input);
    }
    const history = { events, inputs };
    // One member at a time (a page asks for its sessions, then its statement), and only for a
    // while: bounded by the largest member's own history, never the network's, and not held
    // once nobody looks.
    this.memberCache = { version: this.version, member: me, history };
    clearTimeout(this.forget);
    this.forget = setTimeout(() => {
      this.memberCache = undefined;
      this.rowsCache = undefined;
    }, MEMBER_CACHE_MS);
    this.forget.unref();
    return history;
  }

  private readRows(member: string): MemberRow[] {
    try {
      return this.files.read(member, this.folded.lengths.get(member) ?? 0);
    } catch (err) {
      if (!(err instanceof IndexDamaged)) throw err;
      // Rows lost (a power cut before the kernel wrote them): the next step starts over from the
      // chain (there, not here, so a read in flight never meets a half-cleared index).
      this.damaged = err.message;
      throw new Error(`the page's index was damaged (${err.message}): re-indexing from the chain`);
    }
  }

  /** A settled session's settling input, from the tail, or from its EV's (or `member`'s) rows. */
  settlementOf(txid: string, member?: string): { session: SessionView; input: SettlementInput } | undefined {
    const id = txid.toLowerCase();
    const session = this.derived().sessions.find((s) => s.txid === id);
    const tailInput = this.tailInputs.get(id);
    if (session && tailInput) return { session, input: tailInput };
    for (const who of [session?.ev, member]) {
      if (!who) continue;
      const h = this.memberHistory(who);
      const input = h.inputs.get(id);
      const mine = sessionsOf(h.events, h.inputs).find((s) => s.txid === id);
      if (input && mine) return { session: mine, input };
    }
    return undefined;
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

  /** Stops following the chain; what is folded and not yet in base.json is written now. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.forget);
    if (!this.baseDirty) return;
    try {
      this.saveBase();
    } catch (err) {
      // The next start resumes from the older base.json: only more to read again.
      this.opts.onError?.(err as Error);
    }
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
    if (!this.loaded) await this.load();
    if (this.damaged) {
      this.reset(this.damaged);
      this.damaged = undefined;
    }
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
      await this.maybeFold();
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
    const numbers = [...new Set([from, ...logs.map((l) => l.blockNumber), to])];
    const headers = await Promise.all(numbers.map((n) => provider.getBlock(n)));
    const byNumber = new Map(headers.map((h, i) => [numbers[i]!, h]));
    for (const log of logs) {
      if (byNumber.get(log.blockNumber)?.hash !== log.blockHash)
        throw new ReorgDuringRead(`block ${log.blockNumber} changed while it was read`);
    }
    // The range must continue the indexed chain: a reorg between two reads of one catch-up
    // (which the tip check at the start of a step cannot see) would otherwise join two forks,
    // and the older one's events would reach the member files once final.
    if (this.tip && from === this.tip.number + 1 && byNumber.get(from)?.parentHash !== this.tip.hash)
      throw new ReorgDuringRead(`block ${from} does not follow the indexed block ${this.tip.number}`);
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
      if (input) this.tailInputs.set(input.txid, { ...compactInput(input), block: e.block });
    }
    this.tail.push(...events);
    for (const h of headers) if (h?.hash) this.checkpoints.set(h.number, h.hash);
    this.tip = { number: to, hash: tipHeader.hash };
    // The fold's block stays: a reorg that does not reach it never touches what is folded.
    for (const n of this.checkpoints.keys())
      if (n < to - this.keepBlocks && n !== this.folded.block) this.checkpoints.delete(n);
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
    this.reorgs++;
    if (!fork) {
      // Deeper than every checkpoint, the fold's included: what is folded may be gone too.
      this.reset('chain reorganised deeper than the kept checkpoints');
      return;
    }
    // The fork is at or above the fold's block: only the tail (memory) holds anything above it.
    const keep = fork.number;
    this.tail = this.tail.filter((e) => e.block <= keep);
    for (const [txid, s] of this.tailInputs) if (s.block > keep) this.tailInputs.delete(txid);
    for (const n of this.checkpoints.keys()) if (n > keep) this.checkpoints.delete(n);
    this.tip = fork;
    this.version++;
    this.opts.onError?.(new Error(`chain reorganised: re-indexing from block ${keep + 1}`));
  }

  /** Forgets everything, in memory and on disk: the next step indexes from the deployment. */
  private reset(why: string): void {
    this.files.clear();
    this.baseDirty = false;
    this.folded = this.empty();
    this.tail = [];
    this.tailInputs.clear();
    this.checkpoints.clear();
    this.tip = undefined;
    this.memberCache = undefined;
    this.rowsCache = undefined;
    this.version++;
    this.opts.onError?.(new Error(`${why}: re-indexing from block ${this.opts.deployment.block}`));
  }

  /** Resumes from base.json if the node still has its block; else starts over, disk cleared. */
  private async load(): Promise<void> {
    const saved = this.files.readBase<SavedBase>();
    this.loaded = true;
    if (!saved) return;
    const ours =
      saved.format === 1 &&
      saved.chainId === this.chainId &&
      saved.address === this.address &&
      saved.hash !== '';
    const header = ours ? await this.opts.provider.getBlock(saved.block) : undefined;
    if (!ours || header?.hash !== saved.hash) {
      this.files.clear();
      return;
    }
    this.folded = {
      ...saved,
      tally: StationTally.fromJSON(saved.tally),
      lengths: new Map(saved.lengths),
    };
    this.checkpoints.set(saved.block, saved.hash);
    this.tip = { number: saved.block, hash: saved.hash };
    this.version++;
  }

  /**
   * Folds the tail's final events (more than `keepBlocks` below the tip) into the aggregates and
   * the member files, once there are `foldEvents` of them or `foldMs` has passed: one append per
   * member named, however many blocks it covers (and base.json at most every `baseMs`).
   */
  private async maybeFold(): Promise<void> {
    if (!this.tip) return;
    const upTo = this.tip.number - this.keepBlocks - 1;
    if (upTo <= this.folded.block) return;
    let n = 0;
    while (n < this.tail.length && this.tail[n]!.block <= upTo) n++;
    if (n === 0 || (n < this.foldEvents && Date.now() - this.lastFold < this.foldMs)) return;
    const [at, tip] = await Promise.all([
      this.opts.provider.getBlock(upTo),
      this.opts.provider.getBlock(this.tip.number),
    ]);
    // The fold's block must be an ancestor of what was indexed: the tip unchanged says so.
    if (!at?.hash || tip?.hash !== this.tip.hash) return;
    try {
      this.fold(n, upTo, at.hash);
    } catch (err) {
      if (err instanceof IndexDamaged) this.reset(err.message);
      else throw err;
    }
  }

  /** Writes base.json: the resume point of a restart (rows.ts says why it may lag the files). */
  private saveBase(): void {
    const f = this.folded;
    const saved: SavedBase = {
      ...f,
      format: 1,
      chainId: this.chainId,
      address: this.address,
      tally: f.tally.toJSON(),
      lengths: [...f.lengths],
    };
    this.files.writeBase(saved);
    this.baseWrittenAt = Date.now();
    this.baseDirty = false;
  }

  private fold(n: number, block: number, hash: string): void {
    const events = this.tail.slice(0, n);
    const f = this.folded;
    const byMember = new Map<string, MemberRow[]>();
    for (const e of events) {
      const input = isSessionEnd(e) ? this.tailInputs.get(String(e.args.txid)) : undefined;
      const { block: _b, ...i } = input ?? { block: 0 };
      const row: MemberRow = input ? { e, i: i as SettlementInput } : { e };
      for (const m of membersOf(e)) {
        const rows = byMember.get(m);
        if (rows) rows.push(row);
        else byMember.set(m, [row]);
      }
    }
    // The lengths change in memory only once every append went through: a failure half-way
    // leaves files longer than recorded, which the next append cuts back (rows.ts).
    const lengths = new Map(f.lengths);
    for (const [m, rows] of byMember) lengths.set(m, this.files.append(m, rows, f.lengths.get(m) ?? 0));
    const tally = f.tally.clone();
    let { sessions, billedWh, amountWei } = f;
    for (const e of events) {
      tally.apply(e);
      if (!isSessionEnd(e)) continue;
      sessions++;
      if (e.name !== 'SessionReleased') {
        billedWh += BigInt(e.args.energyWh as bigint);
        amountWei += BigInt(e.args.amountWei as bigint);
      }
    }
    const recent = sessionsOf(events, this.tailInputs, f.recent).reverse().slice(-this.recentSessions);
    const next: Folded = {
      block,
      hash,
      events: f.events + n,
      lastEventTime: events.at(-1)?.time ?? f.lastEventTime,
      sessions,
      billedWh,
      amountWei,
      tally,
      recent,
      lengths,
    };
    // Appended: now the memory may forget.
    this.folded = next;
    this.tail = this.tail.slice(n);
    for (const [txid, s] of this.tailInputs) if (s.block <= block) this.tailInputs.delete(txid);
    for (const c of this.checkpoints.keys()) if (c < block) this.checkpoints.delete(c);
    this.checkpoints.set(block, hash);
    this.lastFold = Date.now();
    this.version++;
    // base.json follows at most every `baseMs`: an older one is as good a resume point (the
    // files past its lengths are cut back and written again). Failing to write it costs a longer
    // catch-up after a restart, nothing else: tried again at the next fold and on stop().
    this.baseDirty = true;
    if (Date.now() - this.baseWrittenAt < this.baseMs) return;
    try {
      this.saveBase();
    } catch (err) {
      this.opts.onError?.(err as Error);
    }
  }
}
