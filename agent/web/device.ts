/**
 * The live state of a device for the page: its meter and the session in progress, from the
 * agent's own status (Agent.status() in-process, or `GET /status` + `GET /sessions` of another
 * agent's control port). Power is not a register the agent reads; it is estimated from the last
 * two energy readings.
 */
import { billWei } from '../../protocol/index.js';

export interface DeviceState {
  name: string;
  role: string;
  address: string;
  reachable: boolean;
  error?: string;
  meter?: { serial?: string; profile?: string; energyWh?: number; readAt?: number; powerW?: number };
  session?: {
    id: string;
    state: string;
    txid?: string;
    peer?: string;
    targetWh?: number;
    /** Energy metered so far in this session (last reading − reading at start). */
    energyWh?: number;
    /** The agreed terms (once offered): what the charge may cost at most. */
    terms?: { priceWeiPerKWh: string; maxEnergyWh: number; settleBy: number };
    /** The bill so far at the agreed price (what the contract would move for energyWh). */
    predictedWei?: string;
    /** Unix seconds the charge began (t0), ms the record last changed. */
    startedAt?: number;
    updatedAt?: number;
    error?: string;
    /** The terms are agreed and wait for the driver's POST /accept (nothing signed yet). */
    awaitingAcceptance?: boolean;
    /** The payment assurance: the session's cap × price reserved on chain (undefined before it applies). */
    reserved?: boolean;
    /** The EV's newest signed receipt (its cumulative Wh), or, at a station, the newest it holds. */
    receipt?: { index?: number; wh: number; at?: number };
  };
  openSessions: number;
}

interface StatusLike {
  name?: string;
  role?: string;
  address?: string;
  meter?: { profile?: string; serial?: string; lastWh?: number; lastReadAt?: number };
}

interface RecordLike {
  id: string;
  state: string;
  txid?: string;
  ev?: string;
  hcs?: string;
  role?: string;
  targetWh?: number;
  startWh?: number;
  lastWh?: number;
  /** Unix seconds when the charge began. */
  t0?: number;
  updatedAt?: number;
  terms?: { price: string; maxWh: number; settleBy: number };
  error?: string;
  agreedAt?: number;
  /** Fields of the payment assurance, where the record has them. */
  reserved?: boolean;
  consent?: string;
  receiptIndex?: number;
  receiptWh?: number;
  receiptAt?: number;
  ackWh?: number;
  lastAckAt?: number;
}

/**
 * Whether the session's cap stands reserved on chain: the station's record says so; an EV that
 * gave its consent knows it once energy flows (the station switches on only once it stands).
 */
function reservedOf(r: RecordLike): boolean | undefined {
  if (r.reserved !== undefined) return r.reserved;
  // The EV's consent is its receipt 0 (receiptIndex set); a station keeps the consent itself.
  if (r.consent === undefined && r.receiptIndex === undefined) return undefined;
  return r.startWh !== undefined && r.lastWh !== undefined && r.lastWh > r.startWh;
}

/** The newest signed receipt of a record: the EV's own, or the one a station holds. */
function receiptOf(r: RecordLike): { index?: number; wh: number; at?: number } | undefined {
  if (r.receiptWh !== undefined && r.receiptIndex)
    return { index: r.receiptIndex, wh: r.receiptWh, ...(r.receiptAt ? { at: r.receiptAt } : {}) };
  if (r.ackWh !== undefined) return { wh: r.ackWh, ...(r.lastAckAt ? { at: r.lastAckAt } : {}) };
  return undefined;
}

const OPEN = new Set([
  'searching',
  'requesting',
  'offered',
  'awaitingMutual',
  'charging',
  'awaitingSettlement',
]);

/** Keeps the previous reading per device, to turn two energy readings into a mean power. */
export class PowerEstimator {
  private readonly last = new Map<string, { wh: number; at: number; powerW?: number }>();

  estimate(device: string, wh: number | undefined, at: number | undefined): number | undefined {
    if (wh === undefined || !at) return undefined;
    const prev = this.last.get(device);
    if (prev && prev.at === at) return prev.powerW;
    // A register that went back (a meter reset or swap) gives no power, never a negative one.
    const powerW =
      prev && at > prev.at && wh >= prev.wh
        ? Math.round(((wh - prev.wh) * 3_600_000) / (at - prev.at))
        : undefined;
    this.last.set(device, { wh, at, ...(powerW !== undefined ? { powerW } : {}) });
    return powerW;
  }
}

function meanPowerW(r: RecordLike | undefined): number | undefined {
  if (r?.state !== 'charging' || !r.t0 || r.startWh === undefined || r.lastWh === undefined) return undefined;
  const seconds = Date.now() / 1000 - r.t0;
  return seconds > 0 ? Math.round(((r.lastWh - r.startWh) * 3600) / seconds) : undefined;
}

/** How long a finished session stays on the device's tile (its bill, its error). */
const RECENT_MS = 15 * 60_000;

export function deviceState(
  status: StatusLike,
  records: RecordLike[],
  power: PowerEstimator,
  /** The meter's own power register (Metering.powerW), when read: it wins over any estimate. */
  meterPowerW?: number,
): DeviceState {
  const open = records.filter((r) => OPEN.has(r.state));
  const newest = (list: RecordLike[]) => [...list].sort((a, b) => (b.updatedAt ?? 0) - (a.updatedAt ?? 0))[0];
  // The one that matters on a meter: the charge in progress, else the newest open one, else the
  // one that just ended (the driver still wants its bill).
  const recent = newest(records.filter((r) => (r.updatedAt ?? 0) > Date.now() - RECENT_MS));
  const current = open.find((r) => r.state === 'charging') ?? newest(open) ?? recent;
  const m = status.meter;
  const address = String(status.address ?? '');
  return {
    name: String(status.name ?? ''),
    role: String(status.role ?? ''),
    address,
    reachable: true,
    ...(m
      ? {
          meter: {
            ...(m.serial !== undefined ? { serial: m.serial } : {}),
            ...(m.profile !== undefined ? { profile: m.profile } : {}),
            ...(m.lastWh !== undefined ? { energyWh: m.lastWh } : {}),
            ...(m.lastReadAt ? { readAt: m.lastReadAt } : {}),
            // Until two readings are seen, the mean power of the charge so far.
            powerW: (() => {
              // Keep the estimator's history current either way.
              const estimate = power.estimate(address, m.lastWh, m.lastReadAt) ?? meanPowerW(current);
              return meterPowerW ?? estimate;
            })(),
          },
        }
      : {}),
    ...(current
      ? {
          session: {
            id: current.id,
            state: current.state,
            ...(current.txid ? { txid: current.txid } : {}),
            ...(current.role === 'ev' && current.hcs
              ? { peer: current.hcs }
              : current.ev
                ? { peer: current.ev }
                : {}),
            ...(current.targetWh ? { targetWh: current.targetWh } : {}),
            ...(current.startWh !== undefined && current.lastWh !== undefined
              ? { energyWh: current.lastWh - current.startWh }
              : {}),
            ...(current.terms
              ? {
                  terms: {
                    priceWeiPerKWh: current.terms.price,
                    maxEnergyWh: current.terms.maxWh,
                    settleBy: current.terms.settleBy,
                  },
                  ...(current.startWh !== undefined && current.lastWh !== undefined
                    ? {
                        predictedWei: billWei(
                          BigInt(
                            Math.max(0, Math.min(current.lastWh - current.startWh, current.terms.maxWh)),
                          ),
                          BigInt(current.terms.price),
                        ).toString(),
                      }
                    : {}),
                }
              : {}),
            ...(current.state === 'awaitingMutual' &&
            current.agreedAt !== undefined &&
            current.receiptIndex === undefined
              ? { awaitingAcceptance: true }
              : {}),
            ...(current.t0 ? { startedAt: current.t0 } : {}),
            ...(current.updatedAt ? { updatedAt: current.updatedAt } : {}),
            ...(current.error ? { error: current.error } : {}),
            ...(reservedOf(current) !== undefined ? { reserved: reservedOf(current) } : {}),
            ...(receiptOf(current) ? { receipt: receiptOf(current) } : {}),
          },
        }
      : {}),
    openSessions: open.length,
  };
}

/** Another agent's live state over its control port (the standalone page, the sim). */
export async function fetchDeviceState(controlUrl: string, power: PowerEstimator): Promise<DeviceState> {
  const base = controlUrl.replace(/\/$/, '');
  try {
    const get = async (path: string) => {
      const res = await fetch(base + path, { signal: AbortSignal.timeout(2000) });
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
      return res.json();
    };
    const [status, records] = await Promise.all([get('/status'), get('/sessions')]);
    return deviceState(status as StatusLike, records as RecordLike[], power);
  } catch (err) {
    return {
      name: base,
      role: '',
      address: '',
      reachable: false,
      error: (err as Error).message,
      openSessions: 0,
    };
  }
}
