/**
 * `p2pev sim --evs N --hcs M --sessions K`: the experiment at scale.
 *
 * Threads, not processes: 600 agent processes would need some 30 GB and 600 Node start-ups on a
 * 2-core machine. Two worker threads run the EV and HCS agents (dealt alternately); the first also
 * builds the world (the chain node, the broker, and every simulated meter, which the simulated
 * cables link: agents reach their meters over Modbus TCP from either thread). The main thread runs
 * the edge, and one HCS runs as its own `p2pev run` process so that the memory of one agent alone
 * can be measured. The limit is the CPU: every message is signed once and verified by each
 * receiver, beside the chain node, the broker and the meters on the same two cores.
 */
import { performance } from 'node:perf_hooks';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { parseEther } from 'ethers';
import { loadConfig } from '../agent/core/config.js';
import { createLogger } from '../agent/core/log.js';
import { Agent } from '../agent/core/runtime.js';
import { SAMPLES, VECTOR_DOMAIN, VECTOR_KEYS } from '../protocol/vectors.js';
import { encode, openEnvelope, signEnvelope } from '../protocol/index.js';
import { type AgentProcess, control, spawnAgent, waitReady } from './agents.js';
import type { SessionResult, ToWorker } from './scale-worker.js';
import { type Device, type EvSpec, SIM_PASSWORD, type StationSpec } from './world.js';

/**
 * Worker threads for the EV and HCS agents (the first also holds the broker and the meters). One:
 * with two, at 500 × 100 the workers were 62 % and 47 % busy but the run was slower (15.7 against
 * 17.2 sessions/s, plug-out → settled p95 45 s against 7 s): the chain node, mining a block per
 * transaction (each EV's rating, every batch), got less of the two cores, and bills queued.
 */
const WORKERS = 1;

export interface ScaleOptions {
  evs: number;
  hcs: number;
  sessions: number;
  targetWh?: number;
  timeoutMs?: number;
  /** An external broker URL, or 'mosquitto' to start Debian's (default: embedded, in the worker). */
  broker?: string;
  /** Also write the report to this file, as JSON. */
  json?: string;
  out?: (line: string) => void;
}

export interface ScaleReport {
  evs: number;
  hcs: number;
  sessions: number;
  settled: number;
  lost: number;
  doubleBilled: number;
  busyRetries: number;
  sessionsPerSec: number;
  verifyPerSec: number;
  verificationsPerSession: number;
  cryptoCeilingPerSec: number;
  ofCryptoCeiling: number;
  settleP50Ms: number;
  settleP95Ms: number;
  gasPerSession: number;
  messagesPerSession: number;
  bytesPerSession: number;
  agentRssMb: number;
  workerHeapMb: number;
  seconds: number;
}

/** A deterministic pseudo-random sequence, so that runs are comparable. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
}

const PROFILES = ['sdm630', 'abb-b23', 'em340', 'sdm120'];

function layout(evs: number, hcs: number): { stations: StationSpec[]; cars: EvSpec[] } {
  const r = rng(42);
  const around = () => ({ latitude: 52.52 + (r() - 0.5) * 0.08, longitude: 13.405 + (r() - 0.5) * 0.12 });
  return {
    stations: Array.from({ length: hcs }, (_, i) => ({
      name: `HCS${i + 1}`,
      ...around(),
      priceWeiPerKWh: parseEther('0.0002') + BigInt(Math.floor(r() * 200)) * 10n ** 12n,
      powerKw: [3.7, 7.4, 11, 22][i % 4]!,
      profile: PROFILES[i % PROFILES.length]!,
    })),
    cars: Array.from({ length: evs }, (_, i) => ({
      name: `EV${i + 1}`,
      ...around(),
      profile: PROFILES[(i + 1) % PROFILES.length]!,
    })),
  };
}

/** Envelope verifications (signer recovery) per second on one core, measured here and now. */
function measureVerify(ms = 1000): number {
  const env = signEnvelope(encode(SAMPLES.chargeProvided.message), VECTOR_KEYS.hcs, VECTOR_DOMAIN);
  for (let i = 0; i < 50; i++) openEnvelope(env, VECTOR_DOMAIN);
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < ms) {
    openEnvelope(env, VECTOR_DOMAIN);
    n++;
  }
  return (n * 1000) / (performance.now() - start);
}

const percentile = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return Math.round((kb / 1024) * 10) / 10;
}

/** Sessions ended and started, and why the cars that found no station found none (how often). */
type Progress = { progress: number; started: number; why: Record<string, number> };

/** The agents over WORKERS threads; the first also holds the world (node, broker, meters). */
function startWorkers(out: (line: string) => void) {
  const workers = Array.from({ length: WORKERS }, () => {
    const worker = new Worker(
      // Compiled (dist/sim/scale.js): the compiled worker; from the sources: the tsx entry.
      new URL(import.meta.url.endsWith('.js') ? './scale-worker.js' : './scale-worker.mjs', import.meta.url),
    );
    const replies: ((v: { ok: boolean; value?: unknown; error?: string }) => void)[] = [];
    const w = { worker, replies, progress: { progress: 0, started: 0, why: {} } as Progress };
    worker.on('message', (m) => {
      if ('progress' in m) w.progress = m;
      else replies.shift()?.(m);
    });
    worker.on('error', (err: Error) => out(`worker failed: ${err.stack}`));
    return w;
  });
  const ask = <T>(i: number, msg: ToWorker): Promise<T> =>
    new Promise((resolve, reject) => {
      const w = workers[i];
      if (!w) return reject(new Error(`no worker ${i}`));
      w.replies.push((m) => (m.ok ? resolve(m.value as T) : reject(new Error(m.error))));
      w.worker.postMessage(msg);
    });
  const misses = (p: Progress) => Object.values(p.why).reduce((a, b) => a + b, 0);
  const progress = (): Progress => {
    const sum: Progress = { progress: 0, started: 0, why: {} };
    for (const { progress: p } of workers) {
      sum.progress += p.progress;
      sum.started += p.started;
      for (const [k, n] of Object.entries(p.why)) sum.why[k] = (sum.why[k] ?? 0) + n;
    }
    return sum;
  };
  return { workers, ask, misses, progress };
}

/** The run's figures in words (the report itself follows as one JSON line). */
function printReport(
  out: (line: string) => void,
  report: ScaleReport,
  results: SessionResult[],
  workerBusy: number[],
  edgeBusy: number,
  soloName: string,
  phaseMedianMs: Record<string, number>,
): void {
  const failed = results.filter((r) => !r.ok);
  if (failed.length)
    out(
      `${failed.length} sessions did not settle, e.g.: ${failed
        .slice(0, 3)
        .map((r) => r.error)
        .join('; ')}`,
    );
  out(
    `${report.settled}/${report.sessions} sessions settled in ${report.seconds} s: ${report.sessionsPerSec}/s ` +
      `(crypto ceiling ${report.cryptoCeilingPerSec}/s = ${availableParallelism()} cores × ${report.verifyPerSec} verifications/s ÷ ${report.verificationsPerSession} per session: ${(report.ofCryptoCeiling * 100).toFixed(0)} % of it)`,
  );
  out(
    `plug-out → settled p50 ${report.settleP50Ms} ms, p95 ${report.settleP95Ms} ms; gas ${report.gasPerSession}/session; ${report.messagesPerSession} messages, ${report.bytesPerSession} bytes per session`,
  );
  out(
    `busy share of each thread over the run: workers (EV and HCS agents; the first also the broker and meters) ${workerBusy.map((b) => `${Math.round(b * 100)} %`).join(', ')}, main (edge) ${Math.round(edgeBusy * 100)} %`,
  );
  out(
    `median time in each EV state: ${Object.entries(phaseMedianMs)
      .map(([state, ms]) => `${state} ${ms} ms`)
      .join(', ')}`,
  );
  out(
    `one agent alone (${soloName}, its own process): peak RSS ${report.agentRssMb} MB; lost ${report.lost}, double-billed ${report.doubleBilled}`,
  );
}

/** What a finished run measured: the report, and the busy shares and phase medians printed beside it. */
async function measureRun(r: {
  opts: ScaleOptions;
  results: SessionResult[];
  started: number;
  verifyPerSec: number;
  edge: Agent;
  solo: Device;
  standalone: AgentProcess;
  mainElu: ReturnType<typeof performance.eventLoopUtilization>;
  pool: ReturnType<typeof startWorkers>;
}) {
  const { opts, results, started, verifyPerSec, edge, solo, standalone, mainElu } = r;
  const { workers, ask, misses, progress } = r.pool;
  // Wait for the last bills in flight (a batch, its receipt, the transaction messages).
  await new Promise((r) => setTimeout(r, 3000));

  const settledResults = results.filter((r) => r.ok);
  const lastDone = Math.max(...settledResults.map((r) => r.settledAt ?? r.doneAt ?? 0));
  const seconds = (lastDone - started) / 1000;
  const client = edge.chain.client;
  const events = await client.settledSessions(edge.chain.deployment.block);
  const perTxid = new Map<string, number>();
  for (const e of events) perTxid.set(e.txid, (perTxid.get(e.txid) ?? 0) + 1);
  const txHashes = [...new Set(events.map((e) => e.txHash))];
  let gas = 0n;
  for (const h of txHashes) gas += (await edge.chain.rpc.getTransactionReceipt(h))!.gasUsed;
  const perWorker = await Promise.all(
    workers.map((_, i) =>
      ask<{
        bus: { sent: number; sentBytes: number; received: number; dropped: number };
        heapMb: number;
        phases: Record<string, number[]>;
        busy: number;
      }>(i, { cmd: 'stats' }),
    ),
  );
  const w = {
    bus: { sent: 0, sentBytes: 0, received: 0, dropped: 0 },
    heapMb: 0,
    phaseMedianMs: {} as Record<string, number>,
  };
  const phases: Record<string, number[]> = {};
  for (const x of perWorker) {
    for (const k of Object.keys(w.bus) as (keyof typeof w.bus)[]) w.bus[k] += x.bus[k];
    w.heapMb += x.heapMb;
    for (const [state, xs] of Object.entries(x.phases)) phases[state] = [...(phases[state] ?? []), ...xs];
  }
  for (const [state, xs] of Object.entries(phases)) w.phaseMedianMs[state] = Math.round(percentile(xs, 50));
  const edgeBusy = performance.eventLoopUtilization(mainElu).utilization;
  const soloStatus = await control<{
    messages: { sent: number; sentBytes: number; received: number; dropped: number };
  }>(solo, 'status');
  const sent = w.bus.sent + edge.bus.stats.sent + soloStatus.messages.sent;
  const bytes = w.bus.sentBytes + edge.bus.stats.sentBytes + soloStatus.messages.sentBytes;
  const verified =
    w.bus.received +
    w.bus.dropped +
    edge.bus.stats.received +
    edge.bus.stats.dropped +
    soloStatus.messages.received +
    soloStatus.messages.dropped;
  const n = Math.max(1, events.length);
  const verificationsPerSession = verified / n;
  const cryptoCeilingPerSec = (availableParallelism() * verifyPerSec) / verificationsPerSession;
  const sessionsPerSec = settledResults.length / Math.max(0.001, seconds);
  // Plug-out → the EV learns its bill is on chain (its rating, a transaction of its own, follows).
  const latencies = settledResults
    .filter((r) => r.endedAt && (r.settledAt ?? r.doneAt))
    .map((r) => (r.settledAt ?? r.doneAt)! - r.endedAt!);
  const report: ScaleReport = {
    evs: opts.evs,
    hcs: opts.hcs,
    sessions: results.length,
    settled: settledResults.length,
    // A charge that ended but was never billed; a charge billed twice.
    lost: results.filter((r) => !r.ok && r.endedAt).length,
    doubleBilled: [...perTxid.values()].filter((k) => k > 1).length,
    busyRetries: misses(progress()),
    sessionsPerSec: Math.round(sessionsPerSec * 10) / 10,
    verifyPerSec: Math.round(verifyPerSec),
    verificationsPerSession: Math.round(verificationsPerSession * 10) / 10,
    cryptoCeilingPerSec: Math.round(cryptoCeilingPerSec * 10) / 10,
    ofCryptoCeiling: Math.round((sessionsPerSec / cryptoCeilingPerSec) * 100) / 100,
    settleP50Ms: Math.round(percentile(latencies, 50)),
    settleP95Ms: Math.round(percentile(latencies, 95)),
    gasPerSession: Math.round(Number(gas) / n),
    messagesPerSession: Math.round((sent / n) * 10) / 10,
    bytesPerSession: Math.round(bytes / n),
    agentRssMb: peakRssMb(standalone.child.pid!),
    workerHeapMb: Math.round(w.heapMb),
    seconds: Math.round(seconds * 10) / 10,
  };
  return { report, perWorker, edgeBusy, phaseMedianMs: w.phaseMedianMs };
}

export async function runScale(opts: ScaleOptions): Promise<ScaleReport> {
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const verifyPerSec = measureVerify();
  out(`verify (recover signer) ${verifyPerSec.toFixed(0)}/s on one core; ${availableParallelism()} cores`);
  // The journals fsync every transition; on tmpfs that costs nothing, as on the Pis' own SD cards
  // it would be spread over 600 devices rather than one disk.
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'p2pev-scale-'));
  const { stations, cars } = layout(opts.evs, opts.hcs);
  const pool = startWorkers(out);
  const { workers, ask, misses, progress } = pool;

  const t0 = Date.now();
  let edge: Agent | undefined;
  let stopping = false;
  let standalone: AgentProcess | undefined;
  try {
    out(`building a world of ${opts.evs} EVs, ${opts.hcs} stations and an edge in ${dir}`);
    const world = await ask<{ rpcUrl: string; devices: (Device & { standalone: boolean })[] }>(0, {
      cmd: 'build',
      opts: {
        dir,
        stations,
        evs: cars,
        edge: true,
        timeScale: 3600,
        ...(opts.broker ? { broker: opts.broker } : {}),
        depositEther: '5',
        overrides: {
          timeouts: { replyMs: 20_000, reportMs: 20_000, chargeIdleMs: 60_000, settleFallbackMs: 300_000 },
          edge: { batchSize: 50, batchMaxWaitMs: 1000, suggestions: 10 },
          log: { level: 'error' },
        },
      },
      standalone: ['HCS1'],
    });
    out(`world ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const edgeDevice = world.devices.find((d) => d.role === 'edge')!;
    const edgeConfig = loadConfig(edgeDevice.configPath);
    edgeConfig.control.port = undefined; // in-process: no control port needed
    edge = await Agent.start(edgeConfig, {
      password: SIM_PASSWORD,
      log: createLogger({ level: 'error', pretty: false }),
    });
    const solo = world.devices.find((d) => d.standalone)!;
    standalone = await spawnAgent(solo, (line) => {
      if (line.level >= 50) out(`${solo.name}: ${line.msg}`);
    });
    void standalone.exited.then((code) => {
      if (!stopping) out(`${solo.name} (its own process) exited with code ${code}`);
    });
    await waitReady(standalone);
    // EVs and stations dealt alternately to the threads (a car's station is as often in the other).
    const shares = workers.map(() => [] as (Device & { standalone: boolean })[]);
    const inWorkers = world.devices.filter((d) => d.role !== 'edge' && !d.standalone);
    for (const [i, d] of inWorkers.entries()) shares[i % WORKERS]!.push(d);
    await Promise.all(
      shares.map((share, i) => ask(i, { cmd: 'start', configPaths: share.map((d) => d.configPath) })),
    );
    out(
      `${opts.evs + opts.hcs} agents running (${shares.map((sh) => sh.length).join(' + ')} in ${WORKERS} worker threads, the edge in the main thread, ${solo.name} as its own process)`,
    );
    const evsIn = shares.map((share) => share.filter((d) => d.role === 'ev').length);
    const quotas = evsIn.map((n) => Math.floor((opts.sessions * n) / opts.evs));
    quotas[0]! += opts.sessions - quotas.reduce((a, b) => a + b, 0);

    const started = Date.now();
    const mainElu = performance.eventLoopUtilization();
    const ticker = setInterval(() => {
      const s = (Date.now() - started) / 1000;
      const lastProgress = progress();
      const why = Object.entries(lastProgress.why)
        .map(([reason, n]) => `${n}× ${reason}`)
        .join('; ');
      out(
        `  ${lastProgress.progress}/${opts.sessions} sessions ended, ${(lastProgress.progress / s).toFixed(1)}/s, ${s.toFixed(0)} s elapsed (${misses(lastProgress)} searches found no station${why ? `: ${why}` : ''})`,
      );
    }, 5000);
    const results = (
      await Promise.all(
        quotas.map((sessions, i) =>
          ask<SessionResult[]>(i, {
            cmd: 'run',
            sessions,
            targetWh: opts.targetWh ?? 1000,
            timeoutMs: opts.timeoutMs ?? 600_000,
          }),
        ),
      )
    ).flat();
    clearInterval(ticker);
    const { report, perWorker, edgeBusy, phaseMedianMs } = await measureRun({
      opts,
      results,
      started,
      verifyPerSec,
      edge,
      solo,
      standalone,
      mainElu,
      pool,
    });
    printReport(
      out,
      report,
      results,
      perWorker.map((x) => x.busy),
      edgeBusy,
      solo.name,
      phaseMedianMs,
    );
    if (opts.json) writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
    out(JSON.stringify(report));
    return report;
  } finally {
    stopping = true;
    await standalone?.stop();
    await edge?.stop();
    // The agents first, the world (in the first worker) last.
    for (let i = WORKERS - 1; i >= 0; i--) {
      await ask(i, { cmd: 'stop' }).catch(() => {});
      await workers[i]?.worker.terminate();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
