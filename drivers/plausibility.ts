/**
 * The energy register must behave like a counter: never backwards, never faster than the meter's
 * maximum power allows. A reading that breaks this is either a glitch (rejected) or a real
 * discontinuity — the counter was reset, or the meter swapped — which is believed only after
 * consistent re-reads, and then becomes an event and a new baseline, never a negative bill.
 */

export interface EnergySample {
  energyWh: number;
  /** ms; performance-independent wall clock is fine, only differences matter. */
  at: number;
  /**
   * When the read was asked for (ms), if known: the meter took the value somewhere between
   * `from` and `at`. Two samples are then at most `next.at − prev.from` apart, which keeps a
   * busy reader (a late answer, then a quick one) from seeing an impossible jump that is not.
   */
  from?: number;
}

export type Verdict =
  /** Normal progress; `energyWh` is what to report (a sub-resolution step back is held at the last value). */
  | { kind: 'accept'; energyWh: number }
  /** A step back or an impossible jump not (yet) confirmed by consistent re-reads. */
  | { kind: 'unconfirmed'; reason: string }
  /** Confirmed: the counter restarted from a new value. */
  | { kind: 'discontinuity'; direction: 'backwards' | 'forward'; previousWh: number; reason: string };

export interface GuardOptions {
  maxPowerW: number;
  /** Consecutive consistent samples needed to believe a discontinuity (≥ 1). */
  confirmReads: number;
  /** The register's resolution (e.g. 10 Wh for 0.01 kWh); steps back within it are rounding. */
  resolutionWh: number;
}

export class EnergyGuard {
  private last?: EnergySample;
  private candidate?: { sample: EnergySample; count: number };

  constructor(private readonly opts: GuardOptions) {}

  get baseline(): EnergySample | undefined {
    return this.last;
  }

  /** Most energy a counter can gain in `ms`: max power, 25 % margin, plus two resolution steps. */
  allowanceWh(ms: number): number {
    return (this.opts.maxPowerW * Math.max(0, ms) * 1.25) / 3_600_000 + 2 * this.opts.resolutionWh + 1;
  }

  private follows(prev: EnergySample, next: EnergySample): boolean {
    const delta = next.energyWh - prev.energyWh;
    return delta >= -this.opts.resolutionWh && delta <= this.allowanceWh(next.at - (prev.from ?? prev.at));
  }

  evaluate(s: EnergySample): Verdict {
    const last = this.last;
    if (!last) {
      this.last = s;
      return { kind: 'accept', energyWh: s.energyWh };
    }
    if (this.follows(last, s)) {
      this.candidate = undefined;
      // Hold a sub-resolution step back at the last value: the reported counter is monotone.
      const energyWh = Math.max(s.energyWh, last.energyWh);
      this.last = { energyWh, at: s.at, ...(s.from !== undefined ? { from: s.from } : {}) };
      return { kind: 'accept', energyWh };
    }
    const delta = s.energyWh - last.energyWh;
    const reason =
      delta < 0
        ? `energy register went back from ${last.energyWh} Wh to ${s.energyWh} Wh`
        : `energy register jumped by ${delta} Wh in ${((s.at - last.at) / 1000).toFixed(1)} s, more than ` +
          `${this.opts.maxPowerW} W could deliver`;
    const c = this.candidate;
    if (c && this.follows(c.sample, s)) this.candidate = { sample: s, count: c.count + 1 };
    else this.candidate = { sample: s, count: 1 };
    if (this.candidate.count < this.opts.confirmReads) return { kind: 'unconfirmed', reason };
    this.candidate = undefined;
    this.last = s;
    return {
      kind: 'discontinuity',
      direction: delta < 0 ? 'backwards' : 'forward',
      previousWh: last.energyWh,
      reason,
    };
  }

  /** Starts over from this sample (after a replaced meter was detected by its serial). */
  rebase(s: EnergySample): void {
    this.last = s;
    this.candidate = undefined;
  }
}
