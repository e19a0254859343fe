/**
 * The electric vehicle. Searches (through the edge, or by ranking the chain's stations itself),
 * requests a charge from the best station, checks that the agreement's txid commits to the terms
 * the station offered, meters the charge, signs chargeReceived and may drive away at once; the
 * settlement happens later and without it, and then it rates the station.
 */
import { randomBytes } from 'node:crypto';
import { SessionState as ChainSessionState, revertName } from '../../contracts/client.js';
import { computeTxId, PAYMENT_STATUS, REQUEST_STATUS } from '../../protocol/index.js';
import type { Incoming } from '../core/bus.js';
import { big } from '../core/journal.js';
import type { Agent, Role } from '../core/runtime.js';
import { END, parseTerms, type SessionRecord, termsFromJson } from '../core/session.js';
import { rankStations, StationDirectory } from '../core/stations.js';
import { beginCharging, endCharging, pollCharging, resumeCharging, resumeReport } from './charging.js';

/** The car's own meter sits behind the charging cable: it sees a little less than the station's. */
const CABLE_EFFICIENCY = 0.99;
/** How often an EV asks the chain whether its bill settled: often when it settles alone, rarely when an edge tells it. */
const CHAIN_POLL_MS = { direct: 2000, withEdge: 15_000 };
/** After settleBy, how long to wait for a settlement already on its way to a block. */
const SETTLE_GRACE_S = 15;

export class EvRole implements Role {
  private readonly stations: StationDirectory;
  private lastChainPoll = Number.NEGATIVE_INFINITY; // monotonic (performance.now)

  constructor(private readonly agent: Agent) {
    this.stations = new StationDirectory(agent.chain);
  }

  async resume(): Promise<void> {
    const want = this.agent.cfg.ev?.depositWei;
    if (want) {
      const have = await this.agent.chain.retry('availableDeposit', () =>
        this.agent.chain.client.availableDeposit(this.agent.address),
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

  async onMessage({ msg, signer, envelope }: Incoming): Promise<void> {
    const me = this.agent.address;
    switch (msg.type) {
      case 'suggestion': {
        const s = this.find((x) => x.state === 'searching');
        if (!s || msg.requester !== me || signer !== s.server) return;
        const max = this.agent.cfg.ev?.maxPriceWeiPerKWh;
        const candidates = msg.stations
          .filter((st) => max === undefined || st.priceWeiPerKWh <= BigInt(max))
          .map((st) => ({ hcs: st.hcs, price: st.priceWeiPerKWh.toString() }));
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
        const s = this.find((x) => x.state === 'requesting' && x.hcs === signer);
        if (!s || msg.receiver !== me) return;
        if (msg.status !== REQUEST_STATUS.accept) {
          this.agent.log.info(
            { hcs: signer, status: msg.status, why: (msg.optional as { why?: string })?.why },
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
        const kw = Number((msg.optional as { kw?: number }).kw ?? 11);
        this.agent.move(s, 'awaitingMutual', {
          terms,
          txid,
          kw,
          deadline: Date.now() + this.agent.cfg.timeouts.replyMs * 2,
        });
        return;
      }
      case 'mutual': {
        const s = this.find((x) => x.state === 'awaitingMutual' && x.txid === msg.txid);
        if (!s || msg.ev !== me || msg.hcs !== s.hcs) return;
        // The agreement comes from our edge, or (direct) from the station itself.
        if (signer !== (s.server ?? s.hcs)) return;
        await beginCharging(this.agent, s, (s.kw ?? 11) * CABLE_EFFICIENCY);
        return;
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
        const s = this.find((x) => x.txid === msg.txid && x.state === 'awaitingSettlement');
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

  private async requestNext(s: SessionRecord, candidates: { hcs: string; price: string }[]): Promise<void> {
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
      optional: { wh: s.targetWh!, n: randomBytes(6).toString('hex'), t: Math.floor(Date.now() / 1000) },
    });
  }

  /** The bill is on chain: rate the station (if the driver gave a rating), then done. */
  private async settled(s: SessionRecord): Promise<void> {
    s.settledAt ??= Date.now();
    if (s.rating && !s.rated && s.peerReport) {
      const terms = termsFromJson(s.ev, s.hcs!, s.terms!);
      try {
        await this.agent.chain.send('rate', (c) =>
          c.rate(terms, s.rating!.stars, s.rating!.comment, `0x${s.peerReport}`),
        );
        s.rated = true;
      } catch (err) {
        const name = revertName(err);
        if (name === 'AlreadyRated') s.rated = true;
        else this.agent.log.warn({ txid: s.txid, err: name ?? (err as Error).message }, 'rating refused');
      }
      if (s.rated && s.server) {
        await this.agent.send(s.server, {
          type: 'rating',
          txid: s.txid!,
          sender: s.ev,
          receiver: s.hcs!,
          rating: s.rating.stars,
          comment: s.rating.comment,
        });
      }
    }
    this.agent.move(s, 'done', { deadline: 0 });
    this.agent.prune();
  }

  async tick(): Promise<void> {
    const now = Date.now();
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
        else await this.requestNext(s, s.candidates ?? []);
      } else if (s.state === 'charging') {
        const end = await pollCharging(this.agent, s, s.targetWh!, END.completed);
        if (end !== undefined) await endCharging(this.agent, s, end, false);
      } else if (
        s.state === 'awaitingSettlement' &&
        performance.now() - this.lastChainPoll > (s.server ? CHAIN_POLL_MS.withEdge : CHAIN_POLL_MS.direct)
      ) {
        this.lastChainPoll = performance.now();
        const state = await this.agent.chain.retry('sessionState', () =>
          this.agent.chain.client.sessionState(s.hcs!, big(s.terms!.seq)),
        );
        if (state === ChainSessionState.Settled || state === ChainSessionState.Rated) await this.settled(s);
        else if (state === ChainSessionState.Expired)
          this.agent.move(s, 'failed', { error: 'expired unsettled', deadline: 0 });
        else if (now / 1000 > s.terms!.settleBy + SETTLE_GRACE_S)
          // Past the window nobody can settle it any more: the station never reported. Nothing was paid.
          this.agent.move(s, 'failed', {
            error: 'never settled: no report from the station in the settlement window',
            deadline: 0,
          });
      }
    }
  }

  async control(action: string, body: Record<string, unknown>): Promise<unknown> {
    if (action === 'charge') return this.charge(body);
    if (action === 'stop') {
      const s = this.find((x) => x.state === 'charging');
      if (!s) throw new Error('no charge in progress');
      await endCharging(this.agent, s, END.stoppedByEv, false);
      return { id: s.id, state: s.state };
    }
    throw new Error(`unknown action ${action}: try charge or stop`);
  }

  /** Starts a charge: `{ targetWh, rating?, comment?, latitude?, longitude?, radiusM? }`. */
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
    if (!(await this.agent.metering!.ready()))
      throw new Error(
        "the car's meter does not answer: check its cable and address (p2pev doctor), then try again",
      );
    const stars = body.rating === undefined ? undefined : Number(body.rating);
    if (stars !== undefined && !(Number.isInteger(stars) && stars >= 1 && stars <= 5))
      throw new Error('rating must be 1..5');
    const server = this.agent.cfg.server;
    const s: SessionRecord = {
      id: randomBytes(6).toString('hex'),
      role: 'ev',
      state: 'searching',
      deadline: Date.now() + this.agent.cfg.timeouts.replyMs,
      ev: this.agent.address,
      ...(server ? { server } : {}),
      targetWh,
      ...(stars ? { rating: { stars, comment: String(body.comment ?? '').slice(0, 10) } } : {}),
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
      await this.requestNext(
        s,
        ranked.map((r) => ({ hcs: r.hcs, price: r.priceWeiPerKWh.toString() })),
      );
    }
    return { id: s.id, state: s.state };
  }

  status(): Record<string, unknown> {
    return {};
  }
}
