/**
 * The simulated meter itself: an energy counter fed by a charging curve, and the register image a
 * profile makes of it. It knows nothing of the wire; the servers in this folder carry its
 * registers over Modbus TCP or RTU.
 */
import { resolveProfile } from '../../drivers/profiles.js';
import { SIM_CONTROL } from '../../drivers/simcontrol.js';
import { encodeRaw, encodeText, rawFromBase, wordCount } from '../../drivers/registers.js';
import type { MeterProfile, RegisterKind, RegisterSpec } from '../../drivers/types.js';
import { type ChargingPlan, chargingPowerW } from './curve.js';
import { FaultPlan, type RequestEffects } from './faults.js';

/** The sim-only control block (its registers: drivers/simcontrol.ts, which the agent writes). */
export { SIM_CONTROL };

const NOMINAL_VOLTAGE = 230;
const NOMINAL_FREQUENCY = 50;

export interface SimMeterModelOptions {
  profile: string;
  unitId?: number;
  serial?: string;
  initialWh?: number;
  /** The power charging runs at once switched on (kW). Default 11. */
  chargeKw?: number;
  /** Simulated seconds per real second of every charge, however it is switched on. Default 1. */
  timeScale?: number;
}

export interface StartChargingOptions {
  targetWh?: number;
  /** Simulated seconds per real second. */
  timeScale?: number;
  rampS?: number;
}

interface Session {
  plan: ChargingPlan;
  timeScale: number;
  elapsedS: number;
  deliveredWh: number;
}

export function defaultSerial(profile: MeterProfile, unitId: number): string {
  return profile.serial?.type === 'ascii'
    ? `SIM${String(unitId).padStart(4, '0')}0001`
    : String(21_000_000 + unitId);
}

export class SimMeterModel {
  readonly profile: MeterProfile;
  readonly unitId: number;
  serial: string;
  readonly faults = new FaultPlan();
  /** performance.now() until which the meter is gone (see the 'disappear' fault). */
  absentUntil = 0;
  private energy: number;
  private session?: Session;
  private lastAdvance = performance.now();
  private chargeKw = 11;
  private chargeTimeScale = 1;
  /** The switch as last written over Modbus (0x7F00). */
  switchedOn = false;
  /**
   * When linked, the switch does not start the load by itself: the world decides whether current
   * flows (both ends switched on and plugged together) and calls start/stopCharging.
   */
  linked = false;
  private readonly plug = new Array<number>(SIM_CONTROL.plugWords).fill(0);

  /** pluggedTo, built again only after a plug register is written. */
  private plugged: string | undefined;

  /**
   * The address written into the plug registers, lowercase 0x-hex (all zeros: unplugged). Kept
   * once built: the cables read it for every car every 20 ms, and building it each time was most
   * of the harness's CPU in a world of 6,000 (7 ms a pass).
   */
  get pluggedTo(): string {
    this.plugged ??= `0x${this.plug.map((w) => w.toString(16).padStart(4, '0')).join('')}`;
    return this.plugged;
  }

  get chargeKwSetting(): number {
    return this.chargeKw;
  }

  constructor(opts: SimMeterModelOptions) {
    this.profile = resolveProfile(opts.profile);
    this.unitId = opts.unitId ?? 1;
    this.serial = opts.serial ?? defaultSerial(this.profile, this.unitId);
    this.energy = opts.initialWh ?? 0;
    this.chargeKw = opts.chargeKw ?? this.chargeKw;
    this.chargeTimeScale = opts.timeScale ?? this.chargeTimeScale;
  }

  /** Integrates the charging curve up to now, in steps of at most 1 simulated second. */
  private advance(now = performance.now()): void {
    const realS = (now - this.lastAdvance) / 1000;
    this.lastAdvance = now;
    const s = this.session;
    if (!s || realS <= 0) return;
    let remaining = realS * s.timeScale;
    const step = Math.max(1, remaining / 5_000); // bounded work however long nobody looked
    while (remaining > 0) {
      const dt = Math.min(step, remaining);
      const p = chargingPowerW(s.plan, s.elapsedS, s.deliveredWh);
      const wh = (p * dt) / 3600;
      const capped = s.plan.targetWh !== undefined ? Math.min(wh, s.plan.targetWh - s.deliveredWh) : wh;
      s.deliveredWh += Math.max(0, capped);
      this.energy += Math.max(0, capped);
      s.elapsedS += dt;
      remaining -= dt;
    }
  }

  get energyWh(): number {
    this.advance();
    return this.energy;
  }

  set energyWh(wh: number) {
    this.advance();
    this.energy = wh;
  }

  get powerW(): number {
    this.advance();
    const s = this.session;
    return s ? chargingPowerW(s.plan, s.elapsedS, s.deliveredWh) : 0;
  }

  get charging(): boolean {
    return this.session !== undefined;
  }

  startCharging(kw: number, opts: StartChargingOptions = {}): void {
    this.advance();
    this.chargeKw = kw;
    this.chargeTimeScale = opts.timeScale ?? this.chargeTimeScale;
    this.session = {
      plan: {
        kw,
        ...(opts.targetWh !== undefined ? { targetWh: opts.targetWh } : {}),
        ...(opts.rampS !== undefined ? { rampS: opts.rampS } : {}),
      },
      timeScale: this.chargeTimeScale,
      elapsedS: 0,
      deliveredWh: 0,
    };
  }

  stopCharging(): void {
    this.advance();
    this.session = undefined;
  }

  /** The values behind the profile's registers, in base units. */
  private values(): Record<string, number> {
    const p = this.powerW;
    const phases = this.profile.phases;
    const v = NOMINAL_VOLTAGE;
    const i = p / (phases * v);
    return {
      energy: this.energy,
      power: p,
      voltage: v,
      voltageL2: v,
      voltageL3: v,
      current: i,
      currentL2: i,
      currentL3: i,
      frequency: NOMINAL_FREQUENCY,
      exportEnergy: 0,
      totalEnergy: this.energy,
    };
  }

  /** The words at `address` for `count` registers, or undefined where the meter has no register. */
  readRegisters(
    kind: RegisterKind,
    address: number,
    count: number,
    fx?: RequestEffects,
  ): number[] | undefined {
    const image = this.image(kind, fx);
    const words: number[] = [];
    for (let a = address; a < address + count; a++) {
      const w = image.get(a);
      if (w === undefined) return undefined;
      words.push(w);
    }
    return words;
  }

  private image(kind: RegisterKind, fx?: RequestEffects): Map<number, number> {
    const image = new Map<number, number>();
    const values = this.values();
    const put = (spec: RegisterSpec, words: number[]) => {
      if (spec.kind !== kind && !this.profile.sharedMap) return;
      words.forEach((w, k) => {
        image.set(spec.address + k, w & 0xffff);
      });
    };
    const named = { ...this.profile.quantities, ...this.profile.extras };
    for (const [name, spec] of Object.entries(named)) {
      if (!spec) continue;
      let base = values[name] ?? 0;
      if (name === 'energy' && fx?.energy?.kind === 'glitch') base += fx.energy.wh;
      let words = encodeRaw(rawFromBase(base, spec), spec);
      if (name === 'energy' && fx?.energy?.kind === 'nan') {
        words = spec.type.startsWith('float') ? encodeRaw(Number.NaN, spec) : words.map(() => 0xffff);
      }
      if (name === 'energy' && fx?.energy?.kind === 'all-ones') words = words.map(() => 0xffff);
      put(spec, words);
    }
    const serial = this.profile.serial;
    if (serial) {
      const words =
        serial.type === 'ascii'
          ? encodeText(this.serial, wordCount(serial))
          : encodeRaw(Number.parseInt(this.serial, 10) >>> 0, serial);
      put(serial, words);
    }
    if (kind === 'holding') {
      image.set(SIM_CONTROL.enable, this.charging ? 1 : 0);
      image.set(SIM_CONTROL.powerHectoWatt, Math.round(this.chargeKw * 10));
    }
    return image;
  }

  readCoil(address: number): boolean | undefined {
    return address === SIM_CONTROL.enable ? this.charging : undefined;
  }

  /** Writes to the control block; false where the meter has no writable register. */
  writeRegister(address: number, value: number): boolean {
    if (address === SIM_CONTROL.enable) {
      this.switchedOn = value !== 0;
      if (this.linked) return true;
      if (value === 0) this.stopCharging();
      else if (!this.charging) this.startCharging(this.chargeKw);
      return true;
    }
    if (address === SIM_CONTROL.powerHectoWatt) {
      this.chargeKw = value / 10;
      if (this.charging) this.startCharging(this.chargeKw);
      return true;
    }
    if (address >= SIM_CONTROL.plugFirst && address < SIM_CONTROL.plugFirst + SIM_CONTROL.plugWords) {
      this.plug[address - SIM_CONTROL.plugFirst] = value & 0xffff;
      this.plugged = undefined;
      return true;
    }
    return false;
  }

  /** Mirrors the counter restarting (the 'reset' fault) or the meter being swapped ('replace'). */
  reset(): void {
    this.energyWh = 0;
  }

  replace(serial?: string, initialWh = 0): void {
    this.serial = serial ?? String(Number.parseInt(this.serial, 10) + 1 || `${this.serial}-2`);
    this.energyWh = initialWh;
  }
}
