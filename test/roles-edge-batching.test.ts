/**
 * Which queued bills the edge puts in a settlement batch (agent/roles/edge.ts submitQueued), in
 * process through its narrow context, the chain's part stubbed: a bill whose reservation is still
 * on this edge's way is never batched (the contract would refuse it); a full batch of ready bills
 * goes at once; fewer wait until the oldest has waited batchMaxWaitMs; a bill goes in one batch
 * only. The edge keeps the ready bills as they change: these hold it to the rule.
 */
import { describe, expect, it } from 'vitest';
import { type Bill, EdgeRole } from '../agent/roles/edge.js';
import { fakeContext, party } from './fakes/context.js';

interface Internals {
  save(b: Bill): void;
  submitQueued(): void;
  submitBatch(bills: Bill[]): Promise<void>;
}

function world(batchSize: number) {
  const fake = fakeContext('edge', { edge: { batchSize, batchMaxWaitMs: 60_000, suggestions: 3 } });
  const edge = new EdgeRole(fake.ctx) as unknown as Internals;
  const batches: string[][] = [];
  // The chain's part stubbed: the batch is journaled `submitted` at once, as the real one does
  // before its first await, and never comes back (so each batch stays in flight).
  edge.submitBatch = (bills) => {
    for (const b of bills) edge.save({ ...b, state: 'submitted', submittedAt: Date.now() });
    batches.push(bills.map((b) => b.txid));
    return new Promise(() => {});
  };
  let n = 0;
  const bill = (patch: Partial<Bill>): Bill => {
    const b: Bill = {
      txid: `0x${(++n).toString(16).padStart(64, '0')}`,
      ev: party().address,
      hcs: party().address,
      terms: { seq: String(n), price: '1', maxWh: 1000, settleBy: Math.floor(Date.now() / 1000) + 3600 },
      state: 'queued',
      createdAt: Date.now(),
      queuedAt: Date.now(),
      ...patch,
    };
    edge.save(b);
    return b;
  };
  return { edge, batches, bill };
}

describe('settlement batches', () => {
  it('take only bills whose reservation is not on its way; a full batch at once, in one batch only', () => {
    const { edge, batches, bill } = world(3);
    const waiting = [bill({ reservation: 'queued' }), bill({ reservation: 'submitted' })];
    const ready = [bill({ reservation: 'reserved' }), bill({}), bill({ reservation: 'refused' })];
    bill({ state: 'collecting', reservation: 'reserved' });
    const fourth = bill({ reservation: 'reserved' });
    edge.submitQueued();
    // A batch's worth, no more: the fourth waits for the next.
    expect(batches).toEqual([ready.map((b) => b.txid)]);
    // Nothing else is ready but the fourth: the bills behind their reservations wait.
    edge.submitQueued();
    expect(batches).toHaveLength(1);
    // Their reservations come back: with the fourth, a full batch again.
    edge.save({ ...(waiting[0] as Bill), reservation: 'reserved' });
    edge.submitQueued();
    expect(batches).toHaveLength(1);
    edge.save({ ...(waiting[1] as Bill), reservation: 'reserved' });
    edge.submitQueued();
    expect(new Set(batches[1])).toEqual(new Set([fourth, ...waiting].map((b) => b.txid)));
    expect(batches[1]).toHaveLength(3);
  });

  it('fewer than a batch wait for the oldest to have waited batchMaxWaitMs', () => {
    const { edge, batches, bill } = world(10);
    const young = bill({ reservation: 'reserved' });
    edge.submitQueued();
    expect(batches).toEqual([]);
    const old = bill({ reservation: 'reserved', queuedAt: Date.now() - 61_000 });
    // Held back by its reservation: not counted as the oldest.
    bill({ reservation: 'submitted', queuedAt: Date.now() - 120_000 });
    edge.submitQueued();
    expect(batches).toEqual([[young.txid, old.txid]]);
  });
});
