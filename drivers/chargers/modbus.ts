/**
 * A Modbus wallbox read and switched through its data profile (profiles.ts), on the same shared
 * line machinery as the meters (drivers/line.ts): one queue per serial port or TCP endpoint, so a
 * wallbox and a meter on one RS-485 bus take turns.
 *
 * Failsafe: at open the watchdog timeout and a failsafe current of 0 A are written, so the
 * wallbox stops by itself `failsafeS` after the agent falls silent; `keepAlive` (every tick)
 * keeps it from tripping while the agent lives.
 */
import { classifyError, describeTransport, MeterError } from '../errors.js';
import { type Client, ModbusLine } from '../line.js';
import { decodeRaw, isNotAvailable, wordCount } from '../registers.js';
import { StatsRecorder } from '../stats.js';
import type { Transport } from '../types.js';
import { type ChargerProfile, type ChargerRegister, resolveChargerProfile, statusKey } from './profiles.js';
import {
  type Charger,
  ChargerError,
  type ChargerIdentity,
  type ChargerState,
  type FailsafeInfo,
  type SignedMeterValue,
} from './types.js';

export interface ModbusChargerOptions {
  profile: string;
  unitId?: number;
  transport: Transport;
  timeoutMs?: number;
  failsafeS?: number;
  maxCurrentA?: number;
  /** Field diagnostics: open without writing the watchdog (until an action switches it). */
  readOnly?: boolean;
}

export class ModbusCharger implements Charger {
  readonly kind = 'modbus' as const;
  readonly profile: ChargerProfile;
  readonly unitId: number;
  readonly stats = new StatsRecorder();
  private line?: ModbusLine;
  private configured = false;
  private lastOk = 0;
  private readonly timeoutMs: number;
  readonly failsafeS: number;

  constructor(readonly opts: ModbusChargerOptions) {
    this.profile = resolveChargerProfile(opts.profile);
    this.unitId = opts.unitId ?? this.profile.defaultUnitId;
    this.timeoutMs = opts.timeoutMs ?? (opts.transport.kind === 'tcp' ? 1_000 : 500);
    this.failsafeS = opts.failsafeS ?? 15;
  }

  private where(): string {
    return `${this.profile.name} unit ${this.unitId} at ${describeTransport(this.opts.transport)}`;
  }

  async open(): Promise<void> {
    this.line ??= ModbusLine.acquire(this.opts.transport);
    if (this.opts.readOnly) return;
    await this.configure().catch(() => {
      // Not reachable yet: configured on the next keepAlive.
    });
  }

  /** Watchdog timeout, 0 A failsafe current and the profile's setup registers. */
  private async configure(): Promise<void> {
    const fs = this.profile.failsafe;
    if (fs) {
      await this.write(fs.timeout.address, Math.round((this.failsafeS * 1000) / fs.timeout.unitMs));
      await this.write(fs.current.address, 0);
    }
    for (const s of this.profile.setup ?? []) await this.write(s.address, s.value);
    this.configured = true;
  }

  /** The watchdog as the wallbox has it now (seconds, failsafe current A); undefined without one. */
  async readFailsafe(): Promise<{ timeoutS: number; currentA: number } | undefined> {
    const fs = this.profile.failsafe;
    if (!fs) return undefined;
    const t = await this.word('holding', fs.timeout.address);
    const c = await this.word('holding', fs.current.address);
    return { timeoutS: (t * fs.timeout.unitMs) / 1000, currentA: c * fs.current.unitA };
  }

  connected(): boolean {
    return this.line?.isOpen === true && Date.now() - this.lastOk < 10_000;
  }

  private async exec<T>(op: (c: Client) => Promise<T>): Promise<T> {
    if (!this.line) throw new ChargerError('config', 'charger is not open', 'call open() first');
    try {
      const v = await this.line.exec(this.unitId, this.timeoutMs, this.stats, op);
      this.lastOk = Date.now();
      return v;
    } catch (err) {
      const e = err instanceof MeterError ? err : classifyError(err, this.unitId, this.opts.transport);
      this.stats.error(e.kind, e.message);
      throw new ChargerError('io', `${this.where()}: ${e.message}`, '', { cause: e });
    }
  }

  private write(address: number, value: number): Promise<unknown> {
    return this.exec((c) => c.writeRegister(address, value));
  }

  /** One register's raw value. */
  private async word(kind: 'input' | 'holding', address: number): Promise<number> {
    const [w = 0] = await this.words(kind, address, 1);
    return w;
  }

  private async words(kind: 'input' | 'holding', address: number, count: number): Promise<number[]> {
    const res = await this.exec((c) =>
      kind === 'input' ? c.readInputRegisters(address, count) : c.readHoldingRegisters(address, count),
    );
    const words = res.data as number[];
    if (words?.length !== count)
      throw new ChargerError(
        'io',
        `${this.where()} answered ${words?.length ?? 0} registers instead of ${count}`,
        'check the unit id',
      );
    return words;
  }

  /** A numeric register in its unit (raw × scale); undefined for a "not available" marker. */
  private async value(r: ChargerRegister): Promise<number | undefined> {
    const w = await this.words(r.kind, r.address, wordCount(r));
    if (isNotAvailable(w, r)) return undefined;
    return decodeRaw(w, r) * (r.scale ?? 1);
  }

  private async text(r: ChargerRegister): Promise<string> {
    if (r.type !== 'ascii') return String(await this.value(r));
    const w = await this.words(r.kind, r.address, wordCount(r));
    const bytes = w.flatMap((x) => (r.lowByteFirst ? [x & 0xff, x >> 8] : [x >> 8, x & 0xff]));
    return Buffer.from(bytes).toString('latin1').replace(/\0+$/, '').trim();
  }

  async identity(): Promise<ChargerIdentity> {
    const p = this.profile;
    const firmware = p.firmware ? await this.text(p.firmware).catch(() => undefined) : undefined;
    const serial = p.serial ? await this.text(p.serial).catch(() => undefined) : undefined;
    return {
      vendor: p.vendor,
      model: p.model,
      ...(serial ? { serial } : {}),
      ...(firmware ? { firmware } : {}),
    };
  }

  private async enabledAndLimit(): Promise<{ enabled: boolean; limitA: number }> {
    const limitA = (await this.word('holding', this.profile.current.address)) * this.profile.current.unitA;
    const enable = this.profile.enable;
    if (enable.kind === 'current') return { enabled: limitA > 0, limitA };
    const coils = await this.exec((c) => c.readCoils(enable.address, 1));
    return { enabled: coils.data[0] === true, limitA };
  }

  async state(): Promise<ChargerState> {
    const p = this.profile;
    const key = statusKey(p, await this.word(p.status.register.kind, p.status.register.address));
    const mapped = p.status.states[key];
    const { enabled, limitA } = await this.enabledAndLimit();
    let status = mapped?.status ?? 'fault';
    // Connected and permitted, yet no current drawn: the car pauses (full, scheduled, heating).
    if (status === 'plugged' && enabled) status = 'suspendedByEv';
    const energyWh = p.energy ? await this.value(p.energy).catch(() => undefined) : undefined;
    const powerW = p.power ? await this.value(p.power).catch(() => undefined) : undefined;
    return {
      status,
      raw: mapped ? mapped.label : `unknown state ${key}`,
      enabled,
      currentLimitA: limitA,
      ...(energyWh !== undefined ? { energyWh: Math.round(energyWh) } : {}),
      ...(powerW !== undefined ? { powerW } : {}),
      at: Date.now(),
    };
  }

  private clamp(currentA: number): number {
    const c = this.profile.current;
    const max = Math.min(c.maxA, this.opts.maxCurrentA ?? c.maxA);
    if (!(currentA >= c.minA))
      throw new ChargerError(
        'rejected',
        `${currentA} A is below the ${c.minA} A a ${p(this.profile)} accepts`,
        'IEC 61851-1 needs at least 6 A per phase: raise hcs.powerKw, or set charger.phases to 1 for a single-phase station',
      );
    return Math.min(currentA, max);
  }

  async setCurrent(currentA: number): Promise<void> {
    const a = this.clamp(currentA);
    // Rounded down to the wallbox's step: never more current than the terms allow.
    await this.write(this.profile.current.address, Math.floor(a / this.profile.current.unitA + 1e-9));
  }

  async enable(currentA: number, _sessionId: string): Promise<void> {
    if (!this.configured) await this.configure();
    await this.setCurrent(currentA);
    const e = this.profile.enable;
    if (e.kind === 'coil') await this.exec((c) => c.writeCoil(e.address, true));
  }

  async disable(): Promise<void> {
    const e = this.profile.enable;
    if (e.kind === 'coil') await this.exec((c) => c.writeCoil(e.address, false));
    else await this.write(this.profile.current.address, 0);
  }

  async keepAlive(): Promise<void> {
    if (!this.configured) await this.configure();
    else await this.words(this.profile.status.register.kind, this.profile.status.register.address, 1);
  }

  signedValues(_sessionId: string): SignedMeterValue[] {
    return [];
  }

  failsafe(): FailsafeInfo {
    if (!this.profile.failsafe)
      return {
        configured: false,
        detail: `${this.profile.model} has no Modbus watchdog register: only the agent's start-up check (it switches off a charge with no open session) stops it`,
      };
    return {
      configured: this.configured,
      worstCaseS: this.failsafeS,
      detail: `watchdog ${this.failsafeS} s (holding ${this.profile.failsafe.timeout.address}), failsafe current 0 A (holding ${this.profile.failsafe.current.address})`,
    };
  }

  async close(): Promise<void> {
    const line = this.line;
    this.line = undefined;
    await line?.release();
  }
}

const p = (profile: ChargerProfile) => profile.model;
