/**
 * The page index's memory is bounded by the network's members, never by its sessions: on a real
 * anvil, hundreds of other members' sessions are settled in batches and indexed; the entries the
 * indexer holds in memory are the same after 64 and after 256 (final rows go to its directory).
 * A member's own sessions and money still come out whole, after a restart of the page (which
 * resumes from its files, not from the deployment) and after a reorg deeper than the kept
 * checkpoints, which must leave no stale row in memory or on disk; after a kill; and `p2pev web`
 * with its --data-dir.
 */
import { appendFileSync, readdirSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsonRpcProvider, Network, parseEther } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDeployment } from '../contracts/deploy.js';
import { ChainIndexer } from '../agent/web/indexer.js';
import { createWebApp, portOf, serveWeb } from '../agent/web/server.js';
import { sessionsOf, statementOf } from '../agent/web/views.js';
import { billWei } from '../protocol/index.js';
import {
  type Member,
  newTerms,
  PRICE,
  reserve,
  type SettlementFixture,
  sessionReports,
  settleMany,
  setupSettlement,
} from './helpers/anvilSettlement.js';

const BIN = new URL('../bin/p2pev.mjs', import.meta.url).pathname;
let fx: SettlementFixture;
let me: Member;
let others: Member[];
const dirs: string[] = [];

function newDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'p2pev-page-bound-'));
  dirs.push(dir);
  return dir;
}

function anvilProvider(): JsonRpcProvider {
  return new JsonRpcProvider(fx.anvil.rpcUrl, Network.from(fx.anvil.chainId), {
    staticNetwork: true,
    cacheTimeout: -1,
  });
}

/** A provider that records the first block of every log query (where a sync started reading). */
function recordingProvider(): { provider: JsonRpcProvider; froms: number[] } {
  const provider = anvilProvider();
  const froms: number[] = [];
  const getLogs = provider.getLogs.bind(provider);
  provider.getLogs = async (filter) => {
    froms.push(Number((filter as { fromBlock: number }).fromBlock));
    return getLogs(filter);
  };
  return { provider, froms };
}

/** Folds at once (foldEvents 1), two blocks of reorg window, eight sessions in the network list. */
function newIndexer(dir: string, provider?: JsonRpcProvider): ChainIndexer {
  return new ChainIndexer({
    provider: provider ?? anvilProvider(),
    deployment: fx.deployment,
    confirmations: 1,
    chunkBlocks: 5,
    keepBlocks: 2,
    foldEvents: 1,
    recentSessions: 8,
    dir,
  });
}

/** Mines past the reorg window, so every event so far is final. */
async function finalise(): Promise<void> {
  for (let i = 0; i < 4; i++) await fx.provider.send('evm_mine', []);
}

/** One session of `me` at the first station, settled alone; its txid and what it billed. */
async function mySession(evWh: bigint, hcsWh: bigint): Promise<{ txid: string; billed: bigint }> {
  const hcs = fx.hcss[0]!;
  const terms = await newTerms(fx, me, hcs);
  await reserve(fx, terms);
  const r = sessionReports(fx, terms, evWh, hcsWh);
  await hcs.client.settle(terms, r.evReport, r.hcsReport);
  return { txid: r.txid.toLowerCase(), billed: hcsWh };
}

async function expectMyMoney(indexer: ChainIndexer, mine: { txid: string; billed: bigint }[]): Promise<void> {
  const h = indexer.memberHistory(me.address);
  const sessions = sessionsOf(h.events, h.inputs);
  expect(sessions.map((s) => s.txid).sort()).toEqual(mine.map((m) => m.txid).sort());
  for (const m of mine) {
    const s = sessions.find((x) => x.txid === m.txid)!;
    expect([s.billedWh, s.amountWei, s.ev]).toEqual([
      m.billed,
      billWei(m.billed, PRICE),
      me.address.toLowerCase(),
    ]);
  }
  const st = statementOf(h.events, me.address, 0, Number.MAX_SAFE_INTEGER);
  expect(st.lines.filter((l) => l.kind === 'payment').length).toBe(mine.length);
  expect(st.closingWei).toBe(st.openingWei + st.depositsWei - st.paymentsWei - st.withdrawalsWei);
  const d = await me.client.depositOf(me.address);
  expect(st.closingWei).toBe(d.balance + d.pendingWithdrawal);
}

/** Every row line of every member file in `dir`. */
function rowsOnDisk(dir: string): string[] {
  const [deployment] = readdirSync(dir);
  const members = join(dir, deployment!, 'members');
  return readdirSync(members).flatMap((f) => readFileSync(join(members, f), 'utf8').split('\n'));
}

beforeAll(async () => {
  fx = await setupSettlement({ evs: 4, hcss: 2, strangers: 0, depositWei: parseEther('20') });
  [me, ...others] = fx.evs as [Member, ...Member[]];
}, 120_000);

afterAll(async () => {
  await fx?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("the page index's memory", () => {
  it('holds the same entries after 64 and after 256 sessions of others; a member’s own come whole, after a restart too', async () => {
    const dir = newDir();
    const mine = [await mySession(1000n, 1010n)];
    await settleMany(fx, 64, { evs: others });
    await finalise();
    const indexer = newIndexer(dir);
    await indexer.sync();
    const after64 = indexer.footprint();
    expect(indexer.networkSessions().total).toBe(65);

    mine.push(await mySession(2000n, 2005n));
    await settleMany(fx, 192, { evs: others });
    await finalise();
    await indexer.sync();
    const after256 = indexer.footprint();
    // Nothing in memory grew with the sessions: the tail is empty once final, the network list
    // is its newest eight, the tally and the member files are per member.
    // (Checkpoints: those of the last keepBlocks blocks and the fold's, however the reads fell.)
    const { checkpoints: c64, ...rest64 } = after64;
    const { checkpoints: c256, ...rest256 } = after256;
    expect(rest256).toEqual(rest64);
    expect(Math.max(c64!, c256!)).toBeLessThanOrEqual(2 + 2);
    expect(after256.tailEvents).toBe(0);
    expect(after256.recentSessions).toBe(8);
    const net = indexer.networkSessions();
    expect([net.total, net.complete, net.sessions.length]).toEqual([258, false, 8]);
    // The stations' figures are the whole network's.
    expect(indexer.stations().reduce((t, s) => t + s.sessions, 0)).toBe(258);

    // The member's page: its sessions and money, from its rows on disk.
    await expectMyMoney(indexer, mine);
    indexer.stop();

    // A restart of the page resumes from its files: no read from the deployment block again.
    const { provider, froms } = recordingProvider();
    const restarted = newIndexer(dir, provider);
    await restarted.sync();
    expect(Math.min(...froms)).toBeGreaterThan(fx.deployment.block);
    await expectMyMoney(restarted, mine);
    expect(restarted.networkSessions().total).toBe(258);
    expect(restarted.stations()).toEqual(indexer.stations());

    // The page's API over it: the network's list is its newest eight with the true totals and
    // says so; the member's list, statement and rating call come whole from its rows.
    const web = createWebApp({ indexer: restarted, tiles: 'none' });
    const server = await serveWeb(web.handle, '127.0.0.1', 0);
    try {
      const get = async (path: string) => {
        const res = await fetch(`http://127.0.0.1:${portOf(server)}/api/${path}`);
        expect(res.status, path).toBe(200);
        return (await res.json()) as Record<string, unknown>;
      };
      const network = await get('sessions?pageSize=100');
      expect([network.total, network.window, (network.items as unknown[]).length]).toEqual([258, 8, 8]);
      const own = await get(`sessions?member=${me.address}`);
      expect((own.items as { txid: string }[]).map((s) => s.txid).sort()).toEqual(
        mine.map((m) => m.txid).sort(),
      );
      expect(own.window).toBeUndefined();
      const st = await get(`statement?member=${me.address}`);
      expect(st.onChainWei).toBe(st.closingWei);
      const call = await get(`rate-call?txid=${mine[0]!.txid}&rating=5&member=${me.address}`);
      expect(call.from).toBe(me.address.toLowerCase());
    } finally {
      server.close();
      web.close();
    }
  }, 240_000);

  it('leaves no stale row in memory or on disk after a reorg above, then below, what it has written out', async () => {
    const dir = newDir();
    const { provider, froms } = recordingProvider();
    const indexer = newIndexer(dir, provider);
    await indexer.sync();
    const before = indexer.memberHistory(me.address);
    const mine = sessionsOf(before.events, before.inputs).map((s) => ({ txid: s.txid, billed: s.billedWh }));
    const folded = indexer.footprint().memberFiles;
    expect(folded).toBeGreaterThan(0);

    // A shallow reorg first (above what is written out): the tail's session goes, the rows stay.
    const shallow: string = await fx.provider.send('evm_snapshot', []);
    const brief = await mySession(1200n, 1200n);
    await indexer.sync();
    expect(indexer.footprint().tailEvents).toBeGreaterThan(0);
    await fx.provider.send('evm_revert', [shallow]);
    await fx.provider.send('evm_mine', []);
    await fx.provider.send('evm_mine', []);
    await fx.provider.send('evm_mine', []);
    froms.length = 0;
    await indexer.sync();
    expect(indexer.reorgs).toBe(1);
    // Undone in memory: read again from just above the fork, not from the deployment.
    expect(Math.min(...froms)).toBeGreaterThan(fx.deployment.block);
    expect(rowsOnDisk(dir).some((l) => l.includes(brief.txid))).toBe(false);
    await expectMyMoney(indexer, mine);

    const id: string = await fx.provider.send('evm_snapshot', []);
    const gone = await mySession(3000n, 3003n);
    await finalise();
    await indexer.sync();
    // Written out: the session is in the member's file, not in memory's tail.
    expect(indexer.footprint().tailEvents).toBe(0);
    expect(rowsOnDisk(dir).some((l) => l.includes(gone.txid))).toBe(true);
    await expectMyMoney(indexer, [...mine, gone]);

    // The chain forgets it: another history from the snapshot on, longer than the window.
    await fx.provider.send('evm_revert', [id]);
    await me.client.deposit(parseEther('0.5'));
    await finalise();
    await finalise();
    await indexer.sync();
    expect(indexer.reorgs).toBe(2);
    expect(rowsOnDisk(dir).some((l) => l.includes(gone.txid))).toBe(false);
    await expectMyMoney(indexer, mine);
    expect(indexer.networkSessions().sessions.map((s) => s.txid)).not.toContain(gone.txid);
    indexer.stop();
    // And a restart reads the same.
    const restarted = newIndexer(dir);
    await restarted.sync();
    await expectMyMoney(restarted, mine);
    restarted.stop();
  }, 120_000);

  it('reads a member file only to its indexed length: a crash’s extra rows are cut off, a power cut’s loss re-indexes', async () => {
    const dir = newDir();
    const indexer = newIndexer(dir);
    await indexer.sync();
    const h = indexer.memberHistory(me.address);
    const mine = sessionsOf(h.events, h.inputs).map((s) => ({ txid: s.txid, billed: s.billedWh }));
    const [deployment] = readdirSync(dir);
    const file = join(dir, deployment!, 'members', `${me.address.toLowerCase()}.jsonl`);
    // A crash after appending, before base.json recorded it: a row the index never confirmed.
    const forged = JSON.parse(
      readFileSync(file, 'utf8')
        .split('\n')
        .find((l) => l.includes('"Deposited"'))!,
    );
    forged.e.args.amount = `${parseEther('7')}n`;
    appendFileSync(file, `${JSON.stringify(forged)}\n`);
    await expectMyMoney(indexer, mine);
    // The next rows for this member go after what was recorded, the stray row cut off.
    mine.push(await mySession(1500n, 1500n));
    await finalise();
    await indexer.sync();
    expect(readFileSync(file, 'utf8')).not.toContain(`"${parseEther('7')}n"`);
    await expectMyMoney(indexer, mine);
    // A power cut that lost the file's end: the index says so and starts over from the chain.
    indexer.stop();
    truncateSync(file, statSync(file).size - 10);
    const restarted = newIndexer(dir);
    await restarted.sync();
    expect(() => restarted.memberHistory(me.address)).toThrow(/damaged.*re-indexing/);
    await restarted.sync();
    await expectMyMoney(restarted, mine);
    restarted.stop();
  }, 120_000);

  it('resumes after a kill from an older base.json: the rows folded after it are cut back and written again, none twice', async () => {
    const dir = newDir();
    const indexer = newIndexer(dir);
    // Catching up folds many times; base.json is written at the first fold only (then at most
    // every 10 minutes, and on stop()).
    await indexer.sync();
    const mine = ((h) => sessionsOf(h.events, h.inputs))(indexer.memberHistory(me.address)).map((s) => ({
      txid: s.txid,
      billed: s.billedWh,
    }));
    mine.push(await mySession(2500n, 2500n));
    await settleMany(fx, 16, { evs: others });
    await finalise();
    await indexer.sync();
    const [deployment] = readdirSync(dir);
    const base = JSON.parse(readFileSync(join(dir, deployment!, 'base.json'), 'utf8')) as { block: number };
    expect(base.block).toBeLessThan(indexer.tip!.number - 4);
    // Killed: no stop(), so base.json stays behind the member files.
    const restarted = newIndexer(dir);
    await restarted.sync();
    const fresh = newIndexer(newDir());
    await fresh.sync();
    for (const m of [me, ...others, ...fx.hcss])
      expect(restarted.memberHistory(m.address), m.address).toEqual(fresh.memberHistory(m.address));
    expect(restarted.networkSessions()).toEqual(fresh.networkSessions());
    await expectMyMoney(restarted, mine);
    restarted.stop();
    const lines = rowsOnDisk(dir).filter((l) => l !== '');
    // Each row once per file (rowsOnDisk joins the files: a session is in its EV's and its station's).
    const myFile = readFileSync(
      join(dir, deployment!, 'members', `${me.address.toLowerCase()}.jsonl`),
      'utf8',
    )
      .split('\n')
      .filter((l) => l !== '');
    expect(new Set(myFile).size).toBe(myFile.length);
    expect(lines.length).toBeGreaterThan(myFile.length);
    fresh.stop();
  }, 120_000);

  it('p2pev web keeps its rows in --data-dir and leaves its resume point there on SIGTERM', async () => {
    const dir = newDir();
    const file = join(dir, 'deployment.json');
    writeDeployment(file, fx.deployment);
    const data = join(dir, 'index');
    // More than a fold's 512 events (what the tests before left, topped up), then past the page's
    // default reorg window (256 blocks).
    const counter = newIndexer(newDir());
    await counter.sync();
    counter.stop();
    await settleMany(fx, Math.max(0, 600 - counter.eventCount), { evs: others });
    await fx.provider.send('anvil_mine', ['0x12c']);
    const child = spawn(
      process.execPath,
      [BIN, 'web', '--deployment', file, '--rpc', fx.anvil.rpcUrl, '--port', '0', '--data-dir', data],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
      });
      let err = '';
      child.stderr.on('data', (b: Buffer) => {
        err += b.toString();
      });
      const url = await new Promise<string>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`p2pev web exited ${code}: ${err}`)));
        const poll = setInterval(() => {
          const m = /members' page on (http:\/\/\S+\/)/.exec(out);
          if (m) {
            clearInterval(poll);
            resolve(m[1]!);
          }
        }, 50);
      });
      const own = (await (await fetch(`${url}api/sessions?member=${me.address}&pageSize=100`)).json()) as {
        total: number;
      };
      const reference = newIndexer(newDir());
      await reference.sync();
      const h = reference.memberHistory(me.address);
      expect(own.total).toBe(sessionsOf(h.events, h.inputs).length);
      reference.stop();
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    // Hundreds of sessions indexed: folded, and base.json written on the way out.
    const [deployment] = readdirSync(data);
    expect(readdirSync(join(data, deployment!)).sort()).toEqual(['base.json', 'members']);
  }, 120_000);
});
