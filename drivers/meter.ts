/**
 * A meter on a Modbus line, read through its profile: the billing register with plausibility
 * checks and discontinuity events, diagnostics, identity, retries and statistics.
 */
import { EventEmitter } from 'node:events';
import { classifyError, describeTransport, isRetryable, MeterError } from './errors.js';
import { type Client, ModbusLine } from './line.js';
import { EnergyGuard } from './plausibility.js';
import { resolveProfile } from './profiles.js';
import { decodeRaw, decodeText, isNotAvailable, scaleToBase, UNIT_FACTOR, wordCount } from './registers.js';
import { retry } from './retry.js';
import { StatsRecorder } from './stats.js';
import type {
  BusStats,
  Discontinuity,
  Meter,
  MeterConfig,
  MeterIdentity,
  MeterProfile,
  MeterReading,
  Quantity,
  RegisterSpec,
} from './types.js';

const SERIAL_CHECK_INTERVAL_MS = 60_000;
const BACKOFF = { baseMs: 25, maxMs: 1_000, jitter: 0.25 } as const;

export function validateConfig(config: MeterConfig): MeterProfile {
  if (!config || typeof config !== 'object')
    throw new MeterError('config', 'meter config missing', 'see docs/METERS.md');
  const profile = resolveProfile(config.profile, config.generic);
  if (!Number.isInteger(config.unitId) || config.unitId < 1 || config.unitId > 247) {
    throw new MeterError('config', `unit id ${config.unitId} is out of range`, 'Modbus unit ids are 1..247');
  }
  const t = config.transport;
  if (!t || !['rtu', 'tcp', 'rtu-over-tcp'].includes(t.kind)) {
    throw new MeterError(
      'config',
      'transport.kind must be rtu, tcp or rtu-over-tcp',
      'fix the meter transport',
    );
  }
  if (t.kind === 'rtu' && !t.port)
    throw new MeterError('config', 'rtu transport needs a port', 'e.g. /dev/ttyUSB0');
  if (t.kind !== 'rtu' && (!t.host || !Number.isInteger(t.port) || t.port < 1 || t.port > 65535)) {
    throw new MeterError(
      'config',
      `${t.kind} transport needs host and port 1..65535`,
      'e.g. 192.168.1.20:502',
    );
  }
  return profile;
}

function resolutionWh(spec: RegisterSpec): number {
  if (spec.type === 'float32') return 16; // float32 kWh keeps ~1 Wh up to 16 MWh, 16 Wh up to 130 MWh
  if (spec.type === 'float64') return 1;
  return Math.max(1, (spec.scale ?? 1) * UNIT_FACTOR[spec.unit]);
}

export class ModbusMeter extends EventEmitter implements Meter {
  readonly profile: MeterProfile;
  private line?: ModbusLine;
  private readonly recorder = new StatsRecorder();
  private readonly guard: EnergyGuard;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly unsupported = new Set<string>();
  private serial?: string;
  private serialCheckedAt = 0;
  private epoch = 0;

  constructor(readonly config: MeterConfig) {
    super();
    this.profile = validateConfig(config);
    this.timeoutMs = config.timeoutMs ?? (config.transport.kind === 'tcp' ? 1_000 : 500);
    this.retries = config.retries ?? 2;
    this.guard = new EnergyGuard({
      maxPowerW: config.plausibility?.maxPowerW ?? this.profile.maxPowerW,
      confirmReads: Math.max(1, config.plausibility?.confirmReads ?? 2),
      resolutionWh: resolutionWh(this.profile.quantities.energy),
    });
  }

  async open(): Promise<void> {
    if (!this.line) this.line = ModbusLine.acquire(this.config.transport);
  }

  async close(): Promise<void> {
    const line = this.line;
    this.line = undefined;
    await line?.release();
  }

  stats(): BusStats {
    return this.recorder.snapshot();
  }

  /** One Modbus transaction with retries and backoff; errors are counted and classified. */
  private async transact<T>(op: (client: Client) => Promise<T>): Promise<T> {
    const line = this.line;
    if (!line) throw new MeterError('config', 'meter is not open', 'call open() first (openMeter does)');
    return retry(
      async () => {
        try {
          return await line.exec(this.config.unitId, this.timeoutMs, this.recorder, op);
        } catch (err) {
          const e = classifyError(err, this.config.unitId, this.config.transport);
          this.recorder.error(e.kind, e.message);
          throw e;
        }
      },
      {
        ...BACKOFF,
        retries: this.retries,
        retryable: (e) => isRetryable(e as MeterError),
        onRetry: () => this.recorder.retry(),
      },
    );
  }

  /**
   * Writes holding registers (function 16). Meters are read-only for billing; this is for the
   * devices beside them on the bus: a wallbox's charge switch, or the simulated meter's control block.
   */
  async writeRegisters(address: number, values: number[]): Promise<void> {
    await this.transact((c) => c.writeRegisters(address, values));
  }

  /** Raw words of a register spec, validated for count. */
  async readWords(kind: RegisterSpec['kind'], address: number, count: number): Promise<number[]> {
    const res = await this.transact((c) =>
      kind === 'input' ? c.readInputRegisters(address, count) : c.readHoldingRegisters(address, count),
    );
    const words = res.data as number[];
    if (!Array.isArray(words) || words.length !== count) {
      throw new MeterError(
        'crc',
        `unit ${this.config.unitId} answered ${words?.length ?? 0} registers instead of ${count}`,
        'check the unit id is unique on the bus',
      );
    }
    return words;
  }

  /** A register's value in its base unit (Wh, W, V, A, Hz); rejects "not available" markers and NaN. */
  async readValue(name: string, spec: RegisterSpec): Promise<number> {
    const words = await this.readWords(spec.kind, spec.address, wordCount(spec));
    const where = `${name} (${spec.kind} 0x${spec.address.toString(16).padStart(4, '0')}) of unit ${this.config.unitId}`;
    if (isNotAvailable(words, spec)) {
      throw this.implausible(
        `${where} reads all ones (${words.map(hex4).join(' ')}), the "not available" marker`,
      );
    }
    const raw = decodeRaw(words, spec);
    let exponent = 0;
    if (spec.exponentAddress !== undefined) {
      const [e = 0] = await this.readWords(spec.kind, spec.exponentAddress, 1);
      exponent = decodeRaw([e], { type: 'int16' });
    }
    const value = scaleToBase(raw, spec, exponent);
    if (!Number.isFinite(value)) throw this.implausible(`${where} is ${value}`);
    return value;
  }

  private implausible(message: string): MeterError {
    const e = new MeterError(
      'implausible',
      message,
      `check the profile "${this.profile.name}" matches the meter at ${describeTransport(this.config.transport)}`,
    );
    this.recorder.error('implausible', e.message);
    return e;
  }

  async identity(): Promise<MeterIdentity> {
    const serial = await this.readSerial();
    return {
      ...(serial !== undefined ? { serial } : {}),
      profile: this.profile.name,
      unitId: this.config.unitId,
    };
  }

  private async readSerial(): Promise<string | undefined> {
    const spec = this.profile.serial;
    if (!spec) return undefined;
    const words = await this.readWords(spec.kind, spec.address, wordCount(spec));
    this.serialCheckedAt = Date.now();
    return spec.type === 'ascii' ? decodeText(words) : String(decodeRaw(words, spec));
  }

  async readEnergyWh(): Promise<number> {
    try {
      return await this.readEnergyChecked();
    } catch (err) {
      const e =
        err instanceof MeterError ? err : classifyError(err, this.config.unitId, this.config.transport);
      this.emit('fault', e);
      throw e;
    }
  }

  private async sampleEnergy(): Promise<{ energyWh: number; at: number; from: number }> {
    const from = Date.now();
    const value = await this.readValue('energy', this.profile.quantities.energy);
    const at = Date.now();
    if (value < 0)
      throw this.implausible(`energy register of unit ${this.config.unitId} is negative (${value} Wh)`);
    return { energyWh: Math.round(value), at, from };
  }

  private async readEnergyChecked(): Promise<number> {
    let sample = await this.sampleEnergy();
    const first = this.guard.baseline === undefined;
    let verdict = this.guard.evaluate(sample);
    // A step back or a jump is re-read at once: a glitch goes away, a real reset stays.
    for (let i = 1; verdict.kind === 'unconfirmed' && i < 4; i++) {
      sample = await this.sampleEnergy();
      verdict = this.guard.evaluate(sample);
    }
    if (verdict.kind === 'unconfirmed') throw this.implausible(verdict.reason);
    if (first) {
      this.serial = await this.readSerial().catch(() => undefined);
      return sample.energyWh;
    }
    if (verdict.kind === 'discontinuity') {
      const serial = await this.readSerial().catch(() => undefined);
      // Known serials decide; without them a jump forward looks like a new meter, a step back like a reset.
      const replaced =
        serial !== undefined && this.serial !== undefined
          ? serial !== this.serial
          : verdict.direction === 'forward';
      this.discontinuity(replaced ? 'replaced' : 'reset', verdict.previousWh, sample, serial, verdict.reason);
      return sample.energyWh;
    }
    // A meter swapped for one whose counter happens to fit: only its serial tells.
    if (this.profile.serial && Date.now() - this.serialCheckedAt > SERIAL_CHECK_INTERVAL_MS) {
      const serial = await this.readSerial().catch(() => this.serial);
      if (serial !== undefined && this.serial !== undefined && serial !== this.serial) {
        this.guard.rebase(sample);
        this.discontinuity(
          'replaced',
          verdict.energyWh,
          sample,
          serial,
          `serial changed from ${this.serial} to ${serial}`,
        );
        return sample.energyWh;
      }
    }
    return verdict.energyWh;
  }

  private discontinuity(
    kind: Discontinuity['kind'],
    previousWh: number,
    sample: { energyWh: number; at: number },
    serial: string | undefined,
    reason: string,
  ): void {
    this.epoch++;
    const event: Discontinuity = {
      kind,
      previousWh,
      currentWh: sample.energyWh,
      ...(this.serial !== undefined ? { previousSerial: this.serial } : {}),
      ...(serial !== undefined ? { serial } : {}),
      reason,
      at: sample.at,
      epoch: this.epoch,
    };
    this.serial = serial;
    this.emit(kind, event);
  }

  async read(): Promise<MeterReading> {
    const energyWh = await this.readEnergyWh();
    const at = Date.now();
    const reading: MeterReading = { energyWh, at, epoch: this.epoch };
    const fields: [Exclude<Quantity, 'energy'>, keyof MeterReading][] = [
      ['power', 'powerW'],
      ['voltage', 'voltageV'],
      ['current', 'currentA'],
      ['frequency', 'frequencyHz'],
    ];
    for (const [q, field] of fields) {
      const spec = this.profile.quantities[q];
      if (!spec || this.unsupported.has(q)) continue;
      const value = await this.readValue(q, spec).catch((err: unknown) => {
        // A register the meter does not have stays skipped; other failures are counted and retried next time.
        if (err instanceof MeterError && err.kind === 'exception' && err.exceptionCode === 2)
          this.unsupported.add(q);
        return undefined;
      });
      if (value !== undefined) reading[field] = round(value, 3);
    }
    return reading;
  }

  /** Every quantity and extra of the profile, for `diag read`; failures are reported per value. */
  async readAll(): Promise<
    { name: string; value?: number; unit: string; spec: RegisterSpec; error?: string }[]
  > {
    const entries = [
      ...Object.entries(this.profile.quantities),
      ...Object.entries(this.profile.extras ?? {}),
    ];
    const out = [];
    for (const [name, spec] of entries) {
      if (!spec) continue;
      const unit = baseUnitLabel(spec);
      try {
        const value = await this.readValue(name, spec);
        out.push({ name, value: name === 'energy' ? Math.round(value) : round(value, 3), unit, spec });
      } catch (err) {
        out.push({ name, unit, spec, error: err instanceof Error ? err.message : String(err) });
      }
    }
    return out;
  }

  /** Raw registers for `diag dump`. */
  dump(kind: RegisterSpec['kind'], address: number, count: number): Promise<number[]> {
    return this.readWords(kind, address, count);
  }
}

function baseUnitLabel(spec: RegisterSpec): string {
  return { Wh: 'Wh', kWh: 'Wh', MWh: 'Wh', W: 'W', kW: 'W', V: 'V', A: 'A', mA: 'A', Hz: 'Hz' }[spec.unit];
}

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;
const hex4 = (w: number): string => w.toString(16).padStart(4, '0');
