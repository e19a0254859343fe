/** The public shapes of the meter drivers; `index.ts` re-exports them. */
import type { MeterError } from './errors.js';

export type Parity = 'none' | 'even' | 'odd';

export type Transport =
  | {
      kind: 'rtu';
      /** Serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/usb-FTDI_… (stable across replugs). */
      port: string;
      baudRate?: number;
      parity?: Parity;
      stopBits?: 1 | 2;
      dataBits?: 7 | 8;
      /** Silence kept on the line after each response; default 3.5 character times (Modbus RTU t3.5). */
      interFrameDelayMs?: number;
    }
  | { kind: 'tcp'; host: string; port: number }
  /** Modbus RTU frames (with CRC) tunnelled through a TCP serial gateway. */
  | { kind: 'rtu-over-tcp'; host: string; port: number };

export type RegisterKind = 'input' | 'holding';
export type DataType =
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'float32'
  | 'float64'
  /** Two ASCII characters per register, high byte first; for serial numbers and type strings. */
  | 'ascii';
/** high-first: the register at the lower address holds the most significant word (Modbus' default). */
export type WordOrder = 'high-first' | 'low-first';
export type Unit = 'Wh' | 'kWh' | 'MWh' | 'W' | 'kW' | 'V' | 'A' | 'mA' | 'Hz';

/** One value in a meter's register map, described as data (evcc/mbmd style). */
export interface RegisterSpec {
  kind: RegisterKind;
  /** 0-based protocol address (the "PDU address"; register 30073 in 1-based docs is 0x0048). */
  address: number;
  type: DataType;
  wordOrder?: WordOrder;
  /** value in `unit` = raw × scale; e.g. 0.01 for ABB's energy in hundredths of a kWh. */
  scale?: number;
  unit: Unit;
  /**
   * Vendor exponent form: value = raw × 10^e, where e is the signed int16 at this address
   * (SunSpec-style scale factor registers).
   */
  exponentAddress?: number;
  /** Register count for `ascii`. */
  words?: number;
}

export type Quantity = 'energy' | 'power' | 'voltage' | 'current' | 'frequency';

export interface GenericProfile {
  /** Short name shown in logs and diag output; defaults to "generic". */
  name?: string;
  description?: string;
  /** The billing register (total imported active energy) is required; the rest is for diagnostics. */
  quantities: { energy: RegisterSpec } & Partial<Record<Exclude<Quantity, 'energy'>, RegisterSpec>>;
  /** Extra values shown by `diag read` (per-phase values, export energy …). */
  extras?: Record<string, RegisterSpec>;
  serial?: RegisterSpec;
  /** Upper bound of the power the meter can measure; bounds the plausible energy increase. */
  maxPowerW?: number;
}

export interface MeterProfile extends GenericProfile {
  name: string;
  vendor: string;
  model: string;
  /** The vendor document the map was checked against (name and version). */
  source: string;
  phases: 1 | 3;
  maxPowerW: number;
  /** Function codes 03 and 04 read the same register map (Carlo Gavazzi). */
  sharedMap?: boolean;
  /** Serial settings the meter leaves the factory with. */
  factoryLine: { baudRate: number; parity: Parity; stopBits: 1 | 2; unitId: number };
}

export interface PlausibilityOptions {
  /** Consecutive consistent reads needed before a backwards step or jump is believed. Default 2. */
  confirmReads?: number;
  /** Largest power the counter may have integrated; default the profile's maxPowerW. */
  maxPowerW?: number;
}

export interface MeterConfig {
  /** 'sdm630' | 'sdm120' | 'sdm72d' | 'sdm72d-v2' | 'abb-b23' | 'abb-b24' | 'em340' | 'et340' | 'generic' */
  profile: string;
  unitId: number;
  transport: Transport;
  /** Per-request timeout, default 500 ms on serial lines and 1000 ms over TCP. */
  timeoutMs?: number;
  /** Extra attempts after a failed request (with exponential backoff), default 2. */
  retries?: number;
  /** The user-described profile when `profile` is 'generic'. */
  generic?: GenericProfile;
  plausibility?: PlausibilityOptions;
}

export interface MeterReading {
  /** Total imported active energy in whole Wh: the billing register. */
  energyWh: number;
  powerW?: number;
  voltageV?: number;
  currentA?: number;
  frequencyHz?: number;
  /** ms since the epoch, when the energy register was read. */
  at: number;
  /**
   * Counts the counter discontinuities (reset / replaced) this driver has seen. Two readings are
   * comparable (end − start is energy delivered) only when their epochs are equal.
   */
  epoch: number;
}

export type ErrorKind = 'timeout' | 'crc' | 'exception' | 'port-gone' | 'implausible' | 'config';

export interface LatencySummary {
  samples: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface BusStats {
  /** Modbus transactions put on the wire (each retry counts). */
  requests: number;
  /** Transactions that returned a valid response. */
  responses: number;
  retries: number;
  errors: Record<ErrorKind, number>;
  /** Times the port or connection was (re)opened after being lost. */
  reconnects: number;
  /** Round-trip time of successful transactions, ms, over the last 1024. */
  latencyMs: LatencySummary;
  lastError?: { kind: ErrorKind; message: string; at: number };
}

export interface MeterIdentity {
  serial?: string;
  profile: string;
  unitId: number;
}

/** Payload of the 'reset' and 'replaced' events. */
export interface Discontinuity {
  kind: 'reset' | 'replaced';
  previousWh: number;
  currentWh: number;
  previousSerial?: string;
  serial?: string;
  /** Why the driver believes it, in words for the log. */
  reason: string;
  at: number;
  /** The epoch that starts with this reading. */
  epoch: number;
}

export interface Meter {
  readonly config: MeterConfig;
  /** Validates the config and attaches to the (shared) line; the port itself opens on first use. */
  open(): Promise<void>;
  identity(): Promise<MeterIdentity>;
  /** The billing register, checked for plausibility; throws MeterError. */
  readEnergyWh(): Promise<number>;
  /** Energy (required) plus whatever diagnostics the profile has; a failed diagnostic is left out. */
  read(): Promise<MeterReading>;
  stats(): BusStats;
  /**
   * Writes holding registers (function 16). Meters are read-only for billing; this is for the
   * devices beside them on the bus (a wallbox's switch, the simulated meter's control block).
   */
  writeRegisters(address: number, values: number[]): Promise<void>;
  close(): Promise<void>;
  on(event: 'reset' | 'replaced', cb: (d: Discontinuity) => void): this;
  /** A read that failed after its retries (the same error the call throws). */
  on(event: 'fault', cb: (err: MeterError) => void): this;
  // biome-ignore lint/suspicious/noExplicitAny: listeners of either event type may be removed
  off(event: 'reset' | 'replaced' | 'fault', cb: (...args: any[]) => void): this;
}
