/**
 * `npm run bench:page-index` — the members' page's chain index as a network's history grows: N
 * sessions settled on a real anvil (batches, as an edge sends them), then one indexer catches up
 * from the deployment, and its heap is measured (after a full GC) at each N. The goal: the heap an
 * indexer holds does not grow with the number of sessions the network has settled (the per-session
 * rows live in its data directory, read back per member). Prints one line per N, then one JSON
 * object as the last line. BENCH_SESSIONS=500,2000 picks the sizes. Load-sensitive only in its
 * CPU figures (CPU time per session, beside the wall clock).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { JsonRpcProvider, Network, parseEther } from 'ethers';
import type { ChainIndexer } from '../agent/web/indexer.js';
import { setupSettlement, settleMany } from '../test/helpers/anvilSettlement.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapMB = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

// BENCH_INDEXER: another build of the indexer module (to measure a former version the same way).
const { ChainIndexer: Indexer } = (await import(process.env.BENCH_INDEXER ?? '../agent/web/indexer.js')) as {
  ChainIndexer: typeof ChainIndexer;
};
const sizes = (process.env.BENCH_SESSIONS ?? '500,2000').split(',').map(Number);
const fx = await setupSettlement({ evs: 8, hcss: 4, strangers: 0, depositWei: parseEther('100') });
const results: {
  sessions: number;
  heapMB: number;
  diskMB: number;
  baseKB: number;
  cpuMsPerSession: number;
  wallMs: number;
}[] = [];
let settled = 0;
try {
  for (const n of sizes) {
    await settleMany(fx, n - settled);
    settled = n;
    const dir = mkdtempSync(join(tmpdir(), 'p2pev-page-bench-'));
    const provider = new JsonRpcProvider(fx.anvil.rpcUrl, Network.from(fx.anvil.chainId), {
      staticNetwork: true,
      cacheTimeout: -1,
    });
    const cpu = process.cpuUsage();
    const t0 = performance.now();
    // keepBlocks small: the bench's chain is short, a real one has many blocks above the tip's window.
    let indexer: ChainIndexer | undefined = new Indexer({
      provider,
      deployment: fx.deployment,
      dir,
      keepBlocks: 4,
    } as never);
    await indexer.sync();
    const wallMs = performance.now() - t0;
    const used = process.cpuUsage(cpu);
    // A station's page: its whole history read back (a quarter of the network's sessions here).
    const r0 = performance.now();
    const stationEvents = indexer.memberHistory(fx.hcss[0]!.address).events.length;
    const readStationMs = performance.now() - r0;
    // What the indexer retains: the heap with it (its member cache dropped: that is a read's,
    // for 30 s), less the heap once it is gone.
    (indexer as unknown as { memberCache: unknown; rowsCache: unknown }).memberCache = undefined;
    (indexer as unknown as { memberCache: unknown; rowsCache: unknown }).rowsCache = undefined;
    const withIt = heapMB();
    indexer.stop();
    indexer = undefined;
    const heap = withIt - heapMB();
    const [deployment] = readdirSync(dir);
    const baseKB = deployment ? statSync(join(dir, deployment, 'base.json')).size / 1024 : 0;
    const diskMB = Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0]) / 1024;
    const row = {
      sessions: n,
      heapMB: Math.round(heap * 100) / 100,
      diskMB: Math.round(diskMB * 100) / 100,
      baseKB: Math.round(baseKB),
      stationEvents,
      readStationMs: Math.round(readStationMs),
      cpuMsPerSession: Math.round(((used.user + used.system) / 1000 / n) * 100) / 100,
      wallMs: Math.round(wallMs),
    };
    results.push(row);
    console.log(
      `${n} sessions: indexer heap ${row.heapMB} MB, ${row.diskMB} MB on disk, ${row.cpuMsPerSession} ms CPU per session`,
    );
    provider.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
} finally {
  await fx.stop();
}
const [first, last] = [results[0]!, results.at(-1)!];
console.log(
  JSON.stringify({
    results,
    heapKBPerSession:
      Math.round(((last.heapMB - first.heapMB) * 1024 * 100) / Math.max(1, last.sessions - first.sessions)) /
      100,
  }),
);
