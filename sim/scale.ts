/**
 * `p2pev sim --evs N --hcs M --sessions K`: the experiment at scale.
 *
 * One process per kind of agent, not one per agent: 600 agent processes would need some 30 GB and
 * 600 Node start-ups on a 2-core machine. The EVs run in one worker process, the stations in
 * another, the edge in a third (sim/scale-worker.ts), and one station as its own `p2pev run`
 * process so that the memory of one agent alone can be measured. This process builds the world:
 * anvil and the broker (mosquitto where it is installed) as their own processes, and every
 * simulated meter, which the simulated cables link; agents reach their meters over Modbus TCP.
 * Separate processes let the run say what each kind costs: CPU seconds per session of the EV
 * workers, the station workers, the edge, anvil, the broker and this process (meters, cables,
 * the harness), read from /proc over the run.
 */
import { performance } from 'node:perf_hooks';
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEther } from 'ethers';
import { SAMPLES, VECTOR_DOMAIN, VECTOR_KEYS } from '../protocol/vectors.js';
import { encode, openEnvelope, signEnvelope } from '../protocol/index.js';
import { type AgentProcess, control, spawnAgent, unitMemoryEnvironment, waitReady } from './agents.js';
import type { SessionResult, ToWorker, WorkerStats } from './scale-worker.js';
import { buildWorld, type Device, type EvSpec, type StationSpec, type World } from './world.js';

/**
 * Agents per worker process at most. One worker per kind is enough for the CPU (on two cores more
 * processes only add their own overhead), but each agent holds four descriptors (its journal, the
 * broker, its meter, the chain node) and ~1.2 MB: past a few thousand agents a process would reach
 * the descriptor limit (20,000 here) or its heap.
 */
const AGENTS_PER_WORKER = 2000;
/** A worker's heap limit (MB): thousands of agents need more than Node's default of ~4 GB. */
const WORKER_HEAP_MB = 8192;
/**
 * A worker's young generation (MB per semi-space). Hundreds of agents in one process allocate
 * like a server: with Node's default the workers spent 7–13 % of their CPU in scavenges. A device
 * runs one agent with 1 MB (the unit's NODE_OPTIONS); this is the sim's process, not an agent's.
 */
const WORKER_SEMI_SPACE_MB = 32;

export interface ScaleOptions {
  evs: number;
  hcs: number;
  sessions: number;
  targetWh?: number;
  timeoutMs?: number;
  /**
   * An external broker URL, 'mosquitto' to start Debian's, or 'embedded' (aedes, in this process).
   * Default: mosquitto where it is installed, else embedded.
   */
  broker?: string;
  /** Also write the report to this file, as JSON. */
  json?: string;
  out?: (line: string) => void;
}

/** The kinds of process a run is made of, for its CPU figures. */
export const PROCESS_KINDS = [
  'evWorkers',
  'hcsWorkers',
  'edge',
  'anvil',
  'broker',
  'harness',
  'solo',
] as const;
export type ProcessKind = (typeof PROCESS_KINDS)[number];

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
  p50SettledMs: number;
  p95SettledMs: number;
  gasPerSession: number;
  messagesPerSession: number;
  /** The same by message type (the EV and station workers and the edge; not the standalone station). */
  messagesByType: Record<string, number>;
  /** Envelopes resent for want of an ack, a session (the workers' agents). */
  resentPerSession: number;
  bytesPerSession: number;
  /**
   * CPU milliseconds per settled session over the run, by kind of process: the EV and station
   * workers, the edge, anvil, the broker (0 when embedded: then inside the harness), this process
   * (the meters, the cables, the harness), and the standalone station; `total` is their sum.
   */
  cpuMsPerSession: Record<ProcessKind | 'total', number>;
  /** The same as a share of one core over the run (1 = a whole core). */
  coresBusy: Record<ProcessKind | 'total', number>;
  /** The machine's 1-minute load average at the start and the end of the run (other work included). */
  loadAvg: [number, number];
  broker: string;
  agentRssMb: number;
  workerRssMb: Record<'ev' | 'hcs' | 'edge', number>;
  /** Promise rejections nothing handled in the workers (logged and survived, as `p2pev run` does). */
  unhandledRejections: number;
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

/** A forked worker process (sim/scale-worker.ts) and its request/reply channel. */
interface WorkerProcess {
  kind: 'ev' | 'hcs' | 'edge';
  child: ChildProcess;
  progress: Progress;
  ask<T>(msg: ToWorker): Promise<T>;
}

/** Forks a worker; resolves once it listens. Compiled: the compiled worker; from the sources: the tsx entry. */
async function forkWorker(kind: WorkerProcess['kind'], out: (line: string) => void): Promise<WorkerProcess> {
  const entry = new URL(
    import.meta.url.endsWith('.js') ? './scale-worker.js' : './scale-worker.mjs',
    import.meta.url,
  );
  // The edge's worker gets an edge's young generation (agent/install/p2pev.service, `# edge:`).
  const young =
    kind === 'edge'
      ? (unitMemoryEnvironment('edge').NODE_OPTIONS?.match(/--max-semi-space-size=\d+/g) ?? [])
      : [];
  const child = fork(entry, [], {
    execArgv: [
      ...process.execArgv,
      `--max-old-space-size=${WORKER_HEAP_MB}`,
      // The EV and station workers: hundreds of agents in one process (WORKER_SEMI_SPACE_MB).
      ...(kind === 'edge' ? young : [`--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`]),
    ],
    serialization: 'advanced',
    env: { ...process.env, P2PEV_KEY_PASSWORD: undefined },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const replies = new Map<number, (v: { ok: boolean; value?: unknown; error?: string }) => void>();
  let nextId = 0;
  const w: WorkerProcess = {
    kind,
    child,
    progress: { progress: 0, started: 0, why: {} },
    ask: <T>(msg: ToWorker) =>
      new Promise<T>((resolve, reject) => {
        // A worker that died: its share is lost, which the run reports; asking it must not end the harness.
        if (!child.connected) return reject(new Error(`the ${kind} worker (pid ${child.pid}) is gone`));
        const id = nextId++;
        replies.set(id, (m) => (m.ok ? resolve(m.value as T) : reject(new Error(m.error))));
        child.send({ ...msg, id });
      }),
  };
  const ready = new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the ${kind} worker exited with code ${code} at start`)));
    child.on('message', (m: Record<string, unknown>) => {
      if ('ready' in m) resolve();
      else if ('progress' in m) w.progress = m as unknown as Progress;
      else if (typeof m.id === 'number') {
        replies.get(m.id)?.(m as { ok: boolean });
        replies.delete(m.id);
      }
    });
  });
  // A send racing the worker's death: the reply never comes (the exit handler below answers it).
  child.on('error', (err) => out(`the ${kind} worker (pid ${child.pid}): ${err.message}`));
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGKILL' && signal !== 'SIGTERM')
      out(`the ${kind} worker (pid ${child.pid}) exited with ${code ?? signal}`);
    for (const r of replies.values()) r({ ok: false, error: `the ${kind} worker exited` });
    replies.clear();
  });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  child.once('exit', () => process.off('exit', kill));
  await ready;
  return w;
}

/** CPU time (ms) of a process (all its threads), from /proc; 0 once it is gone. */
function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Clock ticks per second of /proc's CPU times (100 on Linux, asked once). */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Every process below `pid` (children, grandchildren …), with its command name. */
function descendants(pid: number): { pid: number; comm: string }[] {
  const found: { pid: number; comm: string }[] = [];
  const walk = (p: number) => {
    let children: number[] = [];
    try {
      for (const task of readdirSync(`/proc/${p}/task`))
        children = children.concat(
          readFileSync(`/proc/${p}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
        );
    } catch {
      return;
    }
    for (const c of children) {
      try {
        found.push({ pid: c, comm: readFileSync(`/proc/${c}/comm`, 'utf8').trim() });
      } catch {
        continue;
      }
      walk(c);
    }
  };
  walk(pid);
  return found;
}

/**
 * CPU time (ms) so far of each kind of process in the run: the workers and the standalone agent by
 * pid, anvil and mosquitto by name among this process's descendants, this process itself.
 */
function cpuByKind(pids: Partial<Record<ProcessKind, number[]>>): Record<ProcessKind, number> {
  const sum: Record<ProcessKind, number> = {
    evWorkers: 0,
    hcsWorkers: 0,
    edge: 0,
    anvil: 0,
    broker: 0,
    solo: 0,
    harness: (() => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    })(),
  };
  for (const [kind, list] of Object.entries(pids) as [ProcessKind, number[]][])
    for (const pid of list) sum[kind] += cpuMsOf(pid);
  for (const { pid, comm } of descendants(process.pid)) {
    if (comm === 'anvil') sum.anvil += cpuMsOf(pid);
    else if (comm === 'mosquitto') sum.broker += cpuMsOf(pid);
  }
  return sum;
}

function mosquittoInstalled(): boolean {
  try {
    execFileSync('mosquitto', ['-h'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // `mosquitto -h` exits 3 after printing its help: installed.
    return (err as { code?: string }).code !== 'ENOENT';
  }
}

/** The run's figures in words (the report itself follows as one JSON line). */
function printReport(
  out: (line: string) => void,
  report: ScaleReport,
  results: SessionResult[],
  busy: Record<string, number>,
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
    `plug-out → settled p50 ${report.p50SettledMs} ms, p95 ${report.p95SettledMs} ms; gas ${report.gasPerSession}/session; ${report.messagesPerSession} messages, ${report.bytesPerSession} bytes per session`,
  );
  out(
    `messages a session by type: ${Object.entries(report.messagesByType)
      .map(([type, k]) => `${type} ${k}`)
      .join(', ')}; resent for want of an ack ${report.resentPerSession}`,
  );
  out(
    `CPU per settled session (ms) and cores busy over the run: ${PROCESS_KINDS.map(
      (k) => `${k} ${report.cpuMsPerSession[k]} (${report.coresBusy[k]})`,
    ).join(
      ', ',
    )}; total ${report.cpuMsPerSession.total} ms (${report.coresBusy.total} of ${availableParallelism()} cores); load average ${report.loadAvg.join(' → ')}`,
  );
  out(
    `event loops busy: ${Object.entries(busy)
      .map(([k, b]) => `${k} ${Math.round(b * 100)} %`)
      .join(', ')}; workers' resident memory ${Object.entries(report.workerRssMb)
      .map(([k, mb]) => `${k} ${mb} MB`)
      .join(', ')}`,
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

const round1 = (x: number) => Math.round(x * 10) / 10;

/** What a finished run measured: the report, and the busy shares and phase medians printed beside it. */
async function measureRun(r: {
  opts: ScaleOptions;
  brokerName: string;
  results: SessionResult[];
  started: number;
  verifyPerSec: number;
  world: World;
  workers: WorkerProcess[];
  solo: Device;
  standalone: AgentProcess;
  /** CPU time of each kind at the start and the end of the run, and the wall time between. */
  cpu: { start: Record<ProcessKind, number>; end: Record<ProcessKind, number>; wallMs: number };
  loadAtStart: number;
  harnessElu: ReturnType<typeof performance.eventLoopUtilization>;
}) {
  const { opts, results, started, verifyPerSec, world, workers, solo, standalone } = r;
  const settledResults = results.filter((x) => x.ok);
  const lastDone = Math.max(started, ...settledResults.map((x) => x.settledAt ?? x.doneAt ?? 0));
  const seconds = (lastDone - started) / 1000;
  const { start: cpuStart, end: cpuEnd, wallMs } = r.cpu;
  const loadAtEnd = loadavg()[0]!;
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  // A worker that died has no figures to give (its sessions count as not settled).
  const perWorker = await Promise.all(
    workers.map((w) => w.ask<WorkerStats>({ cmd: 'stats' }).catch(() => undefined)),
  );
  const events = await world.operator.settledSessions(world.deployment.block);
  const perTxid = new Map<string, number>();
  for (const e of events) perTxid.set(e.txid, (perTxid.get(e.txid) ?? 0) + 1);
  const txHashes = [...new Set(events.map((e) => e.txHash))];
  const provider = world.operator.contract.runner?.provider;
  let gas = 0n;
  for (const h of txHashes) gas += (await provider!.getTransactionReceipt(h))!.gasUsed;
  const bus = { sent: 0, sentBytes: 0, received: 0, dropped: 0 };
  const sentByType: Record<string, number> = {};
  let resent = 0;
  const phases: Record<string, number[]> = {};
  const busy: Record<string, number> = {};
  const workerRssMb = { ev: 0, hcs: 0, edge: 0 };
  let unhandledRejections = 0;
  for (const [i, x] of perWorker.entries()) {
    if (!x) continue;
    unhandledRejections += x.unhandled.count;
    if (x.unhandled.first)
      out(
        `${workers[i]!.kind} worker: ${x.unhandled.count} unhandled rejections, the first: ${x.unhandled.first}`,
      );
    const kind = workers[i]!.kind;
    for (const k of Object.keys(bus) as (keyof typeof bus)[]) bus[k] += x.bus[k];
    resent += x.outbox.resent;
    for (const [type, k] of Object.entries(x.sentByType)) sentByType[type] = (sentByType[type] ?? 0) + k;
    for (const [state, xs] of Object.entries(x.phases)) phases[state] = [...(phases[state] ?? []), ...xs];
    busy[`${kind}${i}`] = x.busy;
    workerRssMb[kind] += Math.round(x.rssMb);
  }
  busy.harness = performance.eventLoopUtilization(r.harnessElu).utilization;
  const phaseMedianMs: Record<string, number> = {};
  for (const [state, xs] of Object.entries(phases)) phaseMedianMs[state] = Math.round(percentile(xs, 50));
  const soloStatus = await control<{
    messages: { sent: number; sentBytes: number; received: number; dropped: number };
  }>(solo, 'status');
  const sent = bus.sent + soloStatus.messages.sent;
  const bytes = bus.sentBytes + soloStatus.messages.sentBytes;
  const verified = bus.received + bus.dropped + soloStatus.messages.received + soloStatus.messages.dropped;
  const n = Math.max(1, events.length);
  const verificationsPerSession = verified / n;
  const cryptoCeilingPerSec = (availableParallelism() * verifyPerSec) / verificationsPerSession;
  const sessionsPerSec = settledResults.length / Math.max(0.001, seconds);
  // Plug-out → the EV learns its bill is on chain (its rating, a transaction of its own, follows).
  const latencies = settledResults
    .filter((x) => x.endedAt && (x.settledAt ?? x.doneAt))
    .map((x) => (x.settledAt ?? x.doneAt)! - x.endedAt!);
  const cpuMsPerSession = {} as ScaleReport['cpuMsPerSession'];
  const coresBusy = {} as ScaleReport['coresBusy'];
  let total = 0;
  for (const k of PROCESS_KINDS) {
    const ms = cpuEnd[k] - cpuStart[k];
    total += ms;
    cpuMsPerSession[k] = round1(ms / Math.max(1, settledResults.length));
    coresBusy[k] = Math.round((ms / wallMs) * 100) / 100;
  }
  cpuMsPerSession.total = round1(total / Math.max(1, settledResults.length));
  coresBusy.total = Math.round((total / wallMs) * 100) / 100;
  const report: ScaleReport = {
    evs: opts.evs,
    hcs: opts.hcs,
    sessions: results.length,
    settled: settledResults.length,
    // A charge that ended but was never billed; a charge billed twice.
    lost: results.filter((x) => !x.ok && x.endedAt).length,
    doubleBilled: [...perTxid.values()].filter((k) => k > 1).length,
    busyRetries: workers.reduce((a, w) => a + Object.values(w.progress.why).reduce((x, y) => x + y, 0), 0),
    sessionsPerSec: round1(sessionsPerSec),
    verifyPerSec: Math.round(verifyPerSec),
    verificationsPerSession: round1(verificationsPerSession),
    cryptoCeilingPerSec: round1(cryptoCeilingPerSec),
    ofCryptoCeiling: Math.round((sessionsPerSec / cryptoCeilingPerSec) * 100) / 100,
    p50SettledMs: Math.round(percentile(latencies, 50)),
    p95SettledMs: Math.round(percentile(latencies, 95)),
    gasPerSession: Math.round(Number(gas) / n),
    messagesPerSession: round1(sent / n),
    messagesByType: Object.fromEntries(
      Object.entries(sentByType)
        .sort((a, b) => b[1] - a[1])
        .map(([type, k]) => [type, Math.round((k / n) * 100) / 100]),
    ),
    resentPerSession: Math.round((resent / n) * 100) / 100,
    bytesPerSession: Math.round(bytes / n),
    cpuMsPerSession,
    coresBusy,
    loadAvg: [round1(r.loadAtStart), round1(loadAtEnd)],
    broker: r.brokerName,
    agentRssMb: peakRssMb(standalone.child.pid!),
    workerRssMb,
    unhandledRejections,
    seconds: round1(seconds),
  };
  return { report, busy, phaseMedianMs };
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
  const broker =
    opts.broker === 'embedded'
      ? undefined
      : (opts.broker ?? (mosquittoInstalled() ? 'mosquitto' : undefined));
  const brokerName = broker === undefined ? 'embedded' : broker === 'mosquitto' ? 'mosquitto' : 'external';

  // Stopped from outside: exit through 'exit', whose handlers kill mosquitto and the standalone
  // agent (the workers leave when their channel closes, anvil with its watchdog's pipe).
  const leave = (signal: NodeJS.Signals) => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', leave);
  process.once('SIGTERM', leave);
  const t0 = Date.now();
  let world: World | undefined;
  let stopping = false;
  let standalone: AgentProcess | undefined;
  const workers: WorkerProcess[] = [];
  try {
    out(
      `building a world of ${opts.evs} EVs, ${opts.hcs} stations and an edge in ${dir} (broker: ${brokerName})`,
    );
    const spawning = Promise.all([
      forkWorker('edge', out),
      ...Array.from({ length: Math.ceil(opts.hcs / AGENTS_PER_WORKER) }, () => forkWorker('hcs', out)),
      ...Array.from({ length: Math.ceil(opts.evs / AGENTS_PER_WORKER) }, () => forkWorker('ev', out)),
    ]);
    world = await buildWorld({
      dir,
      stations,
      evs: cars,
      edge: true,
      timeScale: 3600,
      ...(broker ? { broker } : {}),
      depositEther: '5',
      // Thousands of cars starting at once would each send a deposit and poll for its receipt.
      depositsByWorld: true,
      overrides: {
        timeouts: { replyMs: 20_000, reportMs: 20_000, chargeIdleMs: 60_000, settleFallbackMs: 300_000 },
        edge: { batchSize: 50, batchMaxWaitMs: 1000, suggestions: 10 },
        log: { level: 'error' },
      },
    });
    workers.push(...(await spawning));
    out(
      `world ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (${Object.entries(world.buildSeconds)
        .map(([k, v]) => `${k} ${v} s`)
        .join(', ')})`,
    );
    const edgeWorker = workers.find((w) => w.kind === 'edge')!;
    await edgeWorker.ask({
      cmd: 'start',
      configPaths: world.devices.filter((d) => d.role === 'edge').map((d) => d.configPath),
    });
    const solo = world.devices.find((d) => d.name === 'HCS1')!;
    // Started again if its start fails (its meter slow to answer at scale), as systemd would.
    for (let attempt = 1; ; attempt++) {
      const p = await spawnAgent(solo, (line) => {
        if (line.level >= 50) out(`${solo.name}: ${line.msg}`);
      });
      standalone = p;
      try {
        await waitReady(p);
        void p.exited.then((code) => {
          if (!stopping) out(`${solo.name} (its own process) exited with code ${code}`);
        });
        break;
      } catch (err) {
        await p.stop();
        if (attempt >= 3) throw err;
        out(`${solo.name} (its own process) did not start (${(err as Error).message}); starting it again`);
      }
    }
    // The rest dealt to the workers of their kind.
    const share = (kind: 'ev' | 'hcs') => {
      const mine = workers.filter((w) => w.kind === kind);
      const devices = world!.devices.filter((d) => d.role === kind && d !== solo);
      return mine.map((w, i) => ({ w, devices: devices.filter((_, j) => j % mine.length === i) }));
    };
    const shares = [...share('hcs'), ...share('ev')];
    await Promise.all(
      shares.map(({ w, devices }) => w.ask({ cmd: 'start', configPaths: devices.map((d) => d.configPath) })),
    );
    out(
      `${opts.evs + opts.hcs} agents running (${shares.map(({ w, devices }) => `${devices.length} ${w.kind === 'ev' ? 'EVs' : 'stations'}`).join(' + ')} in worker processes, the edge in its own, ${solo.name} as its own \`p2pev run\`)`,
    );
    const evShares = shares.filter(({ w }) => w.kind === 'ev');
    const quotas = evShares.map(({ devices }) => Math.floor((opts.sessions * devices.length) / opts.evs));
    quotas[0]! += opts.sessions - quotas.reduce((a, b) => a + b, 0);

    const pids: Partial<Record<ProcessKind, number[]>> = {
      evWorkers: workers.filter((w) => w.kind === 'ev').map((w) => w.child.pid!),
      hcsWorkers: workers.filter((w) => w.kind === 'hcs').map((w) => w.child.pid!),
      edge: [edgeWorker.child.pid!],
      solo: [standalone.child.pid!],
    };
    await Promise.all(workers.map((w) => w.ask({ cmd: 'mark' })));
    const cpuStart = cpuByKind(pids);
    const loadAtStart = loadavg()[0]!;
    const harnessElu = performance.eventLoopUtilization();
    const started = Date.now();
    const progress = (): Progress => {
      const sum: Progress = { progress: 0, started: 0, why: {} };
      for (const { progress: p } of workers) {
        sum.progress += p.progress;
        sum.started += p.started;
        for (const [k, n] of Object.entries(p.why)) sum.why[k] = (sum.why[k] ?? 0) + n;
      }
      return sum;
    };
    // CPU over the run: from the first car to the last counted session ended (cars whose charge
    // came after the plan was full may still be finishing theirs).
    let cpu:
      | { start: Record<ProcessKind, number>; end: Record<ProcessKind, number>; wallMs: number }
      | undefined;
    const cpuNow = () => ({
      start: cpuStart,
      end: cpuByKind(pids),
      wallMs: Math.max(1, Date.now() - started),
    });
    const allEnded = setInterval(() => {
      if (progress().progress >= opts.sessions) cpu ??= cpuNow();
    }, 250);
    const ticker = setInterval(() => {
      const s = (Date.now() - started) / 1000;
      const p = progress();
      const misses = Object.values(p.why).reduce((a, b) => a + b, 0);
      const why = Object.entries(p.why)
        .map(([reason, n]) => `${n}× ${reason}`)
        .join('; ');
      out(
        `  ${p.progress}/${opts.sessions} sessions ended, ${(p.progress / s).toFixed(1)}/s, ${s.toFixed(0)} s elapsed (${misses} searches found no station${why ? `: ${why}` : ''})`,
      );
      // P2PEV_SCALE_PEEK=1: what each worker's agents are doing (open states, queues, drops).
      if (process.env.P2PEV_SCALE_PEEK)
        for (const w of workers)
          void w.ask({ cmd: 'peek' }).then(
            (v) => out(`    ${w.kind}: ${JSON.stringify(v)}`),
            () => {},
          );
    }, 5000);
    const results = (
      await Promise.all(
        evShares.map(({ w }, i) =>
          w.ask<SessionResult[]>({
            cmd: 'run',
            sessions: quotas[i]!,
            targetWh: opts.targetWh ?? 1000,
            timeoutMs: opts.timeoutMs ?? 600_000,
          }),
        ),
      )
    ).flat();
    clearInterval(ticker);
    clearInterval(allEnded);
    cpu ??= cpuNow();
    // Wait for the last bills in flight (a batch, its receipt, the transaction messages).
    await new Promise((res) => setTimeout(res, 3000));
    const { report, busy, phaseMedianMs } = await measureRun({
      opts,
      brokerName,
      results,
      started,
      verifyPerSec,
      world,
      workers,
      solo,
      standalone,
      cpu,
      loadAtStart,
      harnessElu,
    });
    printReport(out, report, results, busy, solo.name, phaseMedianMs);
    if (opts.json) writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
    out(JSON.stringify(report));
    return report;
  } finally {
    stopping = true;
    await standalone?.stop();
    // The agents first (the edge last: it settles what the others reported), the world last.
    for (const w of [...workers].sort((a, b) => Number(a.kind === 'edge') - Number(b.kind === 'edge'))) {
      await Promise.race([
        w.ask({ cmd: 'stop' }).catch(() => {}),
        new Promise((res) => setTimeout(res, 15_000)),
      ]);
      if (w.child.exitCode === null) w.child.kill('SIGKILL');
    }
    await world?.close();
    rmSync(dir, { recursive: true, force: true });
    process.off('SIGINT', leave);
    process.off('SIGTERM', leave);
  }
}
