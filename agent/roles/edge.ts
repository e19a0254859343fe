/**
 * The edge: the paper's server and smart billing system. Answers searches with stations ranked
 * by distance and mean rating, forms the mutual agreement (checking the EV's deposit covers the
 * cap), collects both signed reports, reconciles them, and puts the bills on the chain in batches.
 *
 * Bills are journaled at every step. A batch is marked `submitted` before it is sent; after a
 * crash the edge asks the chain which of those sessions settled and queues the rest again (the
 * contract settles a session at most once, so a resubmission can never bill twice).
 */
import { type BatchSender, type RawReceipt, TxRefused } from '../../contracts/batchsender.js';
import { isSettledState } from '../../contracts/client.js';
import {
  billWei,
  computeTxId,
  MEMBER_STATUS,
  type MessageInput,
  type MessageOf,
  PAYMENT_STATUS,
  REQUEST_STATUS,
  reportEnergyWh,
} from '../../protocol/index.js';
import type { Incoming } from '../core/bus.js';
import { isNetworkError } from '../core/chain.js';
import { crashPoint } from '../core/crash.js';
import { big } from '../core/json.js';
import type { RoleContext, RoleHandler } from '../core/context.js';
import { parseTerms, type TermsJson, termsFromJson, nonceOf } from '../core/session.js';
import { type RankedStation, rankStations, type Station, StationDirectory } from '../core/stations.js';
import { interimIndex } from './charging.js';
import { withinToleranceOf } from './settle.js';

/**
 * A chargeProvided whose station says nothing was delivered (docs/PROTOCOL.md: `z` in its
 * optional data, with 0 Wh): its meter read well and shows nothing, or the charger never switched on.
 */
function deliveredNothing(optional: unknown): boolean {
  return (optional as { z?: unknown } | undefined)?.z === 1;
}

export interface Bill {
  txid: string;
  ev: string;
  hcs: string;
  terms: TermsJson;
  evReport?: string;
  hcsReport?: string;
  /** The EV's consent (envelope hex) and where its reservation stands. */
  consent?: string;
  reservation?: 'queued' | 'submitted' | 'reserved' | 'refused';
  /** When a party announced the end of the charge (ms): the station is free from then on. */
  endedAt?: number;
  state: 'collecting' | 'queued' | 'submitted' | 'settled' | 'failed';
  disputed?: boolean;
  batchTx?: string;
  energyWh?: string;
  amountWei?: string;
  error?: string;
  createdAt: number;
  queuedAt?: number;
  submittedAt?: number;
  settledAt?: number;
}

/** A consent not yet sent in a reservation batch (also a bill whose reports came before it went). */
function awaitsReservation(b: Bill): boolean {
  return b.reservation === 'queued' && (b.state === 'collecting' || b.state === 'queued');
}

/** Stations not to suggest, asked one by one (EdgeRole.takenStations). */
interface Taken {
  has(hcs: string): boolean;
  add(hcs: string): void;
}

/** A bill's signed envelopes (hex), journaled apart from the bill (EdgeRole.save says why). */
const ENVELOPE_FIELDS = ['consent', 'evReport', 'hcsReport'] as const;
type EnvelopeField = (typeof ENVELOPE_FIELDS)[number];

/** A batch without a receipt this long is asked about on chain. */
const RECHECK_SUBMITTED_MS = 20_000;

/**
 * A batch transaction on its way, journaled (`x:<hash>`) before it is first sent: the signed bytes
 * are what is sent again after a failed send or a restart (the same nonce and hash: never signed
 * anew, contracts/batchsender.ts).
 */
export interface BatchRecord {
  kind: 'settle' | 'reserve';
  hash: string;
  nonce: string;
  raw: string;
  txids: string[];
  /** Settlement: `order[k]` is the index in `txids` of the k-th entry sent (sorted by station). */
  order?: number[];
  sentAt: number;
}

/**
 * How often a batch's receipt is asked for (the first asks soon: a node that mines at once has it
 * within milliseconds, and the stations wait, idle, for their reservations), and after how long
 * without one its bytes are sent again.
 */
const RECEIPT_POLL_MS = [20, 50, 100, 200] as const;
const REBROADCAST_MS = 10_000;

/** Settled bills kept in the journal for the status page; older ones are compacted away. */
export const KEEP_FINISHED = 500;

/**
 * How long the station at the top of a suggestion is held for the EV it was suggested to: long
 * enough for its request and the station's answer to come back, short enough that a car which
 * drove on does not block the station. Without it every car searching at once is sent to the
 * same nearest stations, and all but one per station pay a refused request for nothing.
 */
const HOLD_MS = 5000;

/** A car is given a hold at most once in this long. */
const HOLD_AGAIN_MS = 3 * HOLD_MS;

/** Searches kept waiting for a station at most; beyond, the oldest is forgotten (its EV times out). */
const MAX_WAITING = 1000;

/** Batches whose receipts are awaited at once. */
const MAX_BATCHES_IN_FLIGHT = 4;

/**
 * Gas limit of a settlement batch: a bound well above what a bill costs (~24,000 in a full batch,
 * ~75,000 for the first session of a new bitmap word; docs/BENCHMARKS.md) plus the transaction's.
 */
const BATCH_BASE_GAS = 200_000n;
const BATCH_GAS_PER_BILL = 100_000n;

/**
 * Beyond the two reply times an offer waits for the EV's consent: how late the consent may still
 * reach the edge (a busy broker, a queue) before the station counts as free again.
 */
const CONSENT_SLACK_MS = 10_000;

/** A bill whose reports never both came is given up this long after its settlement window. */
const COLLECT_GRACE_S = 60;

/** Whether a batch may take `b` now: queued, and its reservation not still on this edge's way. */
function readyForBatch(b: Bill): boolean {
  return b.state === 'queued' && b.reservation !== 'queued' && b.reservation !== 'submitted';
}

export class EdgeRole implements RoleHandler {
  private readonly stations: StationDirectory;
  private readonly bills = new Map<string, Bill>();
  /** The envelopes journaled (`e:<txid>:<field>`), by txid: each is written once. */
  private readonly envelopesJournaled = new Map<string, Partial<Record<EnvelopeField, string>>>();
  /** Stations held for the EV they were just suggested to, until a time (ms). */
  private readonly holds = new Map<string, { ev: string; until: number }>();
  /**
   * When each EV was last given a hold (ms), and the station: a member searching again and again
   * must not keep every station held (an EV holds at most one station: the last one given).
   */
  private readonly lastHold = new Map<string, { at: number; hcs: string }>();
  /** Searches that found every station near them taken, by EV (insertion order: first come). */
  private readonly waiting = new Map<string, { search: MessageOf<'search'>; until: number }>();
  /** Batches on their way to the chain (sent one at a time, their receipts awaited together). */
  private readonly inFlight = new Set<Promise<void>>();
  /** Agreements waiting for their EV's deposit read (by txid; their promises), and the reads (by EV). */
  private readonly agreeing = new Map<string, Promise<void>>();
  private readonly depositReads = new Map<string, Promise<bigint>>();
  /**
   * Bills whose station is charging, by station (kept as they change: takenStations ran over every
   * bill per search, and then over every charging bill: up to 15 a station in bench:edge).
   */
  private readonly charging = new Map<string, Set<string>>();
  /**
   * Until when (ms) each station with charging bills counts as taken: the latest of its bills'
   * `takenUntil`. Kept as the bills change: computing it per search over every charging bill, and
   * every hold, was the edge's largest cost after the signatures (bench:edge).
   */
  private readonly busyUntil = new Map<string, number>();
  /** Bills queued for the chain (kept as they change: counting them on every save cost O(bills)). */
  private readonly queued = new Set<string>();
  /**
   * The queued bills a batch may take now: their reservation is on chain (or not this edge's to
   * wait for). Kept as bills change: with hundreds queued behind a reservation batch, looking at
   * every queued bill on every report to find none ready was ~2 % of the edge's CPU (bench:edge).
   */
  private readonly ready = new Set<string>();
  private finishedSincePrune = 0;
  /** Bills whose consent waits for a reservation batch (kept as they change, as `queued`). */
  private readonly toReserve = new Set<string>();
  /** The reservations on their way to the chain, if any. */
  private reserving: Promise<void> | undefined;
  /** Batch transactions not yet mined (journaled), and those whose receipt is being awaited. */
  private readonly records = new Map<string, BatchRecord>();
  private readonly following = new Set<string>();
  /** Signing and sending, one transaction at a time (contracts/batchsender.ts says why). */
  private sendQueue: Promise<unknown> = Promise.resolve();
  private sender: Promise<BatchSender> | undefined;
  private stopping = false;
  readonly figures = { batches: 0, settled: 0, failed: 0, gasUsed: 0n };

  constructor(private readonly agent: RoleContext) {
    // Registrations and ratings change slowly; busy stations are filtered per search below.
    this.stations = new StationDirectory(agent.chain, 15_000);
    // The envelopes first (journaled apart from their bills: see save), then each bill with its own.
    const envelopes = new Map<string, Partial<Pick<Bill, EnvelopeField>>>();
    for (const [key, hex] of agent.journal.list<string>('e:')) {
      const [, txid = '', field = ''] = key.split(':');
      if (!(ENVELOPE_FIELDS as readonly string[]).includes(field)) continue;
      envelopes.set(txid, { ...envelopes.get(txid), [field]: hex });
    }
    for (const [, stored] of agent.journal.list<Bill>('b:')) {
      // A bill journaled whole (before envelopes were kept apart) keeps the envelopes it holds.
      const b: Bill = { ...envelopes.get(stored.txid), ...stored };
      const journaled = envelopes.get(stored.txid);
      if (journaled) this.envelopesJournaled.set(b.txid, journaled);
      this.bills.set(b.txid, b);
      if (b.state === 'queued') this.queued.add(b.txid);
      if (awaitsReservation(b)) this.toReserve.add(b.txid);
      if (readyForBatch(b)) this.ready.add(b.txid);
      this.trackCharging(b);
    }
    for (const [, r] of agent.journal.list<BatchRecord>('x:')) this.records.set(r.hash, r);
  }

  /** The raw sender, opened once, its nonce past every journaled batch's. */
  private batchSender(): Promise<BatchSender> {
    const opened =
      this.sender ??
      this.agent.chain
        .openBatchSender([...this.records.values()].map((r) => BigInt(r.nonce)))
        .catch((err: unknown) => {
          this.sender = undefined;
          throw err;
        });
    this.sender = opened;
    return opened;
  }

  /**
   * Keeps `charging` and `busyUntil` up to date: the bills whose station charges under this edge's
   * agreement. `b` is the bill's new version (not yet in `bills`).
   */
  private trackCharging(b: Bill): void {
    const at = this.charging.get(b.hcs);
    if (b.state === 'collecting' && !b.hcsReport && !b.endedAt) {
      if (at) at.add(b.txid);
      else this.charging.set(b.hcs, new Set([b.txid]));
    } else if (!at?.delete(b.txid)) return;
    let until = Number.NEGATIVE_INFINITY;
    for (const txid of this.charging.get(b.hcs) ?? []) {
      const bill = txid === b.txid ? b : this.bills.get(txid);
      if (bill) until = Math.max(until, this.takenUntil(bill));
    }
    if (until === Number.NEGATIVE_INFINITY) {
      this.charging.delete(b.hcs);
      this.busyUntil.delete(b.hcs);
    } else this.busyUntil.set(b.hcs, until);
  }

  /**
   * Until when (ms, wall clock) a charging bill keeps its station taken: its settlement window; but
   * without the EV's consent an agreement starts no charge once both sides' waits are over (the
   * station drops an offer two reply times after making it): a driver who declined the terms, or a
   * mutual lost with a broker, must not keep the station from every car until settleBy.
   */
  private takenUntil(b: Bill): number {
    const windowEnd = b.terms.settleBy * 1000;
    if (b.consent !== undefined) return windowEnd;
    // Taken while the consent has not lapsed (consentLapsed: more than the wait after createdAt).
    return Math.min(windowEnd, b.createdAt + 2 * this.agent.cfg.timeouts.replyMs + CONSENT_SLACK_MS + 1);
  }

  /**
   * Journals a bill: staged (agent/core/journal.ts), on disk before anything that depends on it is
   * sent (the bus flushes first) and before a batch holding it is (dispatch's `put` flushes).
   */
  private save(b: Bill): void {
    // The signed envelopes (~1 kB of hex a bill) are journaled once each, under `e:<txid>:<field>`,
    // not again with each of the bill's ~9 changes: that was most of the edge's journal bytes, and
    // each byte written was rewritten again by the compactions (bench:edge).
    const { consent, evReport, hcsReport, ...rest } = b;
    if (consent !== undefined) this.saveEnvelope(b.txid, 'consent', consent);
    if (evReport !== undefined) this.saveEnvelope(b.txid, 'evReport', evReport);
    if (hcsReport !== undefined) this.saveEnvelope(b.txid, 'hcsReport', hcsReport);
    this.agent.journal.stage(`b:${b.txid}`, rest);
    this.trackCharging(b);
    const before = this.bills.get(b.txid)?.state;
    this.bills.set(b.txid, b);
    if (awaitsReservation(b)) this.toReserve.add(b.txid);
    else this.toReserve.delete(b.txid);
    if (before !== b.state) {
      if (b.state === 'queued') this.queued.add(b.txid);
      else this.queued.delete(b.txid);
      this.agent.metrics.billsQueued.set(this.queued.size);
    }
    if (readyForBatch(b)) this.ready.add(b.txid);
    else this.ready.delete(b.txid);
  }

  /** Journals a bill's envelope unless that same envelope is journaled already. */
  private saveEnvelope(txid: string, field: EnvelopeField, hex: string): void {
    let journaled = this.envelopesJournaled.get(txid);
    if (journaled?.[field] === hex) return;
    this.agent.journal.stage(`e:${txid}:${field}`, hex);
    if (!journaled) {
      journaled = {};
      this.envelopesJournaled.set(txid, journaled);
    }
    journaled[field] = hex;
  }

  async resume(): Promise<void> {
    // Reservations sent without a journaled transaction never left: they are queued again (a
    // reservation the chain already holds comes back SeqUsed, which counts as reserved).
    const reserving = new Set(
      [...this.records.values()].flatMap((r) => (r.kind === 'reserve' ? r.txids : [])),
    );
    for (const b of this.bills.values())
      if (b.reservation === 'submitted' && !reserving.has(b.txid)) this.save({ ...b, reservation: 'queued' });
    // Journaled batches: their receipts, or their same bytes sent again.
    for (const r of this.records.values()) this.follow(r, true);
    await this.recheckSubmitted(0);
    // The station directory read now, behind everything: not by the first search, which would
    // wait for every station's reads (and the searches queued behind it).
    void this.stations.list().catch(() => {});
  }

  /**
   * Bills sent in a batch whose receipt never came (a crash, or the node went away after the send):
   * after `olderThanMs` the chain says which settled; the others are queued again (the contract
   * settles a session at most once, so a resubmission cannot bill twice).
   */
  private async recheckSubmitted(olderThanMs: number): Promise<void> {
    for (const b of this.bills.values()) {
      if (b.state !== 'submitted' || Date.now() - (b.submittedAt ?? 0) < olderThanMs) continue;
      // A journaled batch holds it: that batch's receipt (or its resend) decides.
      if (b.batchTx && this.records.has(b.batchTx)) continue;
      const state = await this.agent.chain.retry('sessionState', () =>
        this.agent.chain.client.sessionState(b.hcs, big(b.terms.seq)),
      );
      if (isSettledState(state)) {
        this.agent.log.info({ txid: b.txid }, 'bill found settled on chain');
        await this.finish(b, 'settled');
      } else {
        this.agent.log.info({ txid: b.txid }, 'bill not on chain; queued again');
        this.save({ ...b, state: 'queued', queuedAt: Date.now() });
      }
    }
  }

  async onMessage({ msg, signer, envelope }: Incoming): Promise<void> {
    const me = this.agent.address;
    switch (msg.type) {
      case 'search': {
        if (msg.server !== me) return;
        this.waiting.delete(signer);
        const stations = await this.stations.list();
        if (await this.suggest(signer, msg, stations, this.takenStations(signer))) return;
        if (rankStations(stations, msg, 1).length === 0) {
          // Nothing in the radius at all: say so now (an empty suggestion), waiting cannot help.
          await this.sendSuggestion(signer, msg, []);
          return;
        }
        // Every station near the car is taken: answer as soon as one frees (first come, first
        // served), rather than have every car search again and again.
        this.waiting.set(signer, {
          search: msg,
          until: performance.now() + this.agent.cfg.timeouts.replyMs - 1000,
        });
        if (this.waiting.size > MAX_WAITING) {
          const [oldest] = this.waiting.keys();
          if (oldest !== undefined) this.waiting.delete(oldest);
        }
        return;
      }
      case 'response':
        if (msg.status === REQUEST_STATUS.accept) this.agree(msg, signer);
        return;
      case 'chargeReceived':
      case 'chargeProvided': {
        const b = this.bills.get(msg.txid);
        const index = msg.type === 'chargeReceived' ? interimIndex(msg.optional) : undefined;
        if (b?.state !== 'collecting') {
          // A consent after the agreement was closed without one: the station has moved on (it
          // dropped the offer two reply times after making it), so it is not reserved.
          if (b?.state === 'failed' && !b.consent && index === 0 && signer === b.ev)
            this.agent.log.info(
              { txid: b.txid, closed: b.error },
              'consent after the agreement closed: not reserved',
            );
          return;
        }
        const hex = Buffer.from(envelope).toString('hex');
        if (msg.type === 'chargeReceived' && signer === b.ev && index !== undefined) {
          // The EV's consent (receipt 0) is queued for the next reservation batch; the interim
          // receipts that follow are the station's business (it settles a disagreement itself).
          if (index === 0 && !b.consent) {
            this.save({ ...b, consent: hex, reservation: 'queued' });
            // At once when no reservation batch is on its way (the station waits for it, idle);
            // consents that come meanwhile go together as soon as that batch is mined.
            this.reserveQueued();
          }
          return;
        }
        if (msg.type === 'chargeReceived' && signer === b.ev) {
          b.evReport = hex;
          // The car's final report: its charge is over (it sends no termination to the edge),
          // as a completion or termination from either side says (below).
          b.endedAt ??= Date.now();
        } else if (msg.type === 'chargeProvided' && signer === b.hcs) b.hcsReport = hex;
        else return;
        if (b.evReport && b.hcsReport) await this.reconcile(b, b.evReport, b.hcsReport);
        else if (msg.type === 'chargeProvided' && msg.energyWh === 0n && deliveredNothing(msg.optional))
          await this.nothingDelivered(b, hex);
        else this.save(b);
        // Either final report means the charge is over: the station is free for a waiting car.
        await this.serveWaiting();
        return;
      }
      case 'reqAuthInfo':
      case 'registration': {
        const subject = msg.type === 'reqAuthInfo' ? msg.subject : msg.member;
        const info = await this.agent.chain.retry('authInfo', () =>
          this.agent.chain.client.authInfo(subject),
        );
        await this.agent.send(signer, {
          type: 'verification',
          status: Math.min(info.status, MEMBER_STATUS.revoked),
          server: me,
          requester: signer,
          subject,
          role: info.role,
          nonce: msg.type === 'reqAuthInfo' ? msg.nonce : 0n,
        });
        return;
      }
      case 'completion':
      case 'termination': {
        // Either side announced the end of the charge (a car may stop before the station ever
        // switched on, and the station then never reports): the station is free for a waiting car.
        const b = this.bills.get(msg.txid);
        if (b?.state !== 'collecting' || (signer !== b.ev && signer !== b.hcs) || b.endedAt) return;
        this.save({ ...b, endedAt: Date.now() });
        await this.serveWaiting();
        return;
      }
      case 'rating':
        this.agent.log.info({ txid: msg.txid, rating: msg.rating, comment: msg.comment }, 'rating received');
        return;
      default:
        return;
    }
  }

  /**
   * Stations not to suggest to `ev`: those charging under an agreement this edge formed (until
   * the station's report says the charge is over, or the window has passed, or the consent's wait:
   * takenUntil), and those held for another car (any car's hold, without `ev`). Suggesting them
   * only costs a refused request. Asked station by station (a search asks about the stations near
   * it), as of now; `add` takes a station for the rest of this answer.
   */
  private takenStations(ev?: string): Taken {
    const now = Date.now();
    // Holds are on the monotonic clock: a wall-clock step must not stretch one by the step.
    const mono = performance.now();
    const added = new Set<string>();
    return {
      has: (hcs) => {
        if (added.has(hcs) || (this.busyUntil.get(hcs) ?? Number.NEGATIVE_INFINITY) > now) return true;
        const hold = this.holds.get(hcs);
        if (!hold) return false;
        if (hold.until < mono) {
          this.holds.delete(hcs);
          return false;
        }
        return hold.ev !== ev;
      },
      add: (hcs) => void added.add(hcs),
    };
  }

  /**
   * Whether the EV's consent can no longer come for `b`: two reply times + CONSENT_SLACK_MS after
   * the agreement, the station has dropped its offer (it waits two reply times from the offer).
   */
  private consentLapsed(b: Bill, now: number): boolean {
    return (
      b.consent === undefined && now - b.createdAt > 2 * this.agent.cfg.timeouts.replyMs + CONSENT_SLACK_MS
    );
  }

  /** Suggests the best free stations to `ev` and holds the first one for it; false if none is free. */
  private async suggest(
    ev: string,
    search: MessageOf<'search'>,
    stations: Station[],
    taken: Taken,
  ): Promise<boolean> {
    const ranked = rankStations(stations, search, this.agent.cfg.edge.suggestions, (hcs) => taken.has(hcs));
    if (!ranked[0]) return false;
    // The car will ask the first one first: hold it for this car for a moment; but one hold per
    // car per HOLD_AGAIN_MS, so that a member's repeated searches cannot keep stations from others.
    const now = performance.now();
    const last = this.lastHold.get(ev);
    if (now - (last?.at ?? Number.NEGATIVE_INFINITY) > HOLD_AGAIN_MS) {
      // Its hold before (if another car's hold has not replaced it) goes: one hold per car.
      if (last && this.holds.get(last.hcs)?.ev === ev) this.holds.delete(last.hcs);
      this.holds.set(ranked[0].hcs, { ev, until: now + HOLD_MS });
      this.lastHold.delete(ev);
      this.lastHold.set(ev, { at: now, hcs: ranked[0].hcs });
      const oldest = this.lastHold.size > 4096 ? this.lastHold.keys().next().value : undefined;
      if (oldest !== undefined) this.lastHold.delete(oldest);
      taken.add(ranked[0].hcs);
    }
    await this.sendSuggestion(ev, search, ranked);
    return true;
  }

  private async sendSuggestion(
    ev: string,
    search: MessageOf<'search'>,
    ranked: RankedStation[],
  ): Promise<void> {
    await this.agent.send(ev, {
      type: 'suggestion',
      server: this.agent.address,
      requester: ev,
      stations: ranked.map((r) => ({
        hcs: r.hcs,
        distanceM: Math.min(r.distanceM, 2 ** 32 - 1),
        meanRating: r.meanRating,
        priceWeiPerKWh: r.priceWeiPerKWh,
      })),
      // Echo the search's nonce: ties the answer to the question (and two answers listing the
      // same stations are still two messages, not a replay).
      ...nonceOf(search.optional),
    });
  }

  /** Answers the waiting searches, oldest first, while stations are free. */
  private async serveWaiting(): Promise<void> {
    if (this.waiting.size === 0) return;
    const now = performance.now();
    const taken = this.takenStations();
    // The free stations, once: with every station busy, a thousand waiting searches each ranking
    // every station on every freed one was the edge's largest cost (bench:edge).
    let free = (await this.stations.list()).filter((st) => !taken.has(st.hcs));
    for (const [ev, w] of this.waiting) {
      if (free.length === 0) return;
      if (w.until < now) this.waiting.delete(ev);
      else if (await this.suggest(ev, w.search, free, taken)) {
        this.waiting.delete(ev);
        if (free.some((st) => taken.has(st.hcs))) free = free.filter((st) => !taken.has(st.hcs));
      }
    }
  }

  /**
   * An HCS accepted a request: check the EV can pay for the cap, then send the mutual agreement.
   * The deposit is read beside the agent's lock, and the agreement formed under it once the read
   * is back: a round trip to the chain node per agreement, awaited in the message handler, held
   * every message behind it and bounded the edge to a few dozen agreements a second
   * (docs/BENCHMARKS.md, bench:edge). Reads made together go to the node as one JSON-RPC batch,
   * and agreements of one EV in flight together share one read.
   */
  private agree(msg: MessageOf<'response'>, hcs: string): void {
    const terms = parseTerms(msg.optional);
    if (typeof terms === 'string') return void this.agent.log.warn({ hcs, problem: terms }, 'unusable terms');
    const ev = msg.receiver;
    const t = termsFromJson(ev, hcs, terms);
    const txid = computeTxId(t, this.agent.chain.domain);
    if (this.bills.has(txid) || this.agreeing.has(txid)) return;
    const agreement = this.depositOf(ev)
      .then((available) =>
        this.agent.exclusive(async () => {
          if (this.bills.has(txid)) return;
          if (available < billWei(t.maxEnergyWh, t.priceWeiPerKWh)) {
            this.agent.log.warn(
              { ev, hcs, available: available.toString() },
              'deposit does not cover the cap; no agreement',
            );
            return;
          }
          this.holds.delete(hcs);
          // The car used what it was given: its next search (its next charge) may hold a station
          // at once. Only a car that searches without agreeing waits HOLD_AGAIN_MS for another.
          this.lastHold.delete(ev);
          this.save({ txid, ev, hcs, terms, state: 'collecting', createdAt: Date.now() });
          const mutual = {
            type: 'mutual',
            server: this.agent.address,
            ev,
            hcs,
            txid,
            optional: terms,
          } as const;
          await this.agent.send([ev, hcs], mutual);
        }),
      )
      .catch((err) =>
        this.agent.log.warn({ ev, hcs, err: (err as Error).message }, 'deposit not readable; no agreement'),
      )
      .finally(() => this.agreeing.delete(txid));
    this.agreeing.set(txid, agreement);
  }

  /** Waits for the agreements whose deposit reads are under way (tests; a graceful stop). */
  async agreements(): Promise<void> {
    await Promise.all([...this.agreeing.values()]);
  }

  /** The EV's available deposit; one read at a time per EV, shared by whoever asks meanwhile. */
  private depositOf(ev: string): Promise<bigint> {
    let read = this.depositReads.get(ev);
    if (!read) {
      read = this.agent.chain
        .retry('availableDeposit', () => this.agent.chain.client.availableDeposit(ev))
        .finally(() => this.depositReads.delete(ev));
      this.depositReads.set(ev, read);
    }
    return read;
  }

  /**
   * The station reports that nothing was delivered (0 Wh, marked `z`: its meter read well and
   * shows nothing, or its charger never switched on) and the EV's final report is not here:
   * nothing will be billed whatever the EV says (the contract never bills above the station's
   * figure). A 0 Wh report without the mark (a meter that failed: energy may have flowed) waits
   * for the EV's report as any other, whose figure the chain then records beside it.
   * With the EV's consent, its signed receipt for 0 Wh, the bill is complete: queued at 0 Wh, it
   * settles once its reservation is on chain and frees the station's ring slot, which a
   * reservation left standing held until settleBy (one in 16 of the station's later sessions
   * refused `TooManyOpenReservations`). The station closes it too if it can; whichever is second
   * gets `AlreadySettled`, done for both. Without a consent the station dropped the offer before
   * the EV agreed: the agreement is closed, and a consent that still comes is not reserved.
   */
  private async nothingDelivered(b: Bill, hcsReport: string): Promise<void> {
    if (!b.consent) {
      this.save({
        ...b,
        state: 'failed',
        settledAt: Date.now(),
        error: 'the station dropped the offer before the EV consented',
      });
      this.finished();
      return;
    }
    // A reservation the chain refused us: the station reserved it itself, or nobody did; it
    // closes its own (settle.ts); a bill here would only meet NotReserved.
    if (b.reservation === 'refused') return this.save(b);
    await this.reconcile({ ...b, evReport: b.consent }, b.consent, hcsReport);
  }

  /** Both reports are in: decide the bill, tell both parties, and queue it for the chain. */
  private async reconcile(b: Bill, evReport: string, hcsReport: string): Promise<void> {
    const evWh = reportEnergyWh(evReport);
    const hcsWh = reportEnergyWh(hcsReport);
    const agreed = withinToleranceOf(this.agent.chain.deployment, evWh, hcsWh);
    // The contract's rule: the station's meter (capped) inside the tolerance; outside it only the
    // station itself may settle, for what the EV acknowledged (its highest receipt, which the
    // station holds): that bill is left to the station.
    const cap = BigInt(b.terms.maxWh);
    const billed = agreed ? (hcsWh < cap ? hcsWh : cap) : evWh < hcsWh ? evWh : hcsWh;
    const amount = billWei(billed, big(b.terms.price));
    this.save({
      ...b,
      state: agreed ? 'queued' : 'failed',
      disputed: !agreed,
      energyWh: billed.toString(),
      amountWei: amount.toString(),
      queuedAt: Date.now(),
      ...(agreed ? {} : { error: 'outside the tolerance: left to the station, which alone may settle it' }),
    });
    const note = {
      type: 'amount',
      server: this.agent.address,
      txid: b.txid,
      sender: b.ev,
      receiver: b.hcs,
      amountWei: amount,
      paymentStatus: agreed ? PAYMENT_STATUS.pending : PAYMENT_STATUS.disputed,
    } as const;
    // Sent once: a note; the transaction that follows is what is resent until acknowledged.
    await this.agent.send([b.ev, b.hcs], note);
    // A full batch goes at once, not at the next tick.
    if (this.ready.size >= this.agent.cfg.edge.batchSize) this.submitQueued();
  }

  async tick(): Promise<void> {
    for (const r of this.records.values()) if (!this.following.has(r.hash)) this.follow(r, false);
    this.giveUpUncollected();
    this.reserveQueued();
    await this.serveWaiting();
    // A batch still on its way is not "stale": bills are rechecked only with none in flight.
    if (this.inFlight.size === 0) await this.recheckSubmitted(RECHECK_SUBMITTED_MS);
    this.submitQueued();
  }

  /**
   * Sends the queued bills in batches: a full batch at once, a partial one when its oldest bill
   * has waited `batchMaxWaitMs`; up to MAX_BATCHES_IN_FLIGHT whose receipts are awaited together
   * (one at a time, the chain's round trip bounded the edge to one batch per receipt). Each batch
   * goes out of the agent's lock, its bills journaled `submitted` before the first await: waiting
   * for a block must not hold up the searches and agreements queued behind it.
   */
  private submitQueued(): void {
    const { batchSize, batchMaxWaitMs } = this.agent.cfg.edge;
    while (this.inFlight.size < MAX_BATCHES_IN_FLIGHT && this.ready.size > 0) {
      // Not before the EV's reservation is on chain (the contract refuses a bill it has not seen
      // reserved): this edge's own reservation batch may still be on its way. The ready bills
      // only, kept as they change (every bill, then every queued one, on every report, cost ~1–2 %
      // of the edge's CPU); the first batch of them, or all (fewer) to find the oldest.
      const batch: Bill[] = [];
      let oldest = Number.POSITIVE_INFINITY;
      for (const txid of this.ready) {
        const b = this.bills.get(txid);
        if (!b) continue;
        batch.push(b);
        oldest = Math.min(oldest, b.queuedAt ?? 0);
        if (batch.length >= batchSize) break;
      }
      if (batch.length === 0) return;
      if (batch.length < batchSize && Date.now() - oldest < batchMaxWaitMs) return;
      // submitBatch journals them `submitted` before its first await: the next batch cannot take them.
      const run: Promise<void> = this.submitBatch(batch)
        .catch((err) =>
          this.agent.log.error({ err }, 'batch submission failed; the bills wait in the journal'),
        )
        .finally(() => {
          this.inFlight.delete(run);
          // What queued up meanwhile goes next, under the agent's lock like everything else.
          if (this.ready.size >= batchSize) void this.agent.exclusive(async () => this.submitQueued());
        });
      this.inFlight.add(run);
    }
  }

  /** Waits for the batches on their way to the chain (a graceful stop; the flush action). */
  async stop(): Promise<void> {
    await this.agreements();
    this.stopping = true;
    await Promise.all([...this.inFlight]);
    await this.reserving;
  }

  /**
   * The consents waiting for their reservation, in one transaction: sent as soon as a consent
   * comes and none is on its way, else as soon as the one on its way is mined (the stations wait
   * for it, idle, before they switch on: no waiting for a fuller batch).
   */
  private reserveQueued(): void {
    if (this.reserving || this.toReserve.size === 0) return;
    const bills: Bill[] = [];
    // At most a batch's worth: a thousand consents in one transaction passed the block's gas
    // limit and the node refused the whole batch (bench:edge); the rest go when it is back.
    for (const txid of this.toReserve) {
      const b = this.bills.get(txid);
      if (b) bills.push(b);
      if (bills.length >= this.agent.cfg.edge.batchSize) break;
    }
    if (bills.length === 0) return;
    for (const b of bills) this.save({ ...b, reservation: 'submitted' });
    const entries = bills.map((b) => ({
      terms: termsFromJson(b.ev, b.hcs, b.terms),
      evConsent: `0x${b.consent ?? ''}`,
    }));
    this.reserving = (async () => {
      let record: BatchRecord;
      try {
        record = await this.dispatch(
          'reserve',
          bills.map((b) => b.txid),
          this.agent.chain.client.reserveBatchCalldata(entries),
          // A bound instead of the node's estimate, as for settlement batches.
          BATCH_BASE_GAS + BATCH_GAS_PER_BILL * BigInt(entries.length),
        );
        crashPoint('after-reserve-submit', this.agent.cfg.dataDir);
      } catch (err) {
        this.agent.log.warn(
          { err: (err as Error).message },
          'reservation batch not sent; the stations reserve themselves',
        );
        for (const b of bills) this.save({ ...(this.bills.get(b.txid) ?? b), reservation: 'refused' });
        return;
      }
      await this.follow(record, false);
    })().finally(() => {
      this.reserving = undefined;
      // The bills this reservation held back may go now, and the consents that queued meanwhile.
      void this.agent.exclusive(async () => {
        this.reserveQueued();
        this.submitQueued();
      });
    });
  }

  /**
   * The station's word that its session's reservation is on chain (docs/PROTOCOL.md): a
   * `transaction` at `pending`, sent once, not acknowledged. The station reads the chain at once
   * instead of at its next tick (once a second while it waits), and switches on only on what the
   * chain says; a notice lost or late costs it no more than that tick.
   */
  private async tellReserved(b: Bill): Promise<void> {
    await this.agent.send(b.hcs, {
      type: 'transaction',
      txid: b.txid,
      sender: b.ev,
      receiver: b.hcs,
      amountWei: 0n,
      paymentStatus: PAYMENT_STATUS.pending,
      rating: 0,
      comment: '',
    });
  }

  /** A bill as the contract takes it (a queued bill holds both reports). */
  private entry(b: Bill) {
    return {
      terms: termsFromJson(b.ev, b.hcs, b.terms),
      evReport: `0x${b.evReport}`,
      hcsReport: `0x${b.hcsReport}`,
    };
  }

  private async submitBatch(bills: Bill[]): Promise<void> {
    for (const b of bills) this.save({ ...b, state: 'submitted', submittedAt: Date.now() });
    let record: BatchRecord;
    try {
      const { data, order } = this.agent.chain.client.settleBatchCalldata(bills.map((b) => this.entry(b)));
      // A gas bound instead of the node's estimate (contracts/client.ts says why).
      record = await this.dispatch(
        'settle',
        bills.map((b) => b.txid),
        data,
        BATCH_BASE_GAS + BATCH_GAS_PER_BILL * BigInt(bills.length),
        order,
      );
    } catch (err) {
      this.agent.log.error(
        { err: (err as Error).message, bills: bills.length },
        isNetworkError(err) ? 'chain unreachable; bills wait in the journal' : 'batch refused; queued again',
      );
      for (const b of bills)
        this.save({ ...(this.bills.get(b.txid) ?? b), state: 'queued', queuedAt: Date.now() });
      return;
    }
    for (const b of bills) this.save({ ...(this.bills.get(b.txid) ?? b), batchTx: record.hash });
    // On disk now, once a batch: after a restart the batch's receipt decides for these bills.
    this.agent.journal.flush();
    crashPoint('after-submit', this.agent.cfg.dataDir);
    await this.follow(record, false);
  }

  /**
   * Signs a batch with the next nonce, journals it, and sends it; one at a time. Throws when it
   * was not sent and never will be (nothing journaled then): the caller queues its entries again.
   * A send that failed for the network leaves the batch journaled: its bytes are sent again.
   */
  private dispatch(
    kind: BatchRecord['kind'],
    txids: string[],
    data: Uint8Array,
    gasLimit: bigint,
    order?: number[],
  ): Promise<BatchRecord> {
    const run = async (): Promise<BatchRecord> => {
      const sender = await this.batchSender();
      const tx = await sender.sign(this.agent.chain.client.address, data, gasLimit);
      const record: BatchRecord = {
        kind,
        hash: tx.hash,
        nonce: tx.nonce.toString(),
        raw: tx.raw,
        txids,
        ...(order ? { order } : {}),
        sentAt: Date.now(),
      };
      this.agent.journal.put(`x:${tx.hash}`, record);
      this.records.set(tx.hash, record);
      crashPoint('before-broadcast', this.agent.cfg.dataDir);
      try {
        await sender.broadcast(tx);
      } catch (err) {
        if (!(err instanceof TxRefused)) {
          this.agent.log.warn(
            { tx: tx.hash, nonce: record.nonce, err: (err as Error).message },
            'batch not sent (the node is away); its bytes are sent again',
          );
          return record;
        }
        this.forgetRecord(record);
        await sender.refused(tx, err.nonceUsed).catch(() => {});
        throw err;
      }
      return record;
    };
    const next = this.sendQueue.then(run, run);
    this.sendQueue = next.catch(() => {});
    return next;
  }

  private forgetRecord(r: BatchRecord): void {
    this.records.delete(r.hash);
    this.agent.journal.delete(`x:${r.hash}`);
  }

  /**
   * Waits (up to RECHECK_SUBMITTED_MS) for a journaled batch's receipt, sending its bytes again
   * when it is long without one (`now`: at once, after a restart), and applies its outcome. Left
   * for the next tick when nothing came.
   */
  private follow(r: BatchRecord, now: boolean): Promise<void> {
    if (this.following.has(r.hash)) return Promise.resolve();
    this.following.add(r.hash);
    const run: Promise<void> = this.awaitReceipt(r, now)
      .then((receipt) =>
        receipt === 'pending' ? undefined : this.agent.exclusive(() => this.applied(r, receipt)),
      )
      .catch((err) =>
        this.agent.log.warn({ tx: r.hash, err: (err as Error).message }, 'batch outcome not read'),
      )
      .finally(() => {
        this.following.delete(r.hash);
        this.inFlight.delete(run);
      });
    this.inFlight.add(run);
    return run;
  }

  /** The receipt; 'dropped' when the batch's nonce went to another transaction; 'pending' for later. */
  private async awaitReceipt(r: BatchRecord, now: boolean): Promise<RawReceipt | 'dropped' | 'pending'> {
    const sender = await this.batchSender();
    const tx = { raw: r.raw, hash: r.hash, nonce: BigInt(r.nonce) };
    const started = Date.now();
    let sentAt = now ? 0 : r.sentAt;
    let polls = 0;
    for (;;) {
      const receipt = await sender.receipt(r.hash).catch((err) => {
        if (isNetworkError(err)) return undefined;
        throw err;
      });
      if (receipt) return receipt;
      if (Date.now() - sentAt >= REBROADCAST_MS) {
        sentAt = Date.now();
        try {
          await sender.broadcast(tx);
        } catch (err) {
          if (err instanceof TxRefused && err.nonceUsed) {
            // Mined meanwhile, or its nonce went to another transaction of this account.
            const again = await sender.receipt(r.hash);
            return again ?? 'dropped';
          }
          this.agent.log.warn({ tx: r.hash, err: (err as Error).message }, 'batch not sent again yet');
        }
      }
      if (this.stopping || Date.now() - started >= RECHECK_SUBMITTED_MS) return 'pending';
      const wait = RECEIPT_POLL_MS[Math.min(polls++, RECEIPT_POLL_MS.length - 1)];
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** A batch's outcome: each entry's result from its events; a reverted or dropped batch's entries again. */
  private async applied(r: BatchRecord, receipt: RawReceipt | 'dropped'): Promise<void> {
    if (!this.records.has(r.hash)) return;
    this.forgetRecord(r);
    const mined = receipt !== 'dropped' && receipt.status === 1;
    if (receipt !== 'dropped') this.figures.gasUsed += receipt.gasUsed;
    const client = this.agent.chain.client;
    if (r.kind === 'reserve') {
      const results = mined ? client.resultsOfLogs(receipt.logs) : [];
      this.agent.log.info(
        { tx: r.hash, reserved: results.filter((x) => x.reason === '').length, of: r.txids.length },
        mined ? 'reservations on chain' : 'reservation batch failed; the stations reserve themselves',
      );
      const outcome = new Map(results.map((x) => [x.txid, x.reason]));
      for (const txid of r.txids) {
        const b = this.bills.get(txid);
        if (!b) continue;
        const reason = outcome.get(txid);
        // SeqUsed: the station reserved it itself in the meantime.
        const ok = reason === '' || reason === 'SeqUsed';
        if (mined && !ok) this.agent.log.warn({ txid, reason }, 'reservation refused');
        this.save({ ...b, reservation: ok ? 'reserved' : 'refused' });
        if (reason === '') await this.tellReserved(b);
      }
      return;
    }
    if (!mined) {
      this.agent.log.error(
        { tx: r.hash, bills: r.txids.length },
        receipt === 'dropped' ? 'batch replaced on chain; queued again' : 'batch reverted; queued again',
      );
      for (const txid of r.txids) {
        const b = this.bills.get(txid);
        if (b?.state === 'submitted') this.save({ ...b, state: 'queued', queuedAt: Date.now() });
      }
      return;
    }
    const results = client.resultsOfLogs(
      receipt.logs,
      r.order?.length === r.txids.length ? r.order : undefined,
    );
    this.agent.metrics.chainSubmitSeconds.observe((Date.now() - r.sentAt) / 1000);
    this.figures.batches++;
    for (const { txid, reason } of results) {
      const b = this.bills.get(txid);
      if (!b) continue;
      if (reason === '') await this.finish(b, 'settled', receipt.transactionHash);
      else
        await this.finish(
          b,
          reason === 'AlreadySettled' ? 'settled' : 'failed',
          receipt.transactionHash,
          reason,
        );
    }
    this.agent.log.info(
      { tx: receipt.transactionHash, bills: r.txids.length, gas: receipt.gasUsed.toString() },
      'batch settled',
    );
  }

  /**
   * The same message to both parties, resent until each acknowledges it: signed once (a signature
   * costs more than the rest of a send; the acks name the envelope, the same for both).
   */
  private async toBoth(b: Bill, msg: MessageInput): Promise<void> {
    const envelope = await this.agent.bus.sign(msg);
    await this.agent.sendEnvelopeReliably([b.ev, b.hcs], envelope, msg.type, b.txid, b.terms.settleBy);
  }

  /** Records the outcome and tells both parties with a transaction message. */
  private async finish(b: Bill, state: 'settled' | 'failed', txHash?: string, error?: string): Promise<void> {
    const done: Bill = {
      ...b,
      state,
      settledAt: Date.now(),
      ...(txHash ? { batchTx: txHash } : {}),
      ...(error ? { error } : {}),
    };
    if (state === 'failed')
      this.agent.log.warn({ txid: b.txid, reason: error }, 'the chain refused the bill');
    this.save(done);
    if (state === 'settled') this.figures.settled++;
    else this.figures.failed++;
    const status =
      state === 'failed'
        ? PAYMENT_STATUS.failed
        : b.disputed
          ? PAYMENT_STATUS.disputed
          : PAYMENT_STATUS.settled;
    const msg = {
      type: 'transaction',
      txid: b.txid,
      sender: b.ev,
      receiver: b.hcs,
      amountWei: big(b.amountWei ?? '0'),
      paymentStatus: status,
      rating: 0,
      comment: '',
    } as const;
    await this.toBoth(b, msg);
    this.finished();
  }

  /**
   * One more bill over (settled, failed, or an agreement closed without a bill): the oldest
   * finished are forgotten beyond KEEP_FINISHED. Sorting every bill on every finish cost
   * O(bills · log) a session: every 50 is enough.
   */
  private finished(): void {
    if (++this.finishedSincePrune >= 50) {
      this.finishedSincePrune = 0;
      this.pruneBills();
    }
  }

  /**
   * A bill still waiting for a report long after its window can never settle (the contract
   * refuses it): it is closed as failed, so that it no longer counts its station as busy. Nobody
   * was billed; each side learns that from the chain on its own.
   */
  private giveUpUncollected(): void {
    const nowMs = Date.now();
    const now = nowMs / 1000;
    for (const b of this.bills.values()) {
      if (b.state !== 'collecting') continue;
      if (this.consentLapsed(b, nowMs)) {
        // No consent here (declined, or lost or late): the station dropped its offer, and a
        // late consent is not reserved. The bill held memory and the open count until settleBy.
        // (A station that did get the consent, ours lost, reserved and charged on its own:
        // it settles directly after settleFallbackMs, as when the edge is away.)
        this.agent.log.info({ txid: b.txid }, 'no consent from the EV in time; agreement closed');
        this.save({
          ...b,
          state: 'failed',
          settledAt: nowMs,
          error: 'no consent from the EV within two reply times + 10 s: the station dropped the offer',
        });
        this.finished();
        continue;
      }
      if (now < b.terms.settleBy + COLLECT_GRACE_S) continue;
      const missing = [b.evReport ? '' : 'EV', b.hcsReport ? '' : 'station'].filter(Boolean).join(' and ');
      this.agent.log.warn({ txid: b.txid, missing }, 'no report within the settlement window; bill given up');
      this.save({
        ...b,
        state: 'failed',
        settledAt: Date.now(),
        error: `no ${missing} report in the window`,
      });
      this.finished();
    }
  }

  private pruneBills(): void {
    const finished = [...this.bills.values()]
      .filter((b) => b.state === 'settled' || b.state === 'failed')
      .sort((a, b) => (a.settledAt ?? 0) - (b.settledAt ?? 0));
    for (const b of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) {
      this.bills.delete(b.txid);
      this.agent.journal.stageDelete(`b:${b.txid}`);
      const journaled = this.envelopesJournaled.get(b.txid);
      this.envelopesJournaled.delete(b.txid);
      for (const field of ENVELOPE_FIELDS)
        if (journaled?.[field] !== undefined) this.agent.journal.stageDelete(`e:${b.txid}:${field}`);
    }
  }

  async control(action: string): Promise<unknown> {
    if (action === 'flush') {
      for (const b of this.bills.values()) if (b.state === 'queued') b.queuedAt = 0;
      await this.tick();
      await Promise.all([...this.inFlight]);
      return this.status();
    }
    throw new Error(`unknown action ${action}: try flush`);
  }

  /** The clock stepped (agent/ops/telemetry.ts): queued bills keep their place in the batch wait. */
  onClockJump(ms: number): void {
    for (const b of this.bills.values())
      if (b.state === 'queued' && b.queuedAt) this.save({ ...b, queuedAt: b.queuedAt + ms });
  }

  status(): Record<string, unknown> {
    const by: Record<string, number> = {};
    for (const b of this.bills.values()) by[b.state] = (by[b.state] ?? 0) + 1;
    return {
      edge: {
        bills: by,
        // Searches kept until a station frees (every one near them was taken).
        waiting: this.waiting.size,
        ...this.figures,
        gasUsed: this.figures.gasUsed.toString(),
      },
    };
  }
}
