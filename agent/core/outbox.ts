/**
 * Messages that matter, resent until their peer acknowledges them (docs/PROTOCOL.md,
 * Acknowledgements): the end of a charge (completion, termination), the signed reports
 * (chargeReceived, chargeProvided) and the edge's answers (amount, transaction). QoS 1 alone is
 * not enough: a broker killed between accepting a message and delivering it, or restarted without
 * its sessions, loses it, and nothing upstream would ever send it again.
 *
 * Every such envelope is journaled (`o:<ack id>:<to>`) before it is first published (staged, and
 * flushed by the bus before its writes leave the process: agent/core/journal.ts), and published
 * again — 3 s, 6 s, 12 s … at most every 60 s — until the receiver's ack for it arrives, the session
 * it belongs to is over, or its settlement window has long passed. The journal keeps it across the
 * sender's own restarts: a resumed agent resends at once.
 *
 * The ack: a receiver acknowledges every such envelope it accepted (after its handler journaled
 * what it learnt) and every repeat of one (without handling it again), with a message of the wire
 * protocol carrying `ack` in its optional data: the first 8 bytes of the acknowledged envelope's
 * signature, hex. An EV or a station acks with a `completion` naming the session; the edge with an
 * `amount` naming it (paymentStatus pending, amount 0). An ack is never handled as what its type
 * says, is not itself acknowledged, and is not kept in the replay cache.
 */
import {
  type Message,
  type MessageInput,
  type MessageName,
  PAYMENT_STATUS,
  SIGNATURE_BYTES,
  toHex,
} from '../../protocol/index.js';
import type { Journal } from './journal.js';
import type { Logger } from './log.js';

/**
 * What is resent until acknowledged. Not the edge's `amount` (the reconciled bill, docs/PROTOCOL.md):
 * a note neither party acts on (each decides a dispute from the reports it holds, and learns the
 * outcome from the `transaction` that follows, which is acknowledged); its two acks were two
 * messages, two signatures and two signer recoveries a session.
 */
export const ACKED_TYPES: ReadonlySet<MessageName> = new Set([
  'completion',
  'termination',
  'chargeReceived',
  'chargeProvided',
  'transaction',
]);

/**
 * Whether a message is acknowledged: the types above, but not an interim receipt (a
 * chargeReceived with `i`, docs/PROTOCOL.md: the next one supersedes it, and there is one a minute),
 * nor the edge's notice that a reservation is on chain (a `transaction` at `pending`: a hint the
 * station checks on chain, its own tick the fallback).
 */
export function needsAck(msg: Message): boolean {
  if (!ACKED_TYPES.has(msg.type)) return false;
  if (msg.type === 'transaction') return msg.paymentStatus !== PAYMENT_STATUS.pending;
  return !(msg.type === 'chargeReceived' && (msg.optional as { i?: unknown } | undefined)?.i !== undefined);
}

/** The id an ack names: the first 8 bytes of the envelope's signature (unique per envelope), hex. */
export function ackIdOf(envelope: Uint8Array): string {
  const sig = envelope.subarray(envelope.length - SIGNATURE_BYTES);
  return toHex(sig.subarray(0, 8)).slice(2);
}

/** The id a message acknowledges, if it is an ack (a completion or amount with `ack`). */
export function ackOf(msg: Message): string | undefined {
  if (msg.type !== 'completion' && msg.type !== 'amount') return undefined;
  const ack = (msg.optional as { ack?: unknown } | undefined)?.ack;
  return typeof ack === 'string' && /^[0-9a-f]{16}$/.test(ack) ? ack : undefined;
}

/** The session an acknowledged message names: (ev, hcs, txid). */
function sessionOf(msg: Message): { ev: string; hcs: string; txid: string } | undefined {
  switch (msg.type) {
    case 'completion':
    case 'termination':
    case 'chargeReceived':
    case 'chargeProvided':
      return { ev: msg.ev, hcs: msg.hcs, txid: msg.txid };
    case 'amount':
    case 'transaction':
      return { ev: msg.sender, hcs: msg.receiver, txid: msg.txid };
    default:
      return undefined;
  }
}

/** The ack for `acked` (an envelope of ACKED_TYPES), signed by `me`: the edge, or a party. */
export function ackMessage(
  me: string,
  isServer: boolean,
  acked: Message,
  id: string,
): MessageInput | undefined {
  const s = sessionOf(acked);
  if (!s) return undefined;
  if (isServer)
    return {
      type: 'amount',
      server: me,
      txid: s.txid,
      sender: s.ev,
      receiver: s.hcs,
      amountWei: 0n,
      paymentStatus: PAYMENT_STATUS.pending,
      optional: { ack: id },
    };
  // A party can only sign as the session's EV or station.
  if (me !== s.ev && me !== s.hcs) return undefined;
  return { type: 'completion', ev: s.ev, hcs: s.hcs, txid: s.txid, optional: { ack: id } };
}

export interface OutboxEntry {
  to: string;
  /** The envelope, hex (no 0x). */
  env: string;
  type: string;
  txid: string;
  /** Give up after this (ms since epoch): the session can no longer settle. */
  until: number;
}

const FIRST_RESEND_MS = 3000;
const MAX_RESEND_MS = 60_000;
/** Entries kept at most (the oldest go first); an edge has ~4 per bill in flight. */
const MAX_ENTRIES = 4000;

export class Outbox {
  /** When each entry is due again, and how often it was sent (memory only: after a restart, all are due). */
  private readonly due = new Map<string, { at: number; tries: number }>();
  /** The journaled entries, also in memory: the tick must not walk the whole journal. */
  private readonly entries = new Map<string, OutboxEntry>();
  readonly figures = { resent: 0, acked: 0, expired: 0 };

  /**
   * `publish` sends an envelope; `publishFlushes`: whether it writes the journal to disk itself
   * before the envelope leaves the process (the bus does: its `beforeSend`). Then the entries are
   * only staged here, and go to disk with everything else of the turn in one write: an edge sends
   * a batch's 100 transaction messages in one turn, and a flush for each was ~2 % of its CPU (and
   * 100 fsyncs on an SD card). Otherwise every send flushes before it publishes.
   */
  constructor(
    private readonly journal: Journal,
    private readonly publish: (to: string, envelope: Uint8Array, type: string) => Promise<void>,
    private readonly log: Logger,
    private readonly publishFlushes = false,
  ) {
    for (const [key, e] of journal.list<OutboxEntry>('o:')) this.entries.set(key, e);
  }

  private static key(id: string, to: string): string {
    return `o:${id}:${to.toLowerCase()}`;
  }

  /**
   * Journals the envelope for `to` (each of several: one envelope to both parties), then publishes
   * it; it is resent until acknowledged. One write and fsync for all of them, with whatever else was
   * staged this turn (agent/core/journal.ts), before anything is published: here, or by the
   * publisher before its writes leave (`publishFlushes`).
   */
  async send(
    to: string | readonly string[],
    envelope: Uint8Array,
    type: string,
    txid: string,
    until: number,
  ): Promise<void> {
    const dests = typeof to === 'string' ? [to] : to;
    const id = ackIdOf(envelope);
    let hex: string | undefined;
    for (const dest of dests) {
      const key = Outbox.key(id, dest);
      if (!this.entries.has(key)) {
        const oldest = this.entries.size >= MAX_ENTRIES ? this.entries.keys().next().value : undefined;
        if (oldest !== undefined) this.forget(oldest);
        hex ??= Buffer.from(envelope).toString('hex');
        const entry: OutboxEntry = { to: dest.toLowerCase(), env: hex, type, txid, until };
        this.journal.stage(key, entry);
        this.entries.set(key, entry);
      }
      this.due.set(key, { at: Date.now() + FIRST_RESEND_MS, tries: 1 });
    }
    if (!this.publishFlushes) this.journal.flush();
    for (const dest of dests) await this.publish(dest, envelope, type);
  }

  /** The ack `id` from `from` arrived: that entry is done. */
  ack(id: string, from: string): boolean {
    const key = Outbox.key(id, from);
    if (!this.entries.has(key)) return false;
    this.figures.acked++;
    this.forget(key);
    return true;
  }

  /** The session is over for us (settled or failed): nothing of it needs resending, but what `keep` keeps. */
  settle(txid: string, keep: (e: OutboxEntry) => boolean = () => false): void {
    for (const [key, e] of this.entries) if (e.txid === txid && !keep(e)) this.forget(key);
  }

  private forget(key: string): void {
    // Lost in a crash, it is only sent once more (and acknowledged again).
    this.journal.stageDelete(key);
    this.entries.delete(key);
    this.due.delete(key);
  }

  /** Entries waiting for an ack. */
  get size(): number {
    return this.entries.size;
  }

  /** Resends what is due (called every tick). */
  async tick(now = Date.now()): Promise<void> {
    for (const [key, e] of [...this.entries]) {
      if (e.until < now) {
        this.figures.expired++;
        this.log.warn(
          { to: e.to, type: e.type, txid: e.txid },
          'never acknowledged; given up after its window',
        );
        this.forget(key);
        continue;
      }
      const d = this.due.get(key) ?? { at: 0, tries: 0 };
      if (d.at > now) continue;
      d.tries++;
      d.at = now + Math.min(MAX_RESEND_MS, FIRST_RESEND_MS * 2 ** Math.min(d.tries - 1, 10));
      this.due.set(key, d);
      this.figures.resent++;
      await this.publish(e.to, Buffer.from(e.env, 'hex'), e.type).catch(() => {});
    }
  }
}

/** How long a session's messages are worth resending: its settlement window, and a little more. */
export function resendUntil(settleBy: number): number {
  return (settleBy + 300) * 1000;
}
