/**
 * Faults the simulated meter can be told to show. Per-request faults last `count` requests, or
 * until `clear()` when no count is given; the others happen once, at once.
 */

export type SimFault =
  /** Says nothing (a meter off the bus, a broken A/B wire). */
  | { kind: 'no-response'; count?: number }
  /** Answers with a wrong CRC (noise on the line); over plain Modbus TCP, a truncated frame. */
  | { kind: 'bad-crc'; count?: number }
  /** Answers with a Modbus exception (2 illegal address, 4 device failure, 6 busy …). */
  | { kind: 'exception'; code: number; count?: number }
  /** Answers late. */
  | { kind: 'slow'; delayMs: number; count?: number }
  /** The energy register reads NaN (float) — a failing meter. */
  | { kind: 'nan'; count?: number }
  /** The energy register reads all ones (0xFFFF…), the "not available" marker. */
  | { kind: 'all-ones'; count?: number }
  /** The energy register reads `wh` too high for `count` requests (a corrupted value that passed CRC). */
  | { kind: 'glitch'; wh: number; count?: number }
  /** The counter jumps by `wh` for good. */
  | { kind: 'jump'; wh: number }
  /** The counter restarts from 0 (a technician's reset). */
  | { kind: 'reset' }
  /** Another meter takes its place: new serial, its own counter. */
  | { kind: 'replace'; serial?: string; initialWh?: number }
  /** Gone for `forMs` (default until clear()): TCP closes and refuses connections; RTU stays silent. */
  | { kind: 'disappear'; forMs?: number };

export type RequestFault = Extract<
  SimFault,
  { kind: 'no-response' | 'bad-crc' | 'exception' | 'slow' | 'nan' | 'all-ones' | 'glitch' }
>;

export const REQUEST_FAULT_KINDS = new Set([
  'no-response',
  'bad-crc',
  'exception',
  'slow',
  'nan',
  'all-ones',
  'glitch',
]);

/** What the active faults do to one request. */
export interface RequestEffects {
  drop: boolean;
  badCrc: boolean;
  exception?: number;
  delayMs: number;
  energy?: { kind: 'nan' } | { kind: 'all-ones' } | { kind: 'glitch'; wh: number };
}

export class FaultPlan {
  private active: { fault: RequestFault; left: number }[] = [];

  add(fault: RequestFault): void {
    this.active.push({ fault, left: fault.count ?? Number.POSITIVE_INFINITY });
  }

  clear(): void {
    this.active = [];
  }

  get size(): number {
    return this.active.length;
  }

  /** Consumes one request's worth of every active fault. */
  next(): RequestEffects {
    const fx: RequestEffects = { drop: false, badCrc: false, delayMs: 0 };
    for (const a of this.active) {
      const f = a.fault;
      if (f.kind === 'no-response') fx.drop = true;
      else if (f.kind === 'bad-crc') fx.badCrc = true;
      else if (f.kind === 'exception') fx.exception = f.code;
      else if (f.kind === 'slow') fx.delayMs += f.delayMs;
      else if (f.kind === 'nan') fx.energy = { kind: 'nan' };
      else if (f.kind === 'all-ones') fx.energy = { kind: 'all-ones' };
      else if (f.kind === 'glitch') fx.energy = { kind: 'glitch', wh: f.wh };
      a.left--;
    }
    this.active = this.active.filter((a) => a.left > 0);
    return fx;
  }
}
