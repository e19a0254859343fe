/**
 * The home charging station. Answers requests by its own rules (one car at a time, service
 * hours, the EV's deposit must cover the session's cap), fixes the terms (its own session counter
 * `seq`, its price, the cap, the settlement window), meters the charge, signs chargeProvided, and
 * makes sure it is paid: through the edge, or by settling directly when there is none or the edge
 * has not settled in time.
 */
import { SessionState as ChainSessionState } from '../../contracts/client.js';
import {
  billWei,
  computeTxId,
  type Message,
  type MessageOf,
  PAYMENT_STATUS,
  REQUEST_STATUS,
} from '../../protocol/index.js';
import type { Incoming } from '../core/bus.js';
import { big } from '../core/journal.js';
import type { Agent, Role } from '../core/runtime.js';
import { END, type SessionRecord, type TermsJson, termsFromJson, nonceOf } from '../core/session.js';
import { beginCharging, endCharging, pollCharging, resumeCharging, resumeReport } from './charging.js';
import { settleDirectly } from './settle.js';

/** Whether `now` (local time) is inside "HH:MM-HH:MM" (a window may run past midnight). */
export function withinServiceHours(hours: string, now = new Date()): boolean {
  const [from, to] = hours.split('-').map((t) => {
    const [h, m] = t.split(':').map(Number);
    return h! * 60 + m!;
  });
  const minute = now.getHours() * 60 + now.getMinutes();
  return from! <= to! ? minute >= from! && minute < to! : minute >= from! || minute < to!;
}

export class HcsRole implements Role {
  private readonly hcs: NonNullable<Agent['cfg']['hcs']>;

  constructor(private readonly agent: Agent) {
    this.hcs = agent.cfg.hcs!;
  }

  private get busy(): boolean {
    return this.agent.openSessions().some((s) => s.state === 'offered' || s.state === 'charging');
  }

  private nextSeq(): bigint {
    // Journaled before it is offered: a seq is never handed out twice, even across a crash.
    const seq = big(this.agent.journal.get<string>('seq') ?? '0') + 1n;
    this.agent.journal.put('seq', seq.toString());
    return seq;
  }

  async resume(): Promise<void> {
    for (const s of this.agent.openSessions()) {
      if (s.state === 'awaitingSettlement') await resumeReport(this.agent, s);
      if (s.state === 'charging') await resumeCharging(this.agent, s, this.hcs.powerKw);
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
    if (!(await this.agent.metering!.ready()))
      return this.reply(ev, REQUEST_STATUS.busy, { why: 'meter', ...nonce });
    if (!withinServiceHours(this.hcs.serviceHours))
      return this.reply(ev, REQUEST_STATUS.reject, { why: 'closed', ...nonce });
    const price = BigInt(this.hcs.priceWeiPerKWh);
    const available = await this.agent.chain.retry('availableDeposit', () =>
      this.agent.chain.client.availableDeposit(ev),
    );
    // The cap: what the car asked for (plus a margin), the station's limit, and what the deposit covers.
    const wanted = Number((msg.optional as { wh?: number } | undefined)?.wh ?? this.hcs.maxSessionWh);
    const affordable = price > 0n ? Number((available * 1000n) / price) : this.hcs.maxSessionWh;
    const maxWh = Math.min(Math.ceil(wanted * 1.2) + 1000, this.hcs.maxSessionWh, affordable);
    if (maxWh < Math.min(wanted, 1000))
      return this.reply(ev, REQUEST_STATUS.reject, { why: 'deposit', ...nonce });
    const terms: TermsJson = {
      seq: this.nextSeq().toString(),
      price: price.toString(),
      maxWh,
      settleBy: Math.floor(Date.now() / 1000) + this.hcs.settlementWindowS,
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
      kw: this.hcs.powerKw,
      createdAt: Date.now(),
      updatedAt: Date.now(),
    };
    this.agent.save(s);
    const optional = { ...terms, kw: this.hcs.powerKw, ...nonce };
    await this.reply(ev, REQUEST_STATUS.accept, optional);
    if (server) {
      // The edge forms the agreement: it checks the deposit and sends the mutual to both.
      await this.agent.send(server, {
        type: 'response',
        status: REQUEST_STATUS.accept,
        sender: this.agent.address,
        receiver: ev,
        optional,
      });
      return;
    }
    // No edge: the two parties agree directly; this station plays the server.
    await this.agent.send(ev, {
      type: 'mutual',
      server: this.agent.address,
      ev,
      hcs: this.agent.address,
      txid,
      optional: terms as unknown as Record<string, unknown>,
    });
    await beginCharging(this.agent, s, this.hcs.powerKw);
  }

  private async onMutual(msg: MessageOf<'mutual'>, signer: string): Promise<void> {
    const s = this.session(msg.txid);
    if (s?.state !== 'offered' || msg.hcs !== this.agent.address || msg.ev !== s.ev) return;
    if (signer !== s.server) return;
    await beginCharging(this.agent, s, this.hcs.powerKw);
  }

  private async onEnd(msg: Message & { txid: string; status: number }, signer: string): Promise<void> {
    const s = this.session(msg.txid);
    if (!s || signer !== s.ev) return;
    if (s.state === 'charging') await endCharging(this.agent, s, msg.status, true);
    else if (s.state === 'offered')
      this.agent.move(s, 'failed', { error: 'the EV ended the session before it started', deadline: 0 });
  }

  private async onPeerReport(
    msg: MessageOf<'chargeReceived'>,
    signer: string,
    envelope: Uint8Array,
  ): Promise<void> {
    const s = this.session(msg.txid);
    if (!s || signer !== s.ev || msg.hcs !== this.agent.address || s.peerReport) return;
    // Keep the EV's signed report: with it this station can settle on its own.
    s.peerReport = Buffer.from(envelope).toString('hex');
    this.agent.save(s);
    if (s.state === 'awaitingSettlement' && !s.server) await this.settle(s);
  }

  private async onTransaction(msg: MessageOf<'transaction'>, signer: string): Promise<void> {
    const s = this.session(msg.txid);
    if (signer !== s?.server) return;
    if (s?.state !== 'awaitingSettlement') return;
    if (msg.paymentStatus === PAYMENT_STATUS.settled || msg.paymentStatus === PAYMENT_STATUS.disputed) {
      this.agent.move(s, 'done', { deadline: 0 });
      this.agent.prune();
    } else if (msg.paymentStatus === PAYMENT_STATUS.failed) {
      this.agent.move(s, 'failed', { error: 'the chain refused the bill', deadline: 0 });
    }
  }

  private async settle(s: SessionRecord): Promise<void> {
    if (!s.myReport || !s.peerReport) return;
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
    for (const s of this.agent.openSessions()) {
      if (s.state === 'offered' && s.deadline && now > s.deadline) {
        this.agent.move(s, 'failed', { error: 'no mutual agreement in time', deadline: 0 });
      } else if (s.state === 'charging') {
        const end = await pollCharging(this.agent, s, s.terms!.maxWh, END.stoppedByHcs);
        if (end !== undefined) await endCharging(this.agent, s, end, false);
      } else if (s.state === 'awaitingSettlement') {
        await this.checkSettlement(s, now);
      }
    }
  }

  /** Without an edge, settle as soon as both reports are here; with one, only as a fallback. */
  private async checkSettlement(s: SessionRecord, now: number): Promise<void> {
    const fallbackAt = s.updatedAt + this.agent.cfg.timeouts.settleFallbackMs;
    if (s.server && now < fallbackAt) return;
    if (s.peerReport) return this.settle(s);
    if (now > s.deadline) {
      const state = await this.agent.chain.retry('sessionState', () =>
        this.agent.chain.client.sessionState(this.agent.address, big(s.terms!.seq)),
      );
      if (state === ChainSessionState.Settled || state === ChainSessionState.Rated)
        this.agent.move(s, 'done', { deadline: 0 });
      else if (now / 1000 > s.terms!.settleBy)
        this.agent.move(s, 'failed', {
          error: 'no report from the EV within the settlement window',
          deadline: 0,
        });
    }
  }

  async control(action: string): Promise<unknown> {
    if (action === 'stop') {
      const s = this.agent.openSessions().find((x) => x.state === 'charging');
      if (!s) throw new Error('no charge in progress');
      await endCharging(this.agent, s, END.stoppedByHcs, false);
      return { id: s.id, state: s.state };
    }
    throw new Error(`unknown action ${action}: try stop`);
  }

  status(): Record<string, unknown> {
    const price = BigInt(this.hcs.priceWeiPerKWh);
    return {
      hcs: {
        priceWeiPerKWh: price.toString(),
        pricePerKWhEther: Number(billWei(1000n, price)) / 1e18,
        seq: this.agent.journal.get('seq') ?? '0',
      },
    };
  }
}
