/**
 * The electric vehicle. Searches (through the edge, or by ranking the chain's stations itself),
 * requests a charge from the best station, checks that the agreement's txid commits to the terms
 * the station offered, meters the charge, signs chargeReceived and may drive away at once; the
 * settlement happens later and without it, and then it rates the station.
 */
import { randomBytes } from 'node:crypto';
import { ChainSessionState, isSettledState, revertName } from '../../contracts/client.js';
import {
  computeTxId,
  fitUtf8,
  type MessageOf,
  optionalOf,
  PAYMENT_STATUS,
  REQUEST_STATUS,
} from '../../protocol/index.js';
import type { Incoming } from '../core/bus.js';
import { big } from '../core/json.js';
import type { MeteredContext, RoleHandler } from '../core/context.js';
import {
  END,
  isIn,
  parseTerms,
  type SessionIn,
  type SessionRecord,
  type SessionState,
  termsFromJson,
} from '../core/session.js';
import { rankStations, StationDirectory } from '../core/stations.js';
import {
  beginCharging,
  endCharging,
  pollCharging,
  resumeCharging,
  resumeReport,
  signReceipt,
} from './charging.js';

/** The car's own meter sits behind the charging cable: it sees a little less than the station's. */
const CABLE_EFFICIENCY = 0.99;
/** How often an EV asks the chain whether its bill settled: often when it settles alone, rarely when an edge tells it. */
const CHAIN_POLL_MS = { direct: 2000, withEdge: 15_000 };
/** After settleBy, how long to wait for a settlement already on its way to a block. */
const SETTLE_GRACE_S = 15;
/** The rating comment's size on the wire and on chain (bytes10): UTF-8 bytes, not characters. */
const RATING_COMMENT_BYTES = 10;

export class EvRole implements RoleHandler {
  private readonly stations: StationDirectory;
  private lastChainPoll = Number.NEGATIVE_INFINITY; // monotonic (performance.now)
  /** When each session awaiting settlement was last asked about (monotonic), for turns. */
  private readonly polledAt = new Map<string, number>();
  /** An edge's agreement that arrived before the station's answer, by session id (one car, one request at a time). */
  private readonly earlyMutuals = new Map<string, MessageOf<'mutual'>>();

  constructor(private readonly agent: MeteredContext) {
    this.stations = new StationDirectory(agent.chain);
  }

  async resume(): Promise<void> {
    const want = this.agent.cfg.ev?.depositWei;
    if (want) {
      // The whole deposit, open reservations included: they are ours until settled.
      const have = await this.agent.chain.retry(
        'depositOf',
        async () => (await this.agent.chain.client.depositOf(this.agent.address)).balance,
      );
      if (have < BigInt(want)) {
        await this.agent.chain.send('deposit', (c) => c.deposit(BigInt(want) - have));
        this.agent.log.info({ depositWei: want }, 'deposit topped up');
      }
    }
    for (const s of this.agent.openSessions()) {
      if (s.state === 'awaitingSettlement') await resumeReport(this.agent, s);
      if (s.state === 'charging') await resumeCharging(this.agent, s, (s.kw ?? 11) * CABLE_EFFICIENCY);
    }
  }

  private find(pred: (s: SessionRecord) => boolean): SessionRecord | undefined {
    return this.agent.openSessions().find(pred);
  }

  /** The open session in `state` for which `pred` holds, typed by its state. */
  private findIn<S extends SessionState>(
    state: S,
    pred: (s: SessionIn<S>) => boolean = () => true,
  ): SessionIn<S> | undefined {
    return this.agent.openSessions().find((x): x is SessionIn<S> => isIn(x, state) && pred(x));
  }

  async onMessage({ msg, signer, envelope }: Incoming): Promise<void> {
    const me = this.agent.address;
    switch (msg.type) {
      case 'suggestion': {
        const s = this.find((x) => x.state === 'searching');
        if (!s || msg.requester !== me || signer !== s.server) return;
        const max = this.agent.cfg.ev?.maxPriceWeiPerKWh;
        const candidates = msg.stations
          .filter((st) => max === undefined || st.priceWeiPerKWh <= BigInt(max))
          .map((st) => ({ hcs: st.hcs, price: st.priceWeiPerKWh.toString() }))
          // The driver's pick (on the page's map) first, where the edge suggested it.
          .sort((a, b) => Number(b.hcs === s.pick) - Number(a.hcs === s.pick));
        if (s.pick && candidates[0]?.hcs !== s.pick)
          return void this.agent.move(s, 'failed', {
            error:
              'the station you picked is busy or outside the search radius: pick another, or take the suggestion',
            deadline: 0,
          });
        if (candidates.length === 0)
          return void this.agent.move(s, 'failed', {
            error: msg.stations.length
              ? 'every suggested station is above the price limit (ev.maxPriceWeiPerKWh)'
              : 'no station within the search radius: search a wider one (ev.searchRadiusM)',
            deadline: 0,
          });
        return this.requestNext(s, candidates);
      }
      case 'response': {
        const s = this.findIn('requesting', (x) => x.hcs === signer);
        if (!s || msg.receiver !== me) return;
        if (msg.status !== REQUEST_STATUS.accept) {
          this.agent.log.info(
            { hcs: signer, status: msg.status, why: optionalOf(msg).why },
            'request declined',
          );
          return this.requestNext(s, s.candidates ?? []);
        }
        const terms = parseTerms(msg.optional);
        const offered = s.candidates?.[0]?.price;
        if (typeof terms === 'string' || (offered !== undefined && big(terms.price) > big(offered))) {
          this.agent.log.warn(
            { hcs: signer, problem: typeof terms === 'string' ? terms : 'price above the offer' },
            'terms refused',
          );
          return this.requestNext(s, s.candidates ?? []);
        }
        const txid = computeTxId(termsFromJson(me, signer, terms), this.agent.chain.domain);
        const offer = optionalOf(msg);
        const kw = offer.kw ?? 11;
        // The station's receipt rule binds (it switches off on it); our own config otherwise.
        const own = this.agent.cfg.receipts;
        const receipts = { wh: offer.rWh ?? own.wh, ms: offer.rMs ?? own.intervalMs };
        const early = this.earlyMutuals.get(s.id);
        this.earlyMutuals.delete(s.id);
        const waiting = this.agent.move(s, 'awaitingMutual', {
          terms,
          txid,
          kw,
          receipts,
          deadline: Date.now() + this.agent.cfg.timeouts.replyMs * 2,
        });
        // The edge's agreement came first: it stands if it names the txid we just computed ourselves.
        if (waiting && early?.txid === txid) return this.onMutual(waiting);
        return;
      }
      case 'mutual': {
        const s = this.findIn('awaitingMutual', (x) => x.txid === msg.txid);
        if (!s) {
          // The edge's agreement can overtake the station's answer: a receiver checks a sender it
          // has not met before on chain first (agent/core/gate.ts), and the edge is known already.
          // Kept, in memory, for the answer; it counts only if its txid is the one we compute then.
          const asked = this.findIn('requesting', (x) => x.hcs === msg.hcs);
          if (asked?.server && signer === asked.server && msg.ev === me) this.earlyMutuals.set(asked.id, msg);
          return;
        }
        if (msg.ev !== me || msg.hcs !== s.hcs) return;
        // The agreement comes from our edge, or (direct) from the station itself.
        if (signer !== (s.server ?? s.hcs)) return;
        return this.onMutual(s);
      }
      case 'completion':
      case 'termination': {
        const s = this.find((x) => x.txid === msg.txid);
        if (!s || signer !== s.hcs) return;
        if (s.state === 'charging') await endCharging(this.agent, s, msg.status, true);
        else if (s.state === 'awaitingMutual')
          this.agent.move(s, 'failed', {
            error: 'the station ended the session before it started',
            deadline: 0,
          });
        return;
      }
      case 'chargeProvided': {
        const s = this.find((x) => x.txid === msg.txid);
        if (!s || signer !== s.hcs || s.peerReport) return;
        s.peerReport = Buffer.from(envelope).toString('hex');
        this.agent.save(s);
        return;
      }
      case 'transaction': {
        const s = this.findIn('awaitingSettlement', (x) => x.txid === msg.txid);
        if (!s || signer !== s.server) return;
        if (msg.paymentStatus === PAYMENT_STATUS.settled || msg.paymentStatus === PAYMENT_STATUS.disputed)
          await this.settled(s);
        else if (msg.paymentStatus === PAYMENT_STATUS.failed)
          this.agent.move(s, 'failed', { error: 'the chain refused the bill', deadline: 0 });
        return;
      }
      default:
        return;
    }
  }

  /** The agreement stands (checked by the caller): the driver confirms first, or we consent now. */
  private async onMutual(s: SessionIn<'awaitingMutual'>): Promise<void> {
    if (s.confirmTerms) {
      // The driver sees the terms first: nothing is signed until POST /accept.
      s.agreedAt ??= Date.now();
      this.agent.save(s);
      return;
    }
    return this.consentAndCharge(s);
  }

  private async requestNext(s: SessionRecord, candidates: { hcs: string; price: string }[]): Promise<void> {
    this.earlyMutuals.delete(s.id);
    const remaining = s.hcs ? candidates.filter((c) => c.hcs !== s.hcs) : candidates;
    const next = remaining[0];
    if (!next) {
      this.agent.move(s, 'failed', { error: 'no station accepted', deadline: 0, candidates: [] });
      return;
    }
    this.agent.move(s, 'requesting', {
      hcs: next.hcs,
      candidates: remaining,
      deadline: Date.now() + this.agent.cfg.timeouts.replyMs,
    });
    await this.agent.send(next.hcs, {
      type: 'request',
      status: REQUEST_STATUS.none,
      sender: this.agent.address,
      receiver: next.hcs,
      optional: {
        ...(s.targetWh !== undefined ? { wh: s.targetWh } : {}),
        n: randomBytes(6).toString('hex'),
        t: Math.floor(Date.now() / 1000),
      },
    });
  }

  /** The bill is on chain: rate the station (if the driver gave a rating), then done. */
  private async settled(s: SessionIn<'awaitingSettlement'>): Promise<void> {
    s.settledAt ??= Date.now();
    const rating = s.rating;
    if (rating && !s.rated) {
      const terms = termsFromJson(s.ev, s.hcs, s.terms);
      try {
        await this.agent.chain.send('rate', (c) => c.rate(terms, rating.stars, rating.comment));
        s.rated = true;
      } catch (err) {
        const name = revertName(err);
        if (name === 'AlreadyRated') s.rated = true;
        else this.agent.log.warn({ txid: s.txid, err: name ?? (err as Error).message }, 'rating refused');
      }
      if (s.rated && s.server) {
        await this.agent.send(s.server, {
          type: 'rating',
          txid: s.txid,
          sender: s.ev,
          receiver: s.hcs,
          rating: rating.stars,
          comment: rating.comment,
        });
      }
    }
    this.agent.move(s, 'done', { deadline: 0 });
    this.agent.prune();
  }

  async tick(): Promise<void> {
    const now = Date.now();
    // One chain poll per interval, the sessions awaiting settlement taking turns (longest unasked
    // first): the first in the list always got the poll, and a session that cannot settle before
    // its window closes (one that never charged) kept every other from ever being asked (ten
    // settled sessions unknown to their EV, issue 15's chaos run).
    const awaiting = this.agent.openSessions().filter((x) => x.state === 'awaitingSettlement');
    for (const id of this.polledAt.keys()) if (!awaiting.some((x) => x.id === id)) this.polledAt.delete(id);
    const askNext = awaiting.sort(
      (a, b) =>
        (this.polledAt.get(a.id) ?? Number.NEGATIVE_INFINITY) -
        (this.polledAt.get(b.id) ?? Number.NEGATIVE_INFINITY),
    )[0];
    for (const s of this.agent.openSessions()) {
      if (
        (s.state === 'searching' || s.state === 'requesting' || s.state === 'awaitingMutual') &&
        s.deadline &&
        now > s.deadline
      ) {
        if (s.state === 'searching')
          this.agent.move(s, 'failed', {
            // The edge answers a search when a station near the car is free; it waits for one.
            error: 'no suggestion from the edge in time: every station nearby was busy, or the edge is away',
            deadline: 0,
          });
        else if (s.state === 'awaitingMutual' && s.agreedAt !== undefined)
          // The driver let the station's terms lapse: declined, nothing signed, nothing reserved.
          this.agent.move(s, 'failed', { error: 'the terms were not accepted in time', deadline: 0 });
        else await this.requestNext(s, s.candidates ?? []);
      } else if (s.state === 'charging') {
        // A car's charge ends at its target; a record without one (never written so) at the cap.
        const end = await pollCharging(this.agent, s, s.targetWh ?? s.terms.maxWh, END.completed);
        if (end !== undefined) await endCharging(this.agent, s, end, false);
        else await this.sendReceiptIfDue(s, now);
      } else if (
        s.state === 'awaitingSettlement' &&
        s === askNext &&
        performance.now() - this.lastChainPoll > (s.server ? CHAIN_POLL_MS.withEdge : CHAIN_POLL_MS.direct)
      ) {
        this.lastChainPoll = performance.now();
        this.polledAt.set(s.id, this.lastChainPoll);
        const state = await this.agent.chain.retry('sessionState', () =>
          this.agent.chain.client.sessionState(s.hcs, big(s.terms.seq)),
        );
        if (isSettledState(state)) await this.settled(s);
        else if (state === ChainSessionState.Released)
          this.agent.move(s, 'failed', { error: 'released unsettled', deadline: 0 });
        else if (now / 1000 > s.terms.settleBy + SETTLE_GRACE_S) await this.unsettled(s, state);
      }
    }
  }

  /**
   * Past the window nobody can settle the session any more: the station never reported, nothing
   * was paid. A reservation still standing (a session that never charged: the station gave up
   * its offer before our consent came) is released first: it held cap × price of our deposit and
   * the station's ring slot (seq mod 16), which refused every 16th of its later sessions
   * (`TooManyOpenReservations`, issue 15's chaos run at 30 x 8). Anyone may release after settleBy.
   */
  private async unsettled(s: SessionIn<'awaitingSettlement'>, state: number): Promise<void> {
    if (state === ChainSessionState.Reserved) {
      try {
        await this.agent.chain.send('release', (c) => c.release(termsFromJson(s.ev, s.hcs, s.terms)));
        this.agent.log.info({ txid: s.txid }, 'unsettled reservation released');
      } catch (err) {
        const name = revertName(err);
        // Someone else released it, or the chain's clock is not past settleBy yet, or the node is away.
        if (name !== 'AlreadyReleased' && name !== 'NotReserved') {
          this.agent.log.warn(
            { txid: s.txid, err: name ?? (err as Error).message },
            'release not done; trying again',
          );
          return;
        }
      }
    }
    this.agent.move(s, 'failed', {
      error: 'never settled: no report from the station in the settlement window',
      deadline: 0,
    });
  }

  /**
   * While charging, a signed receipt for our cumulative energy every `wh` or `ms` (the station's
   * rule): what the station can settle with if we go silent, and what keeps it switched on.
   */
  private async sendReceiptIfDue(s: SessionIn<'charging'>, now: number): Promise<void> {
    const rule = s.receipts ?? { wh: this.agent.cfg.receipts.wh, ms: this.agent.cfg.receipts.intervalMs };
    const own = Math.max(0, (s.lastWh ?? s.startWh) - s.startWh);
    if (own - (s.receiptWh ?? 0) < rule.wh && now - (s.receiptAt ?? 0) < rule.ms) return;
    const index = (s.receiptIndex ?? 0) + 1;
    const receipt = await signReceipt(this.agent, s, own, index);
    Object.assign(s, { receiptIndex: index, receiptWh: own, receiptAt: now });
    this.agent.save(s);
    await this.agent.bus.publishEnvelope(s.hcs, receipt, 'chargeReceived').catch(() => {});
  }

  /**
   * Our consent: the first receipt (0 Wh) reserves cap × price of our deposit on chain; the
   * station switches on once the reservation stands.
   */
  private async consentAndCharge(s: SessionIn<'awaitingMutual'>): Promise<void> {
    const consent = await signReceipt(this.agent, s, 0, 0);
    for (const to of s.server ? [s.hcs, s.server] : [s.hcs])
      await this.agent.bus.publishEnvelope(to, consent, 'chargeReceived').catch(() => {});
    Object.assign(s, { receiptIndex: 0, receiptWh: 0, receiptAt: Date.now() });
    await beginCharging(this.agent, s, (s.kw ?? 11) * CABLE_EFFICIENCY);
  }

  async control(action: string, body: Record<string, unknown>): Promise<unknown> {
    if (action === 'charge') return this.charge(body);
    if (action === 'accept') {
      const s = this.findIn('awaitingMutual', (x) => x.agreedAt !== undefined);
      if (!s) throw new Error('no agreed terms wait for your acceptance');
      await this.consentAndCharge(s);
      return { id: s.id, state: s.state };
    }
    if (action === 'stop') {
      const s = this.findIn('charging');
      if (s) {
        await endCharging(this.agent, s, END.stoppedByEv, false);
        return { id: s.id, state: s.state };
      }
      // Before the charger is on, stopping declines: no consent was signed, nothing is reserved.
      const early = this.find((x) => ['searching', 'requesting', 'awaitingMutual'].includes(x.state));
      if (!early) throw new Error('no charge in progress');
      this.agent.move(early, 'failed', { error: 'stopped by the driver before charging', deadline: 0 });
      return { id: early.id, state: early.state };
    }
    throw new Error(`unknown action ${action}: try charge, accept or stop`);
  }

  /**
   * Starts a charge: `{ targetWh, rating?, comment?, latitude?, longitude?, radiusM?, hcs?, confirm? }`
   * (`hcs`: the driver's pick; `confirm`: wait for `POST /accept` once the terms are agreed).
   */
  private async charge(body: Record<string, unknown>): Promise<unknown> {
    if (this.find((x) => x.state !== 'awaitingSettlement')) throw new Error('a charge is already under way');
    const ev = this.agent.cfg.ev ?? { searchRadiusM: 10_000 };
    const targetWh = Number(body.targetWh);
    if (!Number.isInteger(targetWh) || targetWh <= 0)
      throw new Error('targetWh must be a positive whole number of Wh');
    const at = {
      latitude: Number(body.latitude ?? ev.latitude ?? 0),
      longitude: Number(body.longitude ?? ev.longitude ?? 0),
      radiusM: Number(body.radiusM ?? ev.searchRadiusM ?? 10_000),
    };
    // A car whose meter does not answer cannot sign for what it receives: no charge until it does.
    if (!(await this.agent.metering.ready()))
      throw new Error(
        "the car's meter does not answer: check its cable and address (p2pev doctor), then try again",
      );
    const stars = body.rating === undefined ? undefined : Number(body.rating);
    if (stars !== undefined && !(Number.isInteger(stars) && stars >= 1 && stars <= 5))
      throw new Error('rating must be 1..5');
    const pick = body.hcs === undefined ? undefined : String(body.hcs).toLowerCase();
    if (pick !== undefined && !/^0x[0-9a-f]{40}$/.test(pick))
      throw new Error('hcs must be a station address (0x…)');
    const server = this.agent.cfg.server;
    const s: SessionRecord = {
      id: randomBytes(6).toString('hex'),
      role: 'ev',
      state: 'searching',
      deadline: Date.now() + this.agent.cfg.timeouts.replyMs,
      ev: this.agent.address,
      ...(server ? { server } : {}),
      targetWh,
      ...(pick ? { pick } : {}),
      ...(body.confirm === true ? { confirmTerms: true } : {}),
      ...(stars
        ? { rating: { stars, comment: fitUtf8(String(body.comment ?? ''), RATING_COMMENT_BYTES) } }
        : {}),
      createdAt: Date.now(),
      updatedAt: Date.now(),
    };
    this.agent.save(s);
    if (server) {
      await this.agent.send(server, {
        type: 'search',
        requester: s.ev,
        server,
        ...at,
        optional: { n: randomBytes(6).toString('hex'), t: Math.floor(Date.now() / 1000) },
      });
    } else {
      const ranked = rankStations(await this.stations.list(), at, 5);
      const picked = pick ? ranked.filter((r) => r.hcs === pick) : ranked;
      if (pick && picked.length === 0) {
        this.agent.move(s, 'failed', {
          error: 'the station you picked is not open to book within the search radius',
          deadline: 0,
        });
        return { id: s.id, state: s.state };
      }
      await this.requestNext(
        s,
        picked.map((r) => ({ hcs: r.hcs, price: r.priceWeiPerKWh.toString() })),
      );
    }
    return { id: s.id, state: s.state };
  }

  status(): Record<string, unknown> {
    return {};
  }
}
