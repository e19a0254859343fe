/**
 * The members' page indexer on a real anvil: each side's energy read back from the settlement
 * calldata (single, disputed, batch), statements that balance against the contract's own view,
 * and reorgs (anvil's evm_snapshot / evm_revert) — at the tip, deeper than the kept checkpoints,
 * and in the middle of a read.
 */
import { JsonRpcProvider, Network, parseEther } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChainIndexer, type IndexerOptions } from '../agent/web/indexer.js';
import { sessionsOf, statementOf } from '../agent/web/views.js';
import { billWei } from '../protocol/index.js';
import {
  newTerms,
  PRICE,
  reserve,
  type SettlementFixture,
  sessionReports,
  setupSettlement,
} from './helpers/anvilSettlement.js';

let fx: SettlementFixture;

function indexerProvider(): JsonRpcProvider {
  return new JsonRpcProvider(fx.anvil.rpcUrl, Network.from(fx.anvil.chainId), {
    staticNetwork: true,
    cacheTimeout: -1,
  });
}

const dirs: string[] = [];
/** A fresh data directory (the agent's dataDir/page-index). */
function newDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'p2pev-page-index-'));
  dirs.push(dir);
  return dir;
}

function newIndexer(
  opts: Partial<
    Pick<IndexerOptions, 'keepBlocks' | 'provider' | 'dir' | 'foldEvents' | 'recentSessions'>
  > = {},
): ChainIndexer {
  // Three blocks per getLogs call, so catching up takes several reads.
  return new ChainIndexer({
    provider: opts.provider ?? indexerProvider(),
    deployment: fx.deployment,
    confirmations: 1,
    chunkBlocks: 3,
    ...opts,
    dir: opts.dir ?? newDir(),
  });
}

/** A member's statement from all it has: folded rows and the tail. */
const statement = (indexer: ChainIndexer, member: string) =>
  statementOf(indexer.memberHistory(member).events, member, 0, Number.MAX_SAFE_INTEGER);
const sessionsFor = (indexer: ChainIndexer, member: string) => {
  const h = indexer.memberHistory(member);
  return sessionsOf(h.events, h.inputs);
};

const snapshot = (): Promise<string> => fx.provider.send('evm_snapshot', []);
const revert = (id: string): Promise<boolean> => fx.provider.send('evm_revert', [id]);

async function expectBalanced(indexer: ChainIndexer, member: string): Promise<void> {
  const st = statement(indexer, member);
  const moved = st.depositsWei - st.paymentsWei + st.earningsWei - st.withdrawalsWei;
  expect(st.closingWei).toBe(st.openingWei + moved);
  const onChain =
    st.role === 'ev'
      ? await fx.operator.client.depositOf(member).then((d) => d.balance + d.pendingWithdrawal)
      : await fx.operator.client.earningsOf(member);
  expect(st.closingWei).toBe(onChain);
}

beforeAll(async () => {
  fx = await setupSettlement({ evs: 2, hcss: 1, strangers: 0 });
}, 120_000);

afterAll(async () => {
  await fx?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('the page indexer', () => {
  it('reads each side’s energy from the settle and settleBatch calldata', async () => {
    const [ev1, ev2] = fx.evs;
    const hcs = fx.hcss[0]!;
    const single = await newTerms(fx, ev1!, hcs);
    await reserve(fx, single);
    const a = sessionReports(fx, single, 1000n, 1010n);
    await hcs.client.settle(single, a.evReport, a.hcsReport);
    // Outside the tolerance: the station settles for what the EV acknowledged.
    const disputed = await newTerms(fx, ev1!, hcs);
    await reserve(fx, disputed);
    const b = sessionReports(fx, disputed, 500n, 2000n);
    await hcs.client.settle(disputed, b.evReport, b.hcsReport);
    const t1 = await newTerms(fx, ev1!, hcs);
    const t2 = await newTerms(fx, ev2!, hcs);
    await reserve(fx, t1);
    await reserve(fx, t2);
    const c1 = sessionReports(fx, t1, 3000n, 3020n);
    const c2 = sessionReports(fx, t2, 4010n, 4000n);
    await fx.operator.client.settleBatch([
      { terms: t1, evReport: c1.evReport, hcsReport: c1.hcsReport },
      { terms: t2, evReport: c2.evReport, hcsReport: c2.hcsReport },
    ]);
    await ev1!.client.rate(single, 4, 'fast');
    await ev2!.client.rate(t2, 1, 'slow');

    const indexer = newIndexer();
    await indexer.sync();
    const sessions = indexer.networkSessions().sessions;
    const byTxid = new Map(sessions.map((s) => [s.txid, s]));
    const expectSession = (txid: string, evWh: bigint, hcsWh: bigint, outcome: string) => {
      const s = byTxid.get(txid.toLowerCase())!;
      expect(s, txid).toBeDefined();
      expect([s.evEnergyWh, s.hcsEnergyWh, s.outcome]).toEqual([evWh, hcsWh, outcome]);
      // The station's meter inside the tolerance; what the EV acknowledged outside it.
      const billed = outcome === 'disputed' ? (evWh < hcsWh ? evWh : hcsWh) : hcsWh;
      expect(s.billedWh).toBe(billed);
      expect(s.amountWei).toBe(billWei(billed, PRICE));
      return s;
    };
    expect(expectSession(a.txid, 1000n, 1010n, 'settled')).toMatchObject({
      rating: 4,
      comment: 'fast',
      seq: 1n,
    });
    expectSession(b.txid, 500n, 2000n, 'disputed');
    expectSession(c1.txid, 3000n, 3020n, 'settled');
    expect(expectSession(c2.txid, 4010n, 4000n, 'settled')).toMatchObject({ rating: 1, comment: 'slow' });
    // Both batch entries come from one transaction.
    expect(byTxid.get(c1.txid)!.txHash).toBe(byTxid.get(c2.txid)!.txHash);
    expect(sessions).toHaveLength(4);

    const [station] = indexer.stations();
    expect(station!.hcs).toBe(hcs.address.toLowerCase());
    expect(station!.meanRating).toBe(await fx.operator.client.meanRating(hcs.address));
    expect(station!.ratingCount).toBe(2);
    for (const m of [ev1!, ev2!, hcs]) {
      await expectBalanced(indexer, m.address);
      // A member's own list is the network's, filtered to it, ratings and all.
      const me = m.address.toLowerCase();
      expect(sessionsFor(indexer, m.address)).toEqual(sessions.filter((s) => s.ev === me || s.hcs === me));
    }
  }, 60_000);

  it('drops a replaced tip block and indexes the new one (evm_snapshot / evm_revert)', async () => {
    const ev = fx.evs[0]!;
    const indexer = newIndexer();
    await indexer.sync();
    const id = await snapshot();
    await ev.client.deposit(parseEther('0.5'));
    await indexer.sync();
    const deposits = () =>
      indexer
        .memberHistory(ev.address)
        .events.filter((e) => e.name === 'Deposited')
        .map((e) => e.args.amount);
    expect(deposits().at(-1)).toBe(parseEther('0.5'));
    const height = indexer.tip!.number;

    await revert(id);
    // Same height, another block: the indexer must notice by the hash, not the number.
    await ev.client.deposit(parseEther('0.25'));
    expect(await fx.provider.getBlockNumber()).toBe(height);
    await indexer.sync();
    expect(indexer.reorgs).toBe(1);
    expect(deposits()).not.toContain(parseEther('0.5'));
    expect(deposits().at(-1)).toBe(parseEther('0.25'));
    await expectBalanced(indexer, ev.address);
  }, 60_000);

  it('re-indexes from the deployment when a reorg is deeper than the kept checkpoints', async () => {
    const ev = fx.evs[1]!;
    const indexer = newIndexer({ keepBlocks: 2 });
    await indexer.sync();
    const id = await snapshot();
    for (let i = 0; i < 6; i++) await ev.client.deposit(parseEther('0.01'));
    await indexer.sync();
    const before = indexer.eventCount;
    await revert(id);
    await fx.provider.send('evm_mine', []);
    await ev.client.deposit(parseEther('0.02'));
    await fx.provider.send('evm_mine', []);
    await fx.provider.send('evm_mine', []);
    await fx.provider.send('evm_mine', []);
    await indexer.sync();
    expect(indexer.reorgs).toBe(1);
    expect(indexer.eventCount).toBe(before - 6 + 1);
    const fresh = newIndexer();
    await fresh.sync();
    expect(indexer.memberHistory(ev.address)).toEqual(fresh.memberHistory(ev.address));
    await expectBalanced(indexer, ev.address);
  }, 60_000);

  it('throws away a read that a reorg cut through, and gets it right on the next step', async () => {
    const ev = fx.evs[0]!;
    const provider = indexerProvider();
    const indexer = newIndexer({ provider });
    await indexer.sync();
    const id = await snapshot();
    await ev.client.deposit(parseEther('0.125'));
    // The reorg lands between the logs and the headers of the same read.
    const getLogs = provider.getLogs.bind(provider);
    let cut = true;
    provider.getLogs = async (filter) => {
      const logs = await getLogs(filter);
      if (cut && logs.length > 0) {
        cut = false;
        await revert(id);
        await ev.client.deposit(parseEther('0.0625'));
      }
      return logs;
    };
    const eventsBefore = indexer.eventCount;
    await expect(indexer.sync()).rejects.toThrow(/changed while it was read/);
    expect(indexer.eventCount).toBe(eventsBefore);
    await indexer.sync();
    const last = indexer.tail.at(-1)!;
    expect([last.name, last.args.amount]).toEqual(['Deposited', parseEther('0.0625')]);
    await expectBalanced(indexer, ev.address);
  }, 60_000);

  it('throws away a read that does not continue the indexed chain (a reorg between two reads of one catch-up)', async () => {
    const ev = fx.evs[1]!;
    const provider = indexerProvider();
    const indexer = newIndexer({ provider });
    await indexer.sync();
    const id = await snapshot();
    // Six blocks: two reads of three.
    for (let i = 0; i < 6; i++) await ev.client.deposit(parseEther('0.001'));
    const getLogs = provider.getLogs.bind(provider);
    let calls = 0;
    provider.getLogs = async (filter) => {
      // Before the second read: another history from the snapshot on, as long.
      if (++calls === 2) {
        await revert(id);
        for (let i = 0; i < 6; i++) await ev.client.deposit(parseEther('0.002'));
      }
      return getLogs(filter);
    };
    await expect(indexer.sync()).rejects.toThrow(/does not follow the indexed block/);
    await indexer.sync();
    expect(indexer.reorgs).toBe(1);
    const amounts = indexer
      .memberHistory(ev.address)
      .events.filter((e) => e.name === 'Deposited')
      .map((e) => e.args.amount);
    expect(amounts).not.toContain(parseEther('0.001'));
    expect(amounts.filter((a) => a === parseEther('0.002'))).toHaveLength(6);
    await expectBalanced(indexer, ev.address);
  }, 60_000);
});
