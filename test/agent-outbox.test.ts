/**
 * The outbox (agent/core/outbox.ts) on its own: journaled before it is published, resent on a
 * backing-off schedule until the receiver's ack, picked up again from the journal after a restart,
 * given up after its window; and the ack messages the bus sends.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Journal } from '../agent/core/journal.js';
import { createLogger } from '../agent/core/log.js';
import { ackIdOf, ackMessage, ackOf, needsAck, Outbox } from '../agent/core/outbox.js';
import { addressOf, decode, encode, PAYMENT_STATUS, signEnvelope } from '../protocol/index.js';
import { tempDir } from './helpers/world.js';

const domain = { chainId: 31337n, verifyingContract: `0x${'33'.repeat(20)}` };
const evKey = `0x${randomBytes(32).toString('hex')}`;
const ev = addressOf(evKey);
const hcs = addressOf(`0x${randomBytes(32).toString('hex')}`);
const edge = addressOf(`0x${randomBytes(32).toString('hex')}`);
const txid = `0x${randomBytes(32).toString('hex')}`;
const log = createLogger({ level: 'silent' });
const completion = signEnvelope(encode({ type: 'completion', ev, hcs, txid }), evKey, domain);

describe('the outbox', () => {
  it('journals first, resends 3 s, 6 s, 12 s … until acknowledged, and resumes after a restart', async () => {
    const dir = tempDir('outbox');
    const journal = new Journal(dir);
    const sent: { to: string; at: number }[] = [];
    let clock = 0;
    const outbox = new Outbox(
      journal,
      async (to) => {
        // Journaled before it is published.
        expect(Journal.read(dir).size).toBeGreaterThan(0);
        sent.push({ to, at: clock });
      },
      log,
    );
    const t0 = Date.now();
    clock = t0;
    await outbox.send(hcs, completion, 'completion', txid, t0 + 3_600_000);
    await outbox.send(edge, completion, 'completion', txid, t0 + 3_600_000);
    expect(sent.map((s) => s.to)).toEqual([hcs, edge]);
    for (const dt of [1000, 3100, 5000, 9200, 21_300]) {
      clock = t0 + dt;
      await outbox.tick(clock);
    }
    // Each receiver: sent at 0, again at 3.1 s and 9.2 s (6 s later), and at 21.3 s (12 s later).
    expect(sent.filter((s) => s.to === hcs).map((s) => s.at - t0)).toEqual([0, 3100, 9200, 21_300]);
    // The station acknowledges: only the edge's copy goes on.
    expect(outbox.ack(ackIdOf(completion), hcs)).toBe(true);
    expect(outbox.ack(ackIdOf(completion), ev)).toBe(false);
    journal.close();
    // After a restart the edge's copy is sent at once, and again until acknowledged.
    const again = new Journal(dir);
    const after: string[] = [];
    const resumed = new Outbox(again, async (to) => void after.push(to), log);
    expect(resumed.size).toBe(1);
    await resumed.tick();
    expect(after).toEqual([edge]);
    resumed.ack(ackIdOf(completion), edge);
    expect(resumed.size).toBe(0);
    again.close();
    expect([...Journal.read(dir).keys()].filter((k) => k.startsWith('o:'))).toEqual([]);
  });

  it('gives up after the window, and drops what a finished session no longer needs', async () => {
    const journal = new Journal(tempDir('outbox'));
    const outbox = new Outbox(journal, async () => {}, log);
    await outbox.send(hcs, completion, 'completion', txid, Date.now() + 1000);
    await outbox.tick(Date.now() + 2000);
    expect(outbox.size).toBe(0);
    expect(outbox.figures.expired).toBe(1);
    await outbox.send(hcs, completion, 'completion', txid, Date.now() + 60_000);
    await outbox.send(edge, completion, 'chargeReceived', txid, Date.now() + 60_000);
    outbox.settle(txid, (e) => e.type === 'chargeReceived');
    expect(outbox.size).toBe(1);
    journal.close();
  });

  it('acks: a completion from a party, an amount from the edge, each naming the envelope', () => {
    const msg = decode(completion.subarray(0, completion.length - 65));
    const id = ackIdOf(completion);
    const fromHcs = ackMessage(hcs, false, msg, id)!;
    expect(fromHcs).toMatchObject({ type: 'completion', ev, hcs, txid, optional: { ack: id } });
    expect(ackOf(decode(encode(fromHcs)))).toBe(id);
    const fromEdge = ackMessage(edge, true, msg, id)!;
    expect(fromEdge).toMatchObject({
      type: 'amount',
      server: edge,
      txid,
      amountWei: 0n,
      optional: { ack: id },
    });
    expect(ackOf(decode(encode(fromEdge)))).toBe(id);
    // Someone who is neither party cannot sign a party's completion: no ack from it.
    expect(ackMessage(edge, false, msg, id)).toBeUndefined();
    // A plain completion is no ack.
    expect(ackOf(msg)).toBeUndefined();
  });

  it('acks every transaction but the edge’s notice of a reservation (pending: a hint the station checks on chain), and no bill (amount)', () => {
    const tx = (paymentStatus: number) =>
      ({
        type: 'transaction',
        txid,
        sender: ev,
        receiver: hcs,
        amountWei: 0n,
        paymentStatus,
        rating: 0,
        comment: '',
      }) as const;
    expect(needsAck(tx(PAYMENT_STATUS.settled))).toBe(true);
    expect(needsAck(tx(PAYMENT_STATUS.failed))).toBe(true);
    expect(needsAck(tx(PAYMENT_STATUS.pending))).toBe(false);
    // The edge's bill is a note: sent once (the transaction after it is what is acknowledged).
    const bill = {
      type: 'amount',
      server: edge,
      txid,
      sender: ev,
      receiver: hcs,
      amountWei: 123n,
      paymentStatus: PAYMENT_STATUS.pending,
    } as const;
    expect(needsAck(bill)).toBe(false);
    expect(needsAck({ ...bill, paymentStatus: PAYMENT_STATUS.disputed })).toBe(false);
  });
});
