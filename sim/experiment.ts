/**
 * `p2pev sim`: the paper's Section 5 experiment in one command. Two EVs, two HCSs and an edge
 * (the paper's five virtual machines), every member funded with 100 ether, a default scenario of
 * sessions (different energies and prices, one termination, ratings), each agent the real
 * `p2pev run` as its own process, each meter a simulated Modbus device. At the end, the table of
 * the paper's web interface, read back from the chain and the agents' journals.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatEther, parseEther } from 'ethers';
import { Journal } from '../agent/core/journal.js';
import { reportEnergyWh } from '../protocol/index.js';
import type { SessionRecord } from '../agent/core/session.js';
import { type AgentProcess, control, type LogLine, spawnAgent, waitReady } from './agents.js';
import { buildWorld, type Device, type EvSpec, type StationSpec, type World } from './world.js';

export interface ExperimentOptions {
  broker?: string;
  rpc?: string;
  meters?: 'tcp' | 'rtu';
  json?: string;
  timeScale?: number;
  dir?: string;
  out?: (line: string) => void;
}

interface Charge {
  ev: string;
  targetWh: number;
  rating: number;
  comment: string;
  /** The driver unplugs after this much energy (a termination). */
  stopAfterWh?: number;
}

export const STATIONS: StationSpec[] = [
  {
    name: 'HCS1',
    latitude: 52.52,
    longitude: 13.405,
    priceWeiPerKWh: parseEther('0.0003'),
    powerKw: 11,
    profile: 'sdm630',
    charger: 'ocpp',
  },
  {
    name: 'HCS2',
    latitude: 52.53,
    longitude: 13.38,
    priceWeiPerKWh: parseEther('0.00025'),
    powerKw: 7.4,
    profile: 'abb-b23',
    charger: 'modbus',
  },
];
export const EVS: EvSpec[] = [
  { name: 'EV1', latitude: 52.521, longitude: 13.407, profile: 'sdm120' },
  { name: 'EV2', latitude: 52.5295, longitude: 13.382, profile: 'em340' },
];
export const SCENARIO: Charge[] = [
  { ev: 'EV1', targetWh: 12_000, rating: 5, comment: 'fast' },
  { ev: 'EV2', targetWh: 8_000, rating: 4, comment: 'ok' },
  { ev: 'EV1', targetWh: 6_000, stopAfterWh: 2_500, rating: 3, comment: 'cut short' },
  { ev: 'EV2', targetWh: 15_000, rating: 5, comment: 'great' },
];

export interface SessionRow {
  txid: string;
  ev: string;
  hcs: string;
  /** The agreed cap: what the reservation held of the EV's deposit, in Wh (× price). */
  reservedWh: number;
  /** The EV's final report. */
  evWh: number;
  /** The highest energy the EV signed (a receipt while charging or its final report). */
  acknowledgedWh: number;
  /** The station's meter. */
  hcsWh: number;
  billedWh: number;
  /** settled (the station's meter), disputed (what the EV acknowledged), or unsettled. */
  outcome: 'settled' | 'disputed' | 'unsettled';
  amountEther: string;
  txHash: string;
  block: number;
  gas: number;
  rating?: number;
  comment?: string;
  endStatus?: number;
}

export interface MemberRow {
  name: string;
  role: string;
  address: string;
  walletBeforeEther: string;
  walletAfterEther: string;
  depositEther: string;
  earnedEther: string;
  paidEther: string;
}

export interface ExperimentReport {
  contract: string;
  chainId: number;
  sessions: SessionRow[];
  members: MemberRow[];
  stations: { name: string; meanRating: number; ratingCount: number }[];
  totals: { paidWei: string; creditedWei: string; balanced: boolean; unpaidDeliveredWh: number };
  /** Measured over the run: messages and envelope bytes sent by all agents, per settled session. */
  figures: {
    messagesPerSession: number;
    bytesPerSession: number;
    requestToSettledS: number;
    plugOutToSettledS: number;
    /** Peak resident memory of each agent process (VmHWM), MB. */
    agentRssMb: Record<string, number>;
  };
}

const short = (hex: string) => `${hex.slice(0, 8)}…${hex.slice(-4)}`;

export async function runExperiment(opts: ExperimentOptions = {}): Promise<ExperimentReport> {
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const started = Date.now();
  const stamp = () => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'p2pev-sim-'));
  out(`${stamp()} building the world in ${dir}`);
  const world = await buildWorld({
    dir,
    stations: STATIONS,
    evs: EVS,
    edge: true,
    ...(opts.broker ? { broker: opts.broker } : {}),
    ...(opts.rpc ? { rpcUrl: opts.rpc } : {}),
    meters: opts.meters ?? 'tcp',
    timeScale: opts.timeScale ?? 300,
    fundEther: '100',
    depositEther: '10',
    // The absolute tolerance must cover the coarsest meter's step: EV2's EM340 counts in 0.1 kWh,
    // so with the 1 % cable loss a 8 kWh charge can differ by 2.1 % (docs/CONTRACT.md, I1).
    settlementParams: { absToleranceWh: 200n },
    log: (l) => out(`${stamp()} ${l}`),
  });
  const agents: AgentProcess[] = [];
  const names = new Map(world.devices.map((d) => [d.address, d.name]));
  const onLog = (line: LogLine, d: Device) => {
    if (line.msg === 'session') {
      out(
        `${stamp()} ${d.name.padEnd(4)} session ${String(line.txid ? short(String(line.txid)) : line.id).padEnd(14)} ${line.from} → ${line.to}${line.error ? ` (${line.error})` : ''}`,
      );
    } else if (line.msg === 'batch settled') {
      out(
        `${stamp()} ${d.name.padEnd(4)} batch of ${line.bills} bill(s) settled in ${short(String(line.tx))}, gas ${line.gas}`,
      );
    } else if (line.level >= 50) {
      out(
        `${stamp()} ${d.name.padEnd(4)} ERROR ${line.msg}${line.err ? `: ${JSON.stringify(line.err)}` : ''}`,
      );
    }
  };
  try {
    const provider = world.operator.contract.runner!.provider!;
    const before = new Map<string, bigint>();
    for (const d of world.devices) before.set(d.address, await provider.getBalance(d.address));
    for (const role of ['edge', 'hcs', 'ev'] as const) {
      const started = await Promise.all(
        world.devices.filter((d) => d.role === role).map((d) => spawnAgent(d, onLog)),
      );
      agents.push(...started);
      await Promise.all(started.map((a) => waitReady(a)));
    }
    out(`${stamp()} ${agents.length} agents running (${agents.map((a) => a.device.name).join(', ')})`);

    // Each EV runs its charges one after another; the two EVs in parallel.
    const byEv = new Map<string, Charge[]>();
    for (const c of SCENARIO) byEv.set(c.ev, [...(byEv.get(c.ev) ?? []), c]);
    let done = 0;
    await Promise.all(
      [...byEv].map(async ([evName, charges]) => {
        const ev = world.devices.find((d) => d.name === evName)!;
        for (const c of charges) {
          await chargeOnce(ev, c);
          done++;
          out(`${stamp()} progress: ${done}/${SCENARIO.length} sessions`);
        }
      }),
    );
    const traffic = { messages: 0, bytes: 0 };
    for (const a of agents) {
      const st = await control<{ messages: { sent: number; sentBytes: number } }>(a.device, 'status');
      traffic.messages += st.messages.sent;
      traffic.bytes += st.messages.sentBytes;
    }
    const report = await collect(world, before, names, traffic);
    report.figures.agentRssMb = Object.fromEntries(
      agents.map((a) => [a.device.name, peakRssMb(a.child.pid!)]),
    );
    print(report, out);
    if (opts.json) {
      writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
      out(`report written to ${opts.json}`);
    }
    return report;
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await world.close();
  }
}

/** One charge, as a driver would do it through the EV's app; waits until settled (and rated). */
async function chargeOnce(ev: Device, c: Charge): Promise<void> {
  const { id } = await control<{ id: string }>(ev, 'charge', {
    targetWh: c.targetWh,
    rating: c.rating,
    comment: c.comment,
  });
  let stopped = false;
  const until = Date.now() + 300_000;
  for (;;) {
    const sessions = await control<SessionRecord[]>(ev, 'sessions');
    const s = sessions.find((x) => x.id === id);
    if (s?.state === 'done') return;
    if (s?.state === 'failed') throw new Error(`${ev.name}: session ${id} failed: ${s.error}`);
    if (
      c.stopAfterWh &&
      !stopped &&
      s?.state === 'charging' &&
      (s.lastWh ?? 0) - (s.startWh ?? 0) >= c.stopAfterWh
    ) {
      await control(ev, 'stop', {});
      stopped = true;
    }
    if (Date.now() > until)
      throw new Error(`${ev.name}: session ${id} did not finish in 5 minutes (state ${s?.state})`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Reads every figure back from the chain (events, receipts, views) and the agents' journals. */
async function collect(
  world: World,
  before: Map<string, bigint>,
  names: Map<string, string>,
  traffic: { messages: number; bytes: number },
): Promise<ExperimentReport> {
  const op = world.operator;
  const provider = op.contract.runner!.provider!;
  const from = world.deployment.block;
  const settledList = await world.operator.settledSessions(from);
  const settled = new Map(settledList.map((r) => [r.txid.toLowerCase(), r]));
  const rated = await op.events('Rated', from);
  const journals = world.devices
    .filter((d) => d.role !== 'edge')
    .map((d) => ({ d, entries: [...Journal.read(d.dataDir).values()] as SessionRecord[] }));
  const recordOf = (txid: string, role: 'ev' | 'hcs') => {
    for (const { d, entries } of journals) {
      if (d.role !== role) continue;
      const s = entries.find((e) => e?.txid?.toLowerCase() === txid && e.myReport);
      if (s) return s;
    }
    return undefined;
  };
  const receipts = new Map<string, { gas: bigint; entries: number }>();
  for (const r of settledList) {
    const x = receipts.get(r.txHash) ?? { gas: 0n, entries: 0 };
    x.entries++;
    receipts.set(r.txHash, x);
  }
  for (const [hash, r] of receipts) r.gas = (await provider.getTransactionReceipt(hash))!.gasUsed;
  // Every session a station metered, settled or not: the promise is about energy delivered.
  const charged = journals
    .filter((j) => j.d.role === 'hcs')
    .flatMap((j) => j.entries.filter((e) => e?.txid && e.myReport && e.role === 'hcs'));
  const sessions: SessionRow[] = charged.map((hcsRec) => {
    const txid = hcsRec.txid!.toLowerCase();
    const evRec = recordOf(txid, 'ev');
    const onChain = settled.get(txid);
    const rating = rated.find((r) => r.args.txid.toLowerCase() === txid)?.args;
    const r = onChain ? receipts.get(onChain.txHash)! : undefined;
    const energy = (hex?: string) => (hex ? Number(reportEnergyWh(hex)) : Number.NaN);
    const evWh = energy(evRec?.myReport);
    const finalWh = energy(hcsRec.peerReport);
    return {
      txid,
      ev: names.get(hcsRec.ev.toLowerCase()) ?? hcsRec.ev,
      hcs: names.get(hcsRec.hcs!.toLowerCase()) ?? hcsRec.hcs!,
      reservedWh: hcsRec.terms!.maxWh,
      evWh,
      acknowledgedWh: Math.max(hcsRec.ackWh ?? 0, Number.isNaN(finalWh) ? 0 : finalWh),
      hcsWh: energy(hcsRec.myReport),
      billedWh: onChain ? Number(onChain.billedWh) : 0,
      outcome: onChain ? (onChain.disputed ? 'disputed' : 'settled') : 'unsettled',
      amountEther: formatEther(onChain?.amountWei ?? 0n),
      txHash: onChain?.txHash ?? '',
      block: onChain?.blockNumber ?? 0,
      gas: r ? Number(r.gas / BigInt(r.entries)) : 0,
      ...(rating
        ? {
            rating: Number(rating.rating),
            comment: Buffer.from(rating.comment.slice(2), 'hex').toString('utf8').replace(/\0+$/, ''),
          }
        : {}),
      ...(evRec?.endStatus !== undefined ? { endStatus: evRec.endStatus } : {}),
    };
  });
  const unpaidDeliveredWh = sessions.reduce((t, x) => t + Math.max(0, x.hcsWh - x.billedWh), 0);
  let paid = 0n;
  let credited = 0n;
  const members: MemberRow[] = [];
  for (const d of world.devices) {
    if (d.role === 'edge') continue;
    const wallet = await provider.getBalance(d.address);
    const dep = await world.operator.depositOf(d.address);
    const earned = d.role === 'hcs' ? await world.operator.earningsOf(d.address) : 0n;
    const paidBy = sessions
      .filter((x) => x.ev === (names.get(d.address) ?? d.address))
      .reduce((n, x) => n + parseEther(x.amountEther), 0n);
    if (d.role === 'ev') paid += paidBy;
    else credited += earned;
    members.push({
      name: d.name,
      role: d.role,
      address: d.address,
      walletBeforeEther: formatEther(before.get(d.address)!),
      walletAfterEther: formatEther(wallet),
      depositEther: d.role === 'ev' ? formatEther(dep.balance) : '',
      earnedEther: formatEther(earned),
      paidEther: formatEther(paidBy),
    });
  }
  const stations = [];
  for (const d of world.devices.filter((x) => x.role === 'hcs')) {
    stations.push({
      name: d.name,
      meanRating: (await world.operator.meanRating(d.address)) / 100,
      ratingCount: await world.operator.ratingCount(d.address),
    });
  }
  return {
    contract: world.deployment.address,
    chainId: world.deployment.chainId,
    sessions,
    members,
    stations,
    totals: {
      paidWei: paid.toString(),
      creditedWei: credited.toString(),
      balanced: paid === credited,
      unpaidDeliveredWh,
    },
    figures: timing(journals, sessions.length, traffic),
  };
}

/** Peak resident set of a process (VmHWM), MB; NaN where /proc does not tell. */
function peakRssMb(pid: number): number {
  try {
    const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    return Math.round(kb / 102.4) / 10;
  } catch {
    return Number.NaN;
  }
}

/** Medians over the EVs' finished sessions (journal timestamps), and traffic per session. */
function timing(
  journals: { d: Device; entries: SessionRecord[] }[],
  settled: number,
  traffic: { messages: number; bytes: number },
) {
  const done = journals
    .filter((j) => j.d.role === 'ev')
    .flatMap((j) => j.entries.filter((e) => e?.state === 'done' && e.t1));
  const median = (xs: number[]) =>
    xs.length ? xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : Number.NaN;
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    messagesPerSession: round(traffic.messages / Math.max(1, settled)),
    bytesPerSession: Math.round(traffic.bytes / Math.max(1, settled)),
    requestToSettledS: round(median(done.map((e) => (e.updatedAt - e.createdAt) / 1000))),
    agentRssMb: {},
    plugOutToSettledS: round(
      median(done.map((e) => (e.endedAt ? (e.updatedAt - e.endedAt) / 1000 : e.updatedAt / 1000 - e.t1!))),
    ),
  };
}

function table(rows: Record<string, unknown>[]): string[] {
  if (rows.length === 0) return ['(none)'];
  const keys = Object.keys(rows[0]!);
  const cell = (v: unknown) => (v === undefined ? '' : String(v));
  const widths = keys.map((k) => Math.max(k.length, ...rows.map((r) => cell(r[k]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ');
  return [
    line(keys),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(keys.map((k) => cell(r[k])))),
  ];
}

export function print(r: ExperimentReport, out: (l: string) => void): void {
  out('');
  out(`Sessions (settlement contract ${r.contract}, chain ${r.chainId})`);
  for (const l of table(
    r.sessions.map((s) => ({
      txid: short(s.txid),
      ev: s.ev,
      hcs: s.hcs,
      'reserved Wh': s.reservedWh,
      'EV Wh': s.evWh,
      'acknowledged Wh': s.acknowledgedWh,
      'station meter Wh': s.hcsWh,
      'billed Wh': s.billedWh,
      outcome: s.outcome,
      ether: s.amountEther,
      tx: short(s.txHash),
      block: s.block,
      gas: s.gas,
      rating: s.rating ? `${s.rating} "${s.comment}"` : '',
      end: s.endStatus === 1 ? 'completed' : s.endStatus ? `terminated (${s.endStatus})` : '',
    })),
  ))
    out(l);
  out('');
  out('Members (ether)');
  for (const l of table(
    r.members.map((m) => ({
      member: m.name,
      role: m.role,
      address: short(m.address),
      'wallet before': m.walletBeforeEther,
      'wallet after': m.walletAfterEther,
      deposit: m.depositEther,
      paid: m.paidEther,
      earned: m.earnedEther,
    })),
  ))
    out(l);
  out('');
  out('Stations');
  for (const l of table(
    r.stations.map((s) => ({
      station: s.name,
      'mean rating': s.meanRating.toFixed(2),
      ratings: s.ratingCount,
    })),
  ))
    out(l);
  out('');
  const f = r.figures;
  out(
    `Agent processes, peak resident memory (MB): ${Object.entries(f.agentRssMb)
      .map(([n, mb]) => `${n} ${mb}`)
      .join(', ')}`,
  );
  out(
    `Per settled session: ${f.messagesPerSession} messages, ${f.bytesPerSession} bytes on the wire; median request → settled ${f.requestToSettledS} s (charging included), plug-out → settled ${f.plugOutToSettledS} s`,
  );
  out(
    `EVs paid ${formatEther(r.totals.paidWei)} ether; HCSs were credited ${formatEther(r.totals.creditedWei)} ether: ${r.totals.balanced ? 'balanced' : 'NOT BALANCED'}; unpaid energy delivered: ${r.totals.unpaidDeliveredWh} Wh`,
  );
}
