/**
 * The soak run's parts (`p2pev sim --duration S`, sim/chaos.ts without faults): the agents run as
 * the installed unit runs them, their journals start full, and each agent's memory, descriptors
 * and journal are sampled and their trend drawn robustly.
 *
 * - As installed: the compiled bundle (`npm run build`, built first when the sim runs from a
 *   checkout), with the unit's environment (heap and young-generation sizes, malloc settings).
 * - Journals full from the start: a device that has run for months keeps its newest 200 finished
 *   sessions (an EV, a station) or 500 bills (the edge), and memory grows while it fills them. A run
 *   of minutes would measure that filling (a few MB, bounded) rather than what a device does for
 *   years, so each journal is filled up to its cap before the agents start, with records of the
 *   real ones' shape and size (marked `prefill`, left out of the report's money figures). The caps
 *   are then reached from the first minute and what the trend shows is growth beyond them.
 * - The trend: the median of the slopes between every two samples after the warm-up (Theil–Sen),
 *   not a least-squares line: a garbage collection or a compaction is a step that a least-squares
 *   line over a few dozen samples turns into a slope. The heap's trend is drawn through the heap
 *   still used after the last full collection (agent/core/memory.ts), not the sawtooth of the
 *   heap in use, which is mostly garbage waiting for the next one; but only when enough full
 *   collections fell in the window (nothing is forced: the agents run as installed). Otherwise it
 *   is the heap in use, and the report says which.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KEEP_SESSIONS } from '../agent/core/runtime.js';
import { KEEP_FINISHED } from '../agent/roles/edge.js';
import type { Device } from './world.js';

export interface Sample {
  /** Seconds since the run started. */
  t: number;
  rssMb: number;
  /**
   * The private part of the resident set (RssAnon: heaps, malloc); the rest is mostly the node
   * binary's own pages, shared and read from disk as code paths are first used.
   */
  rssAnonMb: number;
  /** V8 heap in use now (garbage included). */
  heapMb: number;
  /** V8 heap in use after the last full collection (NaN before the first). */
  heapAfterGcMb: number;
  /** Full collections since the agent started. */
  fullGcs: number;
  /** Memory outside the V8 heap that V8 knows of (Buffers). */
  externalMb: number;
  fds: number;
  journalKb: number;
}

export interface Trend {
  samples: number;
  rssMbPerH: number;
  rssAnonMbPerH: number;
  /** Through the heap after full collections (the heap in use where there were none). */
  heapMbPerH: number;
  /**
   * What heapMbPerH is drawn through: the heap after full collections when at least
   * MIN_FULL_GCS of them fell after the warm-up; otherwise the heap in use (garbage included: an
   * upper bound of what is kept, as old garbage piles up between the rare full collections).
   */
  heapBasis: 'after full GC' | 'in use';
  /** Full collections after the warm-up. */
  fullGcs: number;
  heapInUseMbPerH: number;
  externalMbPerH: number;
  fdsPerH: number;
  journalKbPerH: number;
  last: Sample;
}

/** Theil–Sen: the median slope between every two points (NaN values left out); per hour. */
export function robustSlopePerHour(points: { t: number; v: number }[]): number {
  const xs = points.filter((p) => Number.isFinite(p.v));
  const slopes: number[] = [];
  for (let i = 0; i < xs.length; i++)
    for (let j = i + 1; j < xs.length; j++) {
      const dt = xs[j]!.t - xs[i]!.t;
      if (dt > 0) slopes.push((xs[j]!.v - xs[i]!.v) / dt);
    }
  if (slopes.length === 0) return Number.NaN;
  slopes.sort((a, b) => a - b);
  const mid = slopes.length / 2;
  const median = Number.isInteger(mid) ? (slopes[mid - 1]! + slopes[mid]!) / 2 : slopes[Math.floor(mid)]!;
  return Math.round(median * 3600 * 100) / 100;
}

/**
 * Full collections needed after the warm-up before the heap's trend is drawn through what they
 * left: the figure changes only at one, so with fewer it would be a flat line whatever is kept.
 */
export const MIN_FULL_GCS = 3;

/** Each figure's trend per hour over the samples after warm-up. */
export function trendOf(samples: Sample[], warmupS: number): Trend | undefined {
  const last = samples.at(-1);
  if (!last) return undefined;
  const xs = samples.filter((s) => s.t >= warmupS);
  const slope = (f: (s: Sample) => number) => robustSlopePerHour(xs.map((s) => ({ t: s.t, v: f(s) })));
  const gcs = xs.length > 0 ? xs.at(-1)!.fullGcs - xs[0]!.fullGcs : 0;
  const afterGc = gcs >= MIN_FULL_GCS ? slope((s) => s.heapAfterGcMb) : Number.NaN;
  return {
    samples: xs.length,
    rssMbPerH: slope((s) => s.rssMb),
    rssAnonMbPerH: slope((s) => s.rssAnonMb),
    heapMbPerH: Number.isFinite(afterGc) ? afterGc : slope((s) => s.heapMb),
    heapBasis: Number.isFinite(afterGc) ? 'after full GC' : 'in use',
    fullGcs: Number.isFinite(gcs) ? gcs : 0,
    heapInUseMbPerH: slope((s) => s.heapMb),
    externalMbPerH: slope((s) => s.externalMb),
    fdsPerH: slope((s) => s.fds),
    journalKbPerH: slope((s) => s.journalKb),
    last,
  };
}

/** One sample of an agent: /proc for RSS and descriptors, its status for the heap and journal. */
export function sampleOf(
  pid: number,
  status: Record<string, unknown>,
  t: number,
  /** The figures of a full collection forced just after the status was read (`--force-gc`). */
  forced?: { heapAfterGcMb?: number },
): Sample | undefined {
  try {
    const proc = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(proc)?.[1]);
    const anonKb = Number(/RssAnon:\s+(\d+)/.exec(proc)?.[1]);
    const memory = (status.memory ?? {}) as { heapAfterGcMb?: number; externalMb?: number; fullGcs?: number };
    return {
      t,
      rssMb: Math.round(kb / 102.4) / 10,
      rssAnonMb: Math.round(anonKb / 102.4) / 10,
      heapMb: Number(status.heapUsedMb ?? Number.NaN),
      heapAfterGcMb: Number((forced ?? memory).heapAfterGcMb ?? Number.NaN),
      // A forced one is one more than the status counted.
      fullGcs: Number(memory.fullGcs ?? Number.NaN) + (forced ? 1 : 0),
      externalMb: Number(memory.externalMb ?? Number.NaN),
      fds: readdirSync(`/proc/${pid}/fd`).length,
      journalKb: Math.round(Number((status.journal as { bytes?: number })?.bytes ?? 0) / 102.4) / 10,
    };
  } catch {
    return undefined;
  }
}

/**
 * In a checkout (the sim runs from the TypeScript sources), compiles dist/ as `npm run build`
 * does, so the agents run the bundle the unit runs; returns what runs. An installed tree, or a
 * sim already running from dist/, is run as it is.
 */
export function ensureBuilt(): string {
  const fromSources = import.meta.url.endsWith('.ts');
  const build = fileURLToPath(new URL('../.ci/build.mjs', import.meta.url));
  if (fromSources && existsSync(build)) {
    execFileSync(process.execPath, [build], { stdio: 'ignore' });
    return 'the compiled bundle (dist/, built now)';
  }
  return fromSources ? 'the TypeScript sources (no build script here)' : 'the compiled bundle (dist/)';
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const address = () => `0x${hex(20)}`;

/**
 * A finished session or bill as the agents journal them (roles/ev.ts, hcs.ts, edge.ts): the same
 * keys, shape and size, so the memory a run starts with is what months of real sessions leave.
 * The edge keeps a bill's signed envelopes under keys of their own (`e:<txid>:<field>`, each
 * written once), not inside the bill: a bill is three more journal keys.
 */
export function filler(role: Device['role'], i: number, at: number, ocmf = false): [string, unknown][] {
  const terms = {
    seq: String(i + 1),
    price: '300000000000000',
    maxWh: 5944,
    settleBy: Math.floor(at / 1000),
  };
  // Envelopes as journaled: hex of a consent (~165 bytes) and a report (~210 bytes).
  const consent = hex(165);
  const report = () => hex(210);
  const parties = { ev: address(), hcs: address(), server: address() };
  if (role === 'edge') {
    const txid = `0x${hex(32)}`;
    const bill: [string, unknown] = [
      `b:${txid}`,
      {
        txid,
        ev: parties.ev,
        hcs: parties.hcs,
        terms,
        state: 'settled',
        createdAt: at,
        reservation: 'reserved',
        endedAt: at,
        disputed: false,
        energyWh: '4230',
        amountWei: '1269000000000000',
        queuedAt: at,
        submittedAt: at,
        batchTx: `0x${hex(32)}`,
        settledAt: at,
        prefill: true,
      },
    ];
    return [
      [`e:${txid}:consent`, consent],
      [`e:${txid}:evReport`, report()],
      [`e:${txid}:hcsReport`, report()],
      bill,
    ];
  }
  const id = `prefill-${i}`;
  const common = {
    id,
    role,
    state: 'done',
    deadline: 0,
    ...parties,
    terms,
    txid: `0x${hex(32)}`,
    kw: 11,
    createdAt: at,
    updatedAt: at,
    startWh: 0,
    meterEpoch: 0,
    lastWh: 4166,
    lastProgressAt: at,
    t0: Math.floor(at / 1000),
    endWh: 4230,
    t1: Math.floor(at / 1000),
    endedAt: at,
    endStatus: 1,
    myReport: report(),
    peerReport: report(),
    endedByPeer: true,
    prefill: true,
  };
  const own =
    role === 'ev'
      ? {
          targetWh: 4120,
          candidates: [address(), address(), address()],
          receipts: { wh: 500, ms: 500 },
          receiptIndex: 10,
          receiptWh: 3965,
          receiptAt: at,
          settledAt: at,
        }
      : {
          consent,
          ackWh: 4147,
          ackReport: report(),
          lastAckAt: at,
          reserved: true,
          switchedOnAt: at,
          ...(ocmf ? { chargerSigned: [hex(180), hex(180)] } : {}),
        };
  return [[`s:${id}`, { ...common, ...own }]];
}

/**
 * Fills each agent's journal up to its cap with finished records, older than anything the run
 * makes (so they are the first pruned): what a device holds after months. Returns how many.
 */
export function prefillJournals(devices: Device[], now = Date.now()): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of devices) {
    const n = d.role === 'edge' ? KEEP_FINISHED : KEEP_SESSIONS;
    const ocmf = d.role === 'hcs' && existsSync(`${d.dataDir}/ocpp.password`);
    let lines = '';
    for (let i = 0; i < n; i++) {
      // A day ago and before: older than every record of the run.
      for (const [k, v] of filler(d.role, i, now - 86_400_000 - (n - i) * 60_000, ocmf)) {
        lines += `${JSON.stringify({ k, v })}\n`;
      }
    }
    appendFileSync(`${d.dataDir}/journal.jsonl`, lines, { mode: 0o600 });
    out[d.name] = n;
  }
  return out;
}
