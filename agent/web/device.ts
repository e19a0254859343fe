/**
 * The live state of a device for the page: its meter and the session in progress, from the
 * agent's own status (Agent.status() in-process, or `GET /status` + `GET /sessions` of another
 * agent's control port). Power is not a register the agent reads; it is estimated from the last
 * two energy readings.
 */

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
    // A counter that went back (a meter restarted or replaced) starts a new count: no power from
    // the pair, rather than a negative one.
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

export function deviceState(status: StatusLike, records: RecordLike[], power: PowerEstimator): DeviceState {
  const open = records.filter((r) => OPEN.has(r.state));
  // The one that matters on a meter: the charge in progress, else the newest open one.
  const current =
    open.find((r) => r.state === 'charging') ??
    open.sort((a, b) => (b.updatedAt ?? 0) - (a.updatedAt ?? 0))[0];
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
            powerW: power.estimate(address, m.lastWh, m.lastReadAt) ?? meanPowerW(current),
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
