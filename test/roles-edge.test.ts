/**
 * The edge's billing, in-process through its narrow context (test/fakes/context.ts): no chain
 * node, no broker. The bill is always the smaller of the two reports, within tolerance or not; the
 * `amount` message both parties get and the journaled bill say the same.
 */
import { describe, expect, it } from 'vitest';
import { type Bill, EdgeRole } from '../agent/roles/edge.js';
import { billWei, PAYMENT_STATUS, REQUEST_STATUS } from '../protocol/index.js';
import { type Fake, fakeContext, incoming, party } from './fakes/context.js';
import type { RoleContext } from '../agent/core/context.js';

const PRICE = 300_000_000_000_000n; // wei per kWh

async function agreedSession() {
  const fake = fakeContext('edge', { edge: { batchSize: 10, batchMaxWaitMs: 60_000 } });
  const edge = new EdgeRole(fake.ctx);
  const ev = party();
  const hcs = party();
  const terms = {
    seq: '7',
    price: PRICE.toString(),
    maxWh: 20_000,
    settleBy: Math.floor(Date.now() / 1000) + 3600,
  };
  await edge.onMessage(
    incoming(hcs, {
      type: 'response',
      status: REQUEST_STATUS.accept,
      sender: hcs.address,
      receiver: ev.address,
      optional: terms,
    }),
  );
  // The deposit is read beside the lock: the agreement follows its answer.
  await edge.agreements();
  const mutual = fake.sent.filter((m) => m.msg.type === 'mutual');
  expect(mutual.map((m) => m.to)).toEqual([ev.address, hcs.address]);
  const first = mutual[0]?.msg;
  if (first?.type !== 'mutual') throw new Error('no mutual agreement sent');
  const txid = first.txid;
  return { fake, edge, ev, hcs, txid };
}

async function report(
  s: { edge: EdgeRole; ev: ReturnType<typeof party>; hcs: ReturnType<typeof party>; txid: string },
  evWh: bigint,
  hcsWh: bigint,
) {
  const fields = { ev: s.ev.address, hcs: s.hcs.address, txid: s.txid };
  await s.edge.onMessage(incoming(s.ev, { type: 'chargeReceived', ...fields, energyWh: evWh }));
  await s.edge.onMessage(incoming(s.hcs, { type: 'chargeProvided', ...fields, energyWh: hcsWh }));
}

/** The bills as the edge holds them (the journal keeps their envelopes apart: `e:<txid>:<field>`). */
const billsOf = (edge: EdgeRole) => (edge as unknown as { bills: Map<string, Bill> }).bills;

const amounts = (fake: Fake<RoleContext>) =>
  fake.sent
    .filter((m) => m.msg.type === 'amount')
    .map((m) => ({ to: m.to, ...(m.msg as { amountWei: bigint; paymentStatus: number }) }));

describe('the edge bills by the contract’s rule', () => {
  it.each([
    ['the station says more, within tolerance', 1000n, 1008n, PAYMENT_STATUS.pending],
    ['the EV says more, within tolerance', 1008n, 1000n, PAYMENT_STATUS.pending],
    ['the station says far more (disputed)', 1000n, 1500n, PAYMENT_STATUS.disputed],
    ['the EV says far more (disputed)', 1500n, 1000n, PAYMENT_STATUS.disputed],
  ])('%s', async (_what, evWh, hcsWh, status) => {
    const s = await agreedSession();
    await report(s, evWh, hcsWh);
    // Inside the tolerance the station's meter; outside it the smaller figure, and the bill is
    // left to the station (only it may settle a disagreement).
    const disputed = status === PAYMENT_STATUS.disputed;
    const smaller = disputed ? (evWh < hcsWh ? evWh : hcsWh) : hcsWh;
    const expected = billWei(smaller, PRICE);
    const sent = amounts(s.fake);
    expect(sent.map((a) => a.to)).toEqual([s.ev.address, s.hcs.address]);
    for (const a of sent) {
      expect(a.amountWei).toBe(expected);
      expect(a.paymentStatus).toBe(status);
      expect(a).toMatchObject({ sender: s.ev.address, receiver: s.hcs.address, txid: s.txid });
    }
    const bill = s.fake.journal.get<Bill>(`b:${s.txid}`);
    expect(bill).toMatchObject({
      state: disputed ? 'failed' : 'queued',
      energyWh: smaller.toString(),
      amountWei: expected.toString(),
      disputed: status === PAYMENT_STATUS.disputed,
    });
  });

  it('bills no more than the agreed cap, whatever both meters say', async () => {
    const s = await agreedSession();
    // Both past the cap (20,000 Wh), within tolerance of each other: the cap × price, as the
    // contract settles it and as the reservation held.
    await report(s, 20_500n, 20_510n);
    const capped = billWei(20_000n, PRICE);
    for (const a of amounts(s.fake)) expect(a.amountWei).toBe(capped);
    expect(s.fake.journal.get<Bill>(`b:${s.txid}`)).toMatchObject({
      state: 'queued',
      energyWh: '20000',
      amountWei: capped.toString(),
    });
  });

  it('forms no agreement when the deposit does not cover the cap', async () => {
    const fake = fakeContext('edge');
    fake.answers.availableDeposit = billWei(20_000n, PRICE) - 1n;
    const edge = new EdgeRole(fake.ctx);
    const ev = party();
    const hcs = party();
    await edge.onMessage(
      incoming(hcs, {
        type: 'response',
        status: REQUEST_STATUS.accept,
        sender: hcs.address,
        receiver: ev.address,
        optional: { seq: '1', price: PRICE.toString(), maxWh: 20_000, settleBy: 2_000_000_000 },
      }),
    );
    await edge.agreements();
    expect(fake.sent).toEqual([]);
  });

  it('reads the deposit beside its lock: the same response twice while the read is out makes one agreement, signed once for both', async () => {
    const fake = fakeContext('edge');
    const edge = new EdgeRole(fake.ctx);
    const ev = party();
    const hcs = party();
    const response = incoming(hcs, {
      type: 'response',
      status: REQUEST_STATUS.accept,
      sender: hcs.address,
      receiver: ev.address,
      optional: { seq: '3', price: PRICE.toString(), maxWh: 1000, settleBy: 2_000_000_000 },
    });
    // Both handled before the read answers (the handler does not wait for it).
    await edge.onMessage(response);
    await edge.onMessage(response);
    expect(fake.sent).toEqual([]);
    await edge.agreements();
    const mutual = fake.sent.filter((m) => m.msg.type === 'mutual');
    expect(mutual.map((m) => m.to)).toEqual([ev.address, hcs.address]);
  });

  it('ignores a report signed by someone else than the party it names', async () => {
    const s = await agreedSession();
    const fields = { ev: s.ev.address, hcs: s.hcs.address, txid: s.txid };
    await s.edge.onMessage(incoming(party(), { type: 'chargeReceived', ...fields, energyWh: 1n }));
    await s.edge.onMessage(incoming(s.hcs, { type: 'chargeProvided', ...fields, energyWh: 1000n }));
    expect(amounts(s.fake)).toEqual([]);
  });
});

describe('the edge journals a bill’s envelopes once, apart from the bill', () => {
  it('keeps them out of the bill’s record, and a restarted edge has them back', async () => {
    const s = await agreedSession();
    await report(s, 1000n, 1000n);
    const held = billsOf(s.edge).get(s.txid);
    expect(held?.evReport).toMatch(/^[0-9a-f]{200,}$/);
    expect(held?.hcsReport).toMatch(/^[0-9a-f]{200,}$/);
    const record = s.fake.journal.get<Bill>(`b:${s.txid}`);
    expect(record).toMatchObject({ state: 'queued' });
    expect(record).not.toHaveProperty('evReport');
    expect(record).not.toHaveProperty('hcsReport');
    expect(s.fake.journal.get(`e:${s.txid}:evReport`)).toBe(held?.evReport);
    expect(s.fake.journal.get(`e:${s.txid}:hcsReport`)).toBe(held?.hcsReport);
    // After a restart, on the same journal: the bill whole, as it was.
    const again = new EdgeRole(s.fake.ctx);
    expect(billsOf(again).get(s.txid)).toEqual(held);
  });

  it('reads a bill journaled whole (before envelopes were kept apart)', async () => {
    const s = await agreedSession();
    await report(s, 1000n, 1000n);
    const whole = { ...billsOf(s.edge).get(s.txid)! };
    s.fake.journal.put(`e:${s.txid}:evReport`, null);
    s.fake.journal.put(`e:${s.txid}:hcsReport`, null);
    s.fake.journal.put(`b:${s.txid}`, whole);
    expect(billsOf(new EdgeRole(s.fake.ctx)).get(s.txid)).toEqual(whole);
  });
});

describe('a station that delivered nothing (issue 15)', () => {
  async function consented() {
    const s = await agreedSession();
    // The consent goes into a reservation batch at once: here one that is still on its way.
    Object.assign(s.fake.ctx.chain, { openBatchSender: () => new Promise(() => {}) });
    Object.assign(s.fake.ctx.chain.client, { reserveBatchCalldata: () => '0x' });
    const fields = { ev: s.ev.address, hcs: s.hcs.address, txid: s.txid };
    await s.edge.onMessage(
      incoming(s.ev, { type: 'chargeReceived', ...fields, energyWh: 0n, optional: { i: 0 } }),
    );
    const provided = (optional: Record<string, unknown>) =>
      s.edge.onMessage(incoming(s.hcs, { type: 'chargeProvided', ...fields, energyWh: 0n, optional }));
    return { ...s, provided };
  }

  it('its 0 Wh report marked “nothing delivered” completes the bill with the EV’s consent: queued at 0 Wh', async () => {
    const s = await consented();
    await s.provided({ st: 5, z: 1 });
    const bill = s.fake.journal.get<Bill>(`b:${s.txid}`);
    expect(bill).toMatchObject({ state: 'queued', energyWh: '0', amountWei: '0', disputed: false });
    const held = billsOf(s.edge).get(s.txid);
    expect(held?.consent).toMatch(/^[0-9a-f]+$/);
    expect(held?.evReport).toBe(held?.consent);
    expect(s.fake.journal.get(`e:${s.txid}:evReport`)).toBe(held?.consent);
  });

  it('a 0 Wh report without the mark (its meter failed: energy may have flowed) waits for the EV’s report', async () => {
    const s = await consented();
    await s.provided({ st: 4, s: 40_000, e: 40_000 });
    expect(s.fake.journal.get<Bill>(`b:${s.txid}`)).toMatchObject({ state: 'collecting' });
    expect(amounts(s.fake)).toEqual([]);
  });

  it('without a consent, the mark closes the agreement: a late consent is not reserved', async () => {
    const s = await agreedSession();
    const fields = { ev: s.ev.address, hcs: s.hcs.address, txid: s.txid };
    await s.edge.onMessage(
      incoming(s.hcs, { type: 'chargeProvided', ...fields, energyWh: 0n, optional: { st: 5, z: 1 } }),
    );
    expect(s.fake.journal.get<Bill>(`b:${s.txid}`)).toMatchObject({
      state: 'failed',
      error: 'the station dropped the offer before the EV consented',
    });
    await s.edge.onMessage(
      incoming(s.ev, { type: 'chargeReceived', ...fields, energyWh: 0n, optional: { i: 0 } }),
    );
    const bill = billsOf(s.edge).get(s.txid);
    expect(bill?.state).toBe('failed');
    expect(bill?.consent).toBeUndefined();
    expect(bill?.reservation).toBeUndefined();
    expect(s.fake.journal.get(`e:${s.txid}:consent`)).toBeUndefined();
  });
});
