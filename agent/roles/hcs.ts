/**
 * The home charging station. Answers requests by its own rules (one car at a time, service
 * hours, the EV's deposit must cover the session's cap), fixes the terms (its own session counter
 * `seq`, its price, the cap, the settlement window), meters the charge, signs chargeProvided, and
 * makes sure it is paid: through the edge, or by settling directly when there is none or the edge
 * has not settled in time.
 */
import { ChainSessionState, isSettledState, revertName } from '../../contracts/client.js';
import {
  billWei,
  computeTxId,
  type Message,
  type MessageOf,
  optionalOf,
  PAYMENT_STATUS,
  REQUEST_STATUS,
  reportEnergyWh,
} from '../../protocol/index.js';
import type { Incoming } from '../core/bus.js';
import { big } from '../core/json.js';
import type { AgentConfig } from '../core/config.js';
import type { MeteredContext, RoleHandler } from '../core/context.js';
import {
  END,
  isIn,
  nonceOf,
  type SessionIn,
  type SessionRecord,
  type TermsJson,
  termsFromJson,
} from '../core/session.js';
import { type ChargerEnd, type ChargerPort, chargerPort } from './charger-port.js';
import {
  beginCharging,
  endCharging,
  interimIndex,
  pollCharging,
  resumeCharging,
  resumeReport,
} from './charging.js';
import { bestEvReport, settleDirectly, settleOnChain, withinToleranceOf } from './settle.js';

/** Whether `now` (local time) is inside "HH:MM-HH:MM" (a window may run past midnight). */
export function withinServiceHours(hours: string, now = new Date()): boolean {
  const m = /^\s*(\d+):(\d+)\s*-\s*(\d+):(\d+)\s*$/.exec(hours);
  if (!m) return false;
  const [from, to] = [Number(m[1]) * 60 + Number(m[2]), Number(m[3]) * 60 + Number(m[4])];
  const minute = now.getHours() * 60 + now.getMinutes();
  return from <= to ? minute >= from && minute < to : minute >= from || minute < to;
}

/**
 * A session's cap and window from its terms (issue 12, E): settleBy = start + maxWh ÷ power + a
 * margin, the cap cut so that settleBy stays within the station's longest window. The station
 * ends the charge `marginS` before settleBy, which leaves the margin to settle. Undefined when
 * not even 1 Wh fits.
 */
export function sessionWindow(
  nowS: number,
  wantedWh: number,
  powerW: number,
  windowS: number,
  marginS: number,
): { maxWh: number; settleBy: number } | undefined {
  const maxWh = Math.min(wantedWh, Math.floor(((windowS - marginS) * powerW) / 3600));
  if (maxWh < 1) return undefined;
  return { maxWh, settleBy: nowS + Math.ceil((maxWh * 3600) / powerW) + marginS };
}

/**
 * The station's configured window against the contract (checked at start and by `p2pev doctor`):
 * `fail` when the contract would refuse every reservation, `warn` when full sessions get cut.
 */
export function windowCheck(
  hcs: { settlementWindowS: number; settleMarginS: number; maxSessionWh: number; powerKw: number },
  contractWindowS: number,
  registeredPowerW?: number,
): { level: 'ok' | 'warn' | 'fail'; detail: string; fix?: string } {
  const powerW = Math.round(hcs.powerKw * 1000);
  if (hcs.settlementWindowS > contractWindowS)
    return {
      level: 'fail',
      detail: `hcs.settlementWindowS ${hcs.settlementWindowS} s is longer than the contract's ${contractWindowS} s (its withdrawal notice): every reservation would be refused`,
      fix: `set hcs.settlementWindowS to at most ${contractWindowS}`,
    };
  if (hcs.settleMarginS >= hcs.settlementWindowS)
    return {
      level: 'fail',
      detail: `hcs.settleMarginS ${hcs.settleMarginS} s leaves no time to charge in a ${hcs.settlementWindowS} s window`,
      fix: 'lower hcs.settleMarginS or raise hcs.settlementWindowS',
    };
  if (registeredPowerW !== undefined && registeredPowerW < powerW)
    return {
      level: 'fail',
      detail: `hcs.powerKw ${hcs.powerKw} is above the ${registeredPowerW} W registered on chain: the contract would find the windows too short`,
      fix: `set hcs.powerKw to ${registeredPowerW / 1000} (or register the station again with its real power)`,
    };
  const fullS = Math.ceil((hcs.maxSessionWh * 3600) / powerW) + hcs.settleMarginS;
  if (fullS > hcs.settlementWindowS)
    return {
      level: 'warn',
      detail: `a full session (${hcs.maxSessionWh} Wh at ${hcs.powerKw} kW) needs a ${fullS} s window; sessions are capped at ${Math.floor(((hcs.settlementWindowS - hcs.settleMarginS) * powerW) / 3600)} Wh`,
      fix: `raise hcs.settlementWindowS to ${Math.min(fullS, contractWindowS)} (at most the contract's ${contractWindowS} s) or lower hcs.maxSessionWh`,
    };
  return {
    level: 'ok',
    detail: `window ≤ ${hcs.settlementWindowS} s (contract ${contractWindowS} s): a full session fits`,
  };
}

/** What the switch-off rule needs to know (config and the deployment's tolerance). */
export interface SwitchOffRules {
  receiptWh: number;
  receiptMs: number;
  graceMs: number;
  marginS: number;
  /** The contract's tolerance at this energy: max(abs, rel × wh). */
  toleranceWh: (wh: number) => number;
}

/**
 * The one place the station decides to switch the charger off now, and why (issue 12): the
 * settlement window is closing, the EV's receipt is late, or the EV's signed figure has fallen
 * behind the station's meter by more than one receipt's energy plus the tolerance. The charger
 * port (charger-port.ts) acts on this decision, and adds what only the charger sees (plug-out,
 * fault, a stop of its own).
 */
export function switchOffDecision(
  s: Pick<SessionRecord, 'startWh' | 'lastWh' | 'ackWh' | 'lastAckAt' | 'terms' | 'switchedOnAt'>,
  nowMs: number,
  rules: SwitchOffRules,
): { status: number; why: string } | undefined {
  if (nowMs / 1000 >= (s.terms?.settleBy ?? 0) - rules.marginS)
    return { status: END.stoppedByHcs, why: 'the settlement window is closing' };
  const lastAck = s.lastAckAt ?? nowMs;
  if (nowMs - lastAck > rules.receiptMs + rules.graceMs)
    return {
      status: END.peerLost,
      why: `no receipt from the EV for ${Math.round((nowMs - lastAck) / 1000)} s`,
    };
  const delivered = (s.lastWh ?? s.startWh ?? 0) - (s.startWh ?? 0);
  const behind = delivered - (s.ackWh ?? 0);
  // A receipt is due every `receiptWh`; it may take the grace time to arrive, at the power seen so far.
  const elapsedMs = Math.max(1, nowMs - (s.switchedOnAt ?? nowMs));
  const graceWh = (delivered * rules.graceMs) / elapsedMs;
  if (behind > rules.receiptWh + rules.toleranceWh(delivered) + graceWh)
    return { status: END.stoppedByHcs, why: `the EV acknowledged ${behind} Wh less than delivered` };
  return undefined;
}

/** What the charger saw, as the end of the charge: a plug-out is the EV ending the session. */
const CHARGER_ENDS: Record<ChargerEnd, { status: number; why: string }> = {
  unplugged: { status: END.stoppedByEv, why: 'the car was unplugged' },
  fault: { status: END.stoppedByHcs, why: 'the charger reports a fault' },
  stopped: { status: END.stoppedByHcs, why: 'the charger stopped by itself' },
};

/** How often the chain is asked whether a given-up session's reservation stands: at first, and at most. */
const CLOSE_CHECK_MS = { first: 1000, max: 60_000 };

export class HcsRole implements RoleHandler {
  /** This station's settings (the config's `hcs` section); `s.hcs` is a session's station address. */
  private readonly station: NonNullable<AgentConfig['hcs']>;

  /** The highest seq the chain held for this station when the agent started (nextSeq). */
  private chainSeq?: bigint;

  /** The station's charger, behind a small port (charger-port.ts). */
  private readonly charger: ChargerPort;

  /** Ids of the given-up sessions whose 0 Wh close is still to do (closeUnused), so a tick need not scan all. */
  private readonly closing = new Set<string>();

  constructor(private readonly agent: MeteredContext) {
    if (!agent.cfg.hcs) throw new Error("a station agent needs the config's hcs section");
    this.station = agent.cfg.hcs;
    this.charger = chargerPort(agent);
  }

  /** Charger off first, then the final reading and the report (charging.ts). */
  private async end(s: SessionIn<'charging'>, status: number, fromPeer: boolean, why: string): Promise<void> {
    await this.charger.switchOff(s, why);
    const signed = this.charger.signedValues(s);
    if (signed.length > 0) s.chargerSigned = signed;
    await endCharging(this.agent, s, status, fromPeer);
  }

  private get busy(): boolean {
    return this.agent.openSessions().some((s) => s.state === 'offered' || s.state === 'charging');
  }

  /**
   * The next session number: above both the journal's counter and the highest seq the chain
   * holds for this station, so a lost journal never reuses a settled seq (issue 12, H). Journaled
   * before it is offered: never handed out twice, even across a crash.
   */
  private async nextSeq(): Promise<bigint> {
    const journal = big(this.agent.journal.get<string>('seq') ?? '0');
    // The chain's counter is read once, at start (resume): after that every seq it can hold for
    // this station is one handed out here, journaled before it was offered.
    this.chainSeq ??= await this.agent.chain.retry('lastSeq', () =>
      this.agent.chain.client.lastSeq(this.agent.address),
    );
    const chain = this.chainSeq;
    const seq = (journal > chain ? journal : chain) + 1n;
    this.agent.journal.put('seq', seq.toString());
    return seq;
  }

  private get rules(): SwitchOffRules {
    const p = this.agent.chain.deployment.params;
    const abs = Number(p.absToleranceWh);
    const rel = Number(p.relToleranceBps);
    const r = this.agent.cfg.receipts;
    return {
      receiptWh: r.wh,
      receiptMs: r.intervalMs,
      graceMs: r.graceMs,
      marginS: this.station.settleMarginS,
      toleranceWh: (wh) => Math.max(abs, Math.floor((wh * rel) / 10_000)),
    };
  }

  async resume(): Promise<void> {
    // The configured window against the contract's, before any offer is made.
    const client = this.agent.chain.client;
    const [contractWindow, profile, lastSeq] = await this.agent.chain.retry('window', () =>
      Promise.all([
        client.settlementWindow(),
        client.hcsProfile(this.agent.address),
        client.lastSeq(this.agent.address),
      ]),
    );
    this.chainSeq = lastSeq;
    for (const s of this.agent.sessions.values()) if (s.closeAtZero) this.closing.add(s.id);
    const check = windowCheck(this.station, Number(contractWindow), profile.powerW || undefined);
    if (check.level === 'fail') throw new Error(`${check.detail}: ${check.fix}`);
    if (check.level === 'warn') this.agent.log.warn({ fix: check.fix }, check.detail);
    // The charger on for the session still charging, off for anything else (charger-port.ts).
    await this.charger.resume(this.agent.openSessions().find((s) => s.state === 'charging'));
    for (const s of this.agent.openSessions()) {
      if (s.state === 'awaitingSettlement') await resumeReport(this.agent, s);
      if (s.state === 'charging') await resumeCharging(this.agent, s, this.station.powerKw);
    }
  }

  private session(txid: string): SessionRecord | undefined {
    return [...this.agent.sessions.values()].find((s) => s.txid === txid);
  }

  async onMessage({ msg, signer, envelope }: Incoming): Promise<void> {
    switch (msg.type) {
      case 'request':
        return this.onRequest(msg, signer);
      case 'mutual':
        return this.onMutual(msg, signer);
      case 'completion':
      case 'termination':
        return this.onEnd(msg, signer);
      case 'chargeReceived':
        return this.onPeerReport(msg as MessageOf<'chargeReceived'>, signer, envelope);
      case 'transaction':
        return this.onTransaction(msg as MessageOf<'transaction'>, signer);
      default:
        return;
    }
  }

  /** Answers a request; `optional` carries the request's nonce back, so every answer is its own message. */
  private async reply(ev: string, status: number, optional: Record<string, unknown>): Promise<void> {
    await this.agent.send(ev, {
      type: 'response',
      status,
      sender: this.agent.address,
      receiver: ev,
      optional,
    });
  }

  private async onRequest(msg: MessageOf<'request'>, ev: string): Promise<void> {
    if (msg.receiver !== this.agent.address) return;
    const nonce = nonceOf(msg.optional).optional ?? {};
    if (this.busy) return this.reply(ev, REQUEST_STATUS.busy, { why: 'busy', ...nonce });
    // A meter that does not answer (or a charger switch that has not landed) cannot bill a charge.
    if (!(await this.agent.metering.ready()))
      return this.reply(ev, REQUEST_STATUS.busy, { why: 'meter', ...nonce });
    if (!withinServiceHours(this.station.serviceHours))
      return this.reply(ev, REQUEST_STATUS.reject, { why: 'closed', ...nonce });
    const price = BigInt(this.station.priceWeiPerKWh);
    const available = await this.agent.chain.retry('availableDeposit', () =>
      this.agent.chain.client.availableDeposit(ev),
    );
    // The cap: what the car asked for (plus a margin), the station's limit, and what the deposit covers.
    const wanted = optionalOf(msg).wh ?? this.station.maxSessionWh;
    const affordable = price > 0n ? Number((available * 1000n) / price) : this.station.maxSessionWh;
    const capWh = Math.min(Math.ceil(wanted * 1.2) + 1000, this.station.maxSessionWh, affordable);
    if (capWh < Math.min(wanted, 1000))
      return this.reply(ev, REQUEST_STATUS.reject, { why: 'deposit', ...nonce });
    // The window from the terms (issue 12, E): the whole charge at this power, plus the margin.
    const window = sessionWindow(
      Math.floor(Date.now() / 1000),
      capWh,
      Math.round(this.station.powerKw * 1000),
      this.station.settlementWindowS,
      this.station.settleMarginS,
    );
    if (!window) return this.reply(ev, REQUEST_STATUS.reject, { why: 'window', ...nonce });
    const terms: TermsJson = {
      seq: (await this.nextSeq()).toString(),
      price: price.toString(),
      maxWh: window.maxWh,
      settleBy: window.settleBy,
    };
    const t = termsFromJson(ev, this.agent.address, terms);
    const txid = computeTxId(t, this.agent.chain.domain);
    const server = this.agent.cfg.server;
    const s: SessionRecord = {
      id: `${terms.seq}`,
      role: 'hcs',
      state: 'offered',
      deadline: Date.now() + this.agent.cfg.timeouts.replyMs * 2,
      ev,
      hcs: this.agent.address,
      ...(server ? { server } : {}),
      terms,
      txid,
      kw: this.station.powerKw,
      createdAt: Date.now(),
      updatedAt: Date.now(),
    };
    this.agent.save(s);
    // The receipt rule travels with the offer: the station is the one that switches off on it.
    const r = this.agent.cfg.receipts;
    const optional = { ...terms, kw: this.station.powerKw, rWh: r.wh, rMs: r.intervalMs, ...nonce };
    if (server) {
      // The edge forms the agreement: it checks the deposit and sends the mutual to both. The
      // same answer to the car and the edge: signed once.
      await this.agent.send([ev, server], {
        type: 'response',
        status: REQUEST_STATUS.accept,
        sender: this.agent.address,
        receiver: ev,
        optional,
      });
      return;
    }
    await this.reply(ev, REQUEST_STATUS.accept, optional);
    // No edge: the two parties agree directly; this station plays the server. The charger
    // switches on once the EV's consent has reserved the session on chain.
    await this.agent.send(ev, {
      type: 'mutual',
      server: this.agent.address,
      ev,
      hcs: this.agent.address,
      txid,
      optional: terms,
    });
  }

  private async onMutual(msg: MessageOf<'mutual'>, signer: string): Promise<void> {
    const s = this.session(msg.txid);
    if (s?.state !== 'offered' || msg.hcs !== this.agent.address || msg.ev !== s.ev) return;
    if (signer !== s.server) return;
    // Nothing to do yet: the edge reserves the session with the EV's consent, and the tick
    // switches the charger on once the reservation stands on chain.
  }

  /** Reserves the session on chain with the EV's consent (no edge, or the edge is late). */
  private async reserve(s: SessionIn<'offered'>): Promise<void> {
    if (!s.consent) return;
    const consent = `0x${s.consent}`;
    const terms = termsFromJson(s.ev, this.agent.address, s.terms);
    this.agent.log.info({ txid: s.txid, edge: s.server }, 'reserving the session on chain');
    try {
      await this.agent.chain.send('reserve', (c) => c.reserve(terms, consent));
    } catch (err) {
      const name = revertName(err);
      // SeqUsed: reserved already (by the edge, in the meantime); the tick sees it.
      if (name === 'SeqUsed') return;
      this.agent.log.warn({ txid: s.txid, err: name ?? (err as Error).message }, 'reservation refused');
      // Refused for good: the car (switched on, waiting) and the edge are told at once.
      if (name) await this.giveUp(s, `the chain refused the reservation: ${name}`, END.stoppedByHcs);
      return;
    }
    await this.switchOn(s);
  }

  /**
   * The reservation stands: the charger switches on; the consent counts as the first receipt. A
   * charger that refuses (a wallbox rejecting RemoteStart, one not connected) ends it at once.
   */
  private async switchOn(s: SessionIn<'offered'>): Promise<void> {
    Object.assign(s, { reserved: true, ackWh: 0, ackReport: s.consent });
    const charging = await beginCharging(this.agent, s, this.station.powerKw);
    Object.assign(s, { lastAckAt: Date.now(), switchedOnAt: Date.now() });
    this.agent.save(s);
    // The meter unreadable at the start: failed, the charger never on, the end sent already; the
    // reservation stands and is closed at 0 Wh.
    if (!charging) return this.giveUp(s);
    try {
      await this.charger.switchOn(charging);
    } catch (err) {
      this.agent.log.error({ id: s.id, err: (err as Error).message }, 'the charger did not switch on');
      await this.end(charging, END.stoppedByHcs, false, 'charger refused');
    }
  }

  private async onEnd(msg: Message & { txid: string; status: number }, signer: string): Promise<void> {
    const s = this.session(msg.txid);
    if (!s || signer !== s.ev) return;
    if (s.state === 'charging') await this.end(s, msg.status, true, 'ended by the EV');
    else if (s.state === 'offered') await this.giveUp(s, 'the EV ended the session before it started');
  }

  private async onPeerReport(
    msg: MessageOf<'chargeReceived'>,
    signer: string,
    envelope: Uint8Array,
  ): Promise<void> {
    const s = this.session(msg.txid);
    if (!s || signer !== s.ev || msg.hcs !== this.agent.address) return;
    const hex = Buffer.from(envelope).toString('hex');
    const index = interimIndex(msg.optional);
    if (index === 0) {
      // A consent after we gave the session up: not reserved by us, but if someone reserves it
      // (the edge got it in time), it closes that reservation at 0 Wh (closeUnused).
      if (s.state === 'failed' && s.closeAtZero && !s.consent) {
        Object.assign(s, {
          consent: hex,
          closeAtZero: { nextAt: Date.now(), everyMs: CLOSE_CHECK_MS.first },
        });
        this.agent.save(s);
        return;
      }
      // The EV's consent: it reserves the session (ourselves without an edge; the edge batches it).
      if (s.state !== 'offered' || s.consent) return;
      s.consent = hex;
      s.deadline = Date.now() + this.agent.cfg.timeouts.replyMs * 2;
      this.agent.save(s);
      if (!s.server) await this.reserve(s);
      return;
    }
    // A receipt, interim or final: the highest figure the EV signed is what it acknowledged.
    const wh = Number(msg.energyWh);
    if (s.ackWh === undefined || wh >= s.ackWh) {
      s.ackWh = wh;
      s.ackReport = hex;
    }
    s.lastAckAt = Date.now();
    if (index === undefined && !s.peerReport) s.peerReport = hex; // the final report
    this.agent.save(s);
    if (index === undefined && s.state === 'awaitingSettlement') await this.checkSettlement(s, Date.now());
  }

  private async onTransaction(msg: MessageOf<'transaction'>, signer: string): Promise<void> {
    const s = this.session(msg.txid);
    if (signer !== s?.server) return;
    // The edge's word that the reservation is on chain: the chain is asked now, not at the next
    // tick (once a second while the station waits, idle); it alone decides the switch-on.
    if (s.state === 'offered' && msg.paymentStatus === PAYMENT_STATUS.pending)
      return this.checkReservation(s, Date.now());
    if (s.state !== 'awaitingSettlement') return;
    if (msg.paymentStatus === PAYMENT_STATUS.settled || msg.paymentStatus === PAYMENT_STATUS.disputed) {
      this.agent.move(s, 'done', { deadline: 0 });
      this.agent.prune();
    } else if (msg.paymentStatus === PAYMENT_STATUS.failed) {
      this.agent.move(s, 'failed', { error: 'the chain refused the bill', deadline: 0 });
    }
  }

  private async settle(s: SessionIn<'awaitingSettlement'>): Promise<void> {
    if (!bestEvReport(s)) return;
    const result = await settleDirectly(this.agent, s);
    if (result.done) {
      this.agent.move(s, 'done', { deadline: 0, ...(result.txHash ? { settledTxHash: result.txHash } : {}) });
      this.agent.prune();
    } else if (result.error) {
      this.agent.move(s, 'failed', { error: result.error, deadline: 0 });
    }
  }

  async tick(): Promise<void> {
    const now = Date.now();
    // What the charger saw (plug-out, fault, a stop of its own); it also feeds its failsafe.
    const seen = await this.charger.watch(this.agent.openSessions().find((s) => s.state === 'charging'));
    for (const s of this.agent.openSessions()) {
      if (s.state === 'offered') {
        await this.checkReservation(s, now);
      } else if (s.state === 'charging') {
        const end = await pollCharging(this.agent, s, s.terms.maxWh, END.stoppedByHcs);
        // The receipt rule is judged on a fresh reading only: a failing meter (whose retries hold
        // up this tick, and with it the receipts) ends the charge as a meter fault, not as a silent EV.
        const fresh = this.agent.metering.consecutiveErrors === 0;
        const decision =
          end !== undefined
            ? { status: end, why: 'meter' }
            : seen
              ? CHARGER_ENDS[seen]
              : fresh
                ? switchOffDecision(s, Date.now(), this.rules)
                : undefined;
        if (decision) {
          if (decision.why !== 'meter')
            this.agent.log.warn({ txid: s.txid, why: decision.why }, 'switching off');
          await this.end(s, decision.status, false, decision.why);
        }
      } else if (s.state === 'awaitingSettlement') {
        await this.checkSettlement(s, now);
      }
    }
    for (const id of this.closing) {
      const s = this.agent.sessions.get(id);
      if (s?.closeAtZero) await this.closeUnused(s, now);
      else this.closing.delete(id);
    }
  }

  /** An offer waits for the EV's consent and its reservation on chain, then the charger switches on. */
  private async checkReservation(s: SessionIn<'offered'>, now: number): Promise<void> {
    if (s.consent) {
      const state = await this.agent.chain.retry('sessionState', () =>
        this.agent.chain.client.sessionState(this.agent.address, big(s.terms.seq)),
      );
      if (state === ChainSessionState.Reserved) return this.switchOn(s);
      // The edge has not reserved it in time (away?): reserve it ourselves. (The consent set the
      // deadline two reply times ahead; receipts that follow it must not push this back.)
      if (s.server && now > s.deadline - this.agent.cfg.timeouts.replyMs) return this.reserve(s);
    }
    if (s.deadline && now > s.deadline) {
      // No consent came (the car gave up waiting for our answer, or its consent was lost), or no
      // reservation: say so to the car and the edge, which otherwise keeps this station taken for
      // the agreement until its settlement window closes (at 2,000 × 400, under load, hundreds of
      // stations stood idle that way), and close a reservation that lands after all at 0 Wh.
      await this.giveUp(
        s,
        s.consent ? 'the session was not reserved in time' : 'no mutual agreement in time',
        END.timeout,
      );
    }
  }

  /**
   * Gives up a session whose charger was never switched on (no consent or no reservation in time,
   * the EV ended it first, the meter unreadable at the start): nothing can have been delivered
   * for it. The station signs that, a chargeProvided at 0 Wh, and sends it to the edge, with the
   * end (termination `status`) to the car and the edge unless the car ended it or it went already;
   * both resent until acknowledged. A reservation of it, standing or still on its way, held one of
   * the station's 16 ring slots (seq mod 16) until settleBy, and the contract refused one in 16
   * of its later sessions (`TooManyOpenReservations`, 3–4 in each 30-minute chaos run): with the
   * EV's consent and this report it settles at 0 Wh at once, by us (closeUnused) or by the edge,
   * whichever is first (the other gets `AlreadySettled`). Neither party pays or is paid anything.
   */
  private async giveUp(s: SessionIn<'offered' | 'failed'>, error?: string, status?: number): Promise<void> {
    const { txid, terms, ev } = s;
    if (!txid || !terms || s.zeroReport) return;
    const report = await this.agent.bus.sign({
      type: 'chargeProvided',
      ev,
      hcs: this.agent.address,
      txid,
      energyWh: 0n,
      optional: {
        m: this.agent.metering.serial,
        p: this.agent.metering.profile,
        st: status ?? END.stoppedByEv,
        z: 1,
      },
    });
    const patch = {
      zeroReport: Buffer.from(report).toString('hex'),
      closeAtZero: { nextAt: Date.now(), everyMs: CLOSE_CHECK_MS.first },
    };
    if (s.state === 'offered')
      this.agent.move(s, 'failed', { error: error ?? 'given up', deadline: 0, ...patch });
    else this.agent.save(Object.assign(s, patch));
    this.closing.add(s.id);
    const to = [ev, ...(s.server ? [s.server] : [])];
    if (status !== undefined) {
      const end = { type: 'termination', ev, hcs: this.agent.address, txid, status } as const;
      const envelope = await this.agent.bus.sign(end);
      for (const dest of to)
        await this.agent.sendEnvelopeReliably(dest, envelope, end.type, txid, terms.settleBy);
    }
    if (s.server)
      await this.agent.sendEnvelopeReliably(s.server, report, 'chargeProvided', txid, terms.settleBy);
    await this.closeUnused(s, Date.now());
  }

  /**
   * The 0 Wh close of a session given up before it charged (giveUp), once we hold the EV's
   * consent: settled as soon as the chain shows it reserved; asked again, less and less often,
   * while it is not (a reservation on its way may still land) until settleBy, after which the
   * contract refuses it and the EV releases the reservation itself.
   */
  private async closeUnused(s: SessionRecord, now: number): Promise<void> {
    const { closeAtZero: close, consent, zeroReport, terms, txid } = s;
    if (!close || !consent || !zeroReport || !terms || !txid || now < close.nextAt) return;
    const done = (why: string) => {
      delete s.closeAtZero;
      this.agent.save(s);
      this.agent.log.info({ txid: s.txid, why }, 'unused session closed');
    };
    if (now / 1000 > terms.settleBy) return done('its window is over');
    const later = () => {
      const everyMs = Math.min(close.everyMs * 2, CLOSE_CHECK_MS.max);
      s.closeAtZero = { nextAt: now + close.everyMs, everyMs };
      this.agent.save(s);
    };
    let state: number;
    try {
      state = await this.agent.chain.retry('sessionState', () =>
        this.agent.chain.client.sessionState(this.agent.address, big(terms.seq)),
      );
    } catch {
      return later();
    }
    // Not (yet) reserved: a reservation on its way may still land.
    if (state === ChainSessionState.None) return later();
    if (state !== ChainSessionState.Reserved) return done('settled or released on chain');
    const result = await settleOnChain(
      this.agent,
      { ev: s.ev, hcs: this.agent.address, txid, terms },
      consent,
      zeroReport,
    );
    if (result.done) return done(result.txHash ? 'settled at 0 Wh' : 'settled by the edge');
    if (result.error) return done(result.error);
    later();
  }

  /**
   * Without an edge, settle as soon as the EV's final report is here (or, past the report
   * deadline, with its highest receipt). With one, only as a fallback; but a bill outside the
   * tolerance only the station itself can settle, at once.
   */
  private async checkSettlement(s: SessionIn<'awaitingSettlement'>, now: number): Promise<void> {
    const evReport = bestEvReport(s);
    // Nothing delivered (a good final reading equal to the start) and nothing acknowledged: a 0 Wh
    // bill now, not after the report wait and the edge's turn; its reservation held one of the
    // station's 16 ring slots (seq mod 16) meanwhile. A 0 Wh report from a failing meter is not
    // this: energy may have flowed; it waits as any other bill.
    if (
      s.nothingDelivered &&
      evReport &&
      reportEnergyWh(evReport) === 0n &&
      reportEnergyWh(s.myReport) === 0n
    )
      return this.settle(s);
    // The EV's final report is awaited until the report deadline; then its highest receipt serves,
    // at once if it agrees with our meter, else only after the fallback time (a disagreement costs
    // us the difference: the final report, late on a busy network, deserves the longer wait).
    if (!s.peerReport && now <= s.deadline) return;
    const disputed =
      evReport !== undefined &&
      !withinToleranceOf(this.agent.chain.deployment, reportEnergyWh(evReport), reportEnergyWh(s.myReport));
    const fallbackAt = s.updatedAt + this.agent.cfg.timeouts.settleFallbackMs;
    if (!s.peerReport && disputed && now < fallbackAt) return;
    if (s.server && s.peerReport && !disputed && now < fallbackAt) return;
    if (evReport) return this.settle(s);
    if (now > s.deadline) {
      const state = await this.agent.chain.retry('sessionState', () =>
        this.agent.chain.client.sessionState(this.agent.address, big(s.terms.seq)),
      );
      if (isSettledState(state)) this.agent.move(s, 'done', { deadline: 0 });
      else if (now / 1000 > s.terms.settleBy)
        this.agent.move(s, 'failed', {
          error: 'no receipt from the EV within the settlement window',
          deadline: 0,
        });
    }
  }

  async control(action: string): Promise<unknown> {
    if (action === 'stop') {
      const s = this.agent.openSessions().find((x): x is SessionIn<'charging'> => isIn(x, 'charging'));
      if (!s) throw new Error('no charge in progress');
      await this.end(s, END.stoppedByHcs, false, 'stopped by the owner');
      return { id: s.id, state: s.state };
    }
    throw new Error(`unknown action ${action}: try stop`);
  }

  status(): Record<string, unknown> {
    const price = BigInt(this.station.priceWeiPerKWh);
    return {
      ...this.charger.status(),
      hcs: {
        priceWeiPerKWh: price.toString(),
        pricePerKWhEther: Number(billWei(1000n, price)) / 1e18,
        seq: this.agent.journal.get('seq') ?? '0',
      },
    };
  }
}
