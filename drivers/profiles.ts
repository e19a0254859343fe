/**
 * Meter profiles as data: one table, one entry per meter model, no per-meter code. The shape
 * follows evcc's meter templates and mbmd's opcode tables: for each quantity the register kind
 * (function code 04 input / 03 holding), address, data type, word order, scale and unit.
 *
 * Sources — each profile names the vendor document its map was checked against, and the maps were
 * cross-checked with mbmd (volkszaehler/mbmd meters/rs485/*.go) and Victron's dbus-modbus-client,
 * which read the same meters in the field. Addresses are 0-based protocol addresses (the vendors'
 * 1-based "30073" is 0x0048 here).
 */
import { MeterError } from './errors.js';
import type { DataType, GenericProfile, MeterProfile, RegisterKind, RegisterSpec, Unit } from './types.js';

// Shorthands for the table below; they only build RegisterSpec objects.
const f32 = (kind: RegisterKind, address: number, unit: Unit): RegisterSpec => ({
  kind,
  address,
  type: 'float32',
  unit,
});
const reg = (
  kind: RegisterKind,
  address: number,
  type: DataType,
  scale: number,
  unit: Unit,
  wordOrder: 'high-first' | 'low-first' = 'high-first',
): RegisterSpec => ({ kind, address, type, scale, unit, wordOrder });
/** Carlo Gavazzi: INT32 with the least significant word first, as its protocol document states. */
const cg32 = (address: number, scale: number, unit: Unit) =>
  reg('input', address, 'int32', scale, unit, 'low-first');

/** Eastron's serial number: holding registers 0xFC00–0xFC01, unsigned 32-bit (4xFC01 in the manuals). */
const EASTRON_SERIAL: RegisterSpec = { kind: 'holding', address: 0xfc00, type: 'uint32', unit: 'Wh' };

const SDM630: MeterProfile = {
  name: 'sdm630',
  vendor: 'Eastron',
  model: 'SDM630-Modbus (V2, MID)',
  source:
    'Eastron "SDM630 Modbus Smart Meter Modbus Protocol Implementation" V1.5 — input registers 30001-30400 ' +
    '(float32, high word first), holding register 4xFC01 serial number',
  phases: 3,
  // 100 A direct connection, 3 × 230 V (+10 %).
  maxPowerW: 76_000,
  factoryLine: { baudRate: 9600, parity: 'none', stopBits: 1, unitId: 1 },
  quantities: {
    energy: f32('input', 0x0048, 'kWh'), // 30073 Total import kWh
    power: f32('input', 0x0034, 'W'), // 30053 Total system power
    voltage: f32('input', 0x0000, 'V'), // 30001 Phase 1 line to neutral volts
    current: f32('input', 0x0006, 'A'), // 30007 Phase 1 current
    frequency: f32('input', 0x0046, 'Hz'), // 30071 Frequency of supply voltages
  },
  extras: {
    voltageL2: f32('input', 0x0002, 'V'),
    voltageL3: f32('input', 0x0004, 'V'),
    currentL2: f32('input', 0x0008, 'A'),
    currentL3: f32('input', 0x000a, 'A'),
    exportEnergy: f32('input', 0x004a, 'kWh'), // 30075 Total export kWh
    totalEnergy: f32('input', 0x0156, 'kWh'), // 30343 Total kWh (import + export)
  },
  serial: EASTRON_SERIAL,
};

const SDM120: MeterProfile = {
  name: 'sdm120',
  vendor: 'Eastron',
  model: 'SDM120-Modbus (MID)',
  source:
    'Eastron "SDM120-Modbus Smart Meter Modbus Protocol Implementation" V2.4 — input registers 30001-30343 ' +
    '(float32, high word first), holding register 4xFC01 serial number',
  phases: 1,
  // 45 A maximum current at 230 V +10 %.
  maxPowerW: 11_500,
  factoryLine: { baudRate: 2400, parity: 'none', stopBits: 1, unitId: 1 },
  quantities: {
    energy: f32('input', 0x0048, 'kWh'), // 30073 Import active energy
    power: f32('input', 0x000c, 'W'), // 30013 Active power
    voltage: f32('input', 0x0000, 'V'), // 30001 Voltage
    current: f32('input', 0x0006, 'A'), // 30007 Current
    frequency: f32('input', 0x0046, 'Hz'), // 30071 Frequency
  },
  extras: {
    exportEnergy: f32('input', 0x004a, 'kWh'), // 30075 Export active energy
    totalEnergy: f32('input', 0x0156, 'kWh'), // 30343 Total active energy
  },
  serial: EASTRON_SERIAL,
};

const SDM72D: MeterProfile = {
  name: 'sdm72d',
  vendor: 'Eastron',
  model: 'SDM72D-M (first version)',
  source:
    'Eastron "SDM72D-M Three Phase Four Wire DIN Rail Energy Meter — User Manual", Modbus protocol section ' +
    '(V1.1): only 30053 total power, 30073 import, 30075 export, 30343 total kWh; no voltage, current or ' +
    'frequency registers (mbmd SDM72 has the same four)',
  phases: 3,
  maxPowerW: 76_000,
  factoryLine: { baudRate: 9600, parity: 'none', stopBits: 1, unitId: 1 },
  quantities: {
    energy: f32('input', 0x0048, 'kWh'), // 30073 Import Wh since last reset, in kWh
    power: f32('input', 0x0034, 'W'), // 30053 Total system power
  },
  extras: {
    exportEnergy: f32('input', 0x004a, 'kWh'),
    totalEnergy: f32('input', 0x0156, 'kWh'),
  },
  serial: EASTRON_SERIAL,
};

const SDM72D_V2: MeterProfile = {
  ...SDM630,
  name: 'sdm72d-v2',
  model: 'SDM72D-M-2 (V2, MID)',
  source:
    'Eastron "SDM72D-M-2 Modbus Protocol" (SDM72DM-V2, 2019) — the SDM630 input map 30001-30343 ' +
    '(float32, high word first): voltages, currents, 30053 power, 30071 frequency, 30073 import; 4xFC01 serial',
};

/** ABB's B-series map is shared by B21 (1-phase), B23 (3-phase direct, 65 A) and B24 (3-phase CT). */
const ABB_QUANTITIES: MeterProfile['quantities'] = {
  energy: reg('holding', 0x5000, 'uint64', 0.01, 'kWh'), // Active import energy total, 0.01 kWh
  power: reg('holding', 0x5b14, 'int32', 0.01, 'W'), // Active power total, 0.01 W
  voltage: reg('holding', 0x5b00, 'uint32', 0.1, 'V'), // Voltage L1-N, 0.1 V
  current: reg('holding', 0x5b0c, 'uint32', 0.01, 'A'), // Current L1, 0.01 A
  frequency: reg('holding', 0x5b2c, 'uint16', 0.01, 'Hz'), // Frequency, 0.01 Hz
};
const ABB_EXTRAS: Record<string, RegisterSpec> = {
  voltageL2: reg('holding', 0x5b02, 'uint32', 0.1, 'V'),
  voltageL3: reg('holding', 0x5b04, 'uint32', 0.1, 'V'),
  currentL2: reg('holding', 0x5b0e, 'uint32', 0.01, 'A'),
  currentL3: reg('holding', 0x5b10, 'uint32', 0.01, 'A'),
  exportEnergy: reg('holding', 0x5004, 'uint64', 0.01, 'kWh'),
};
const ABB_SOURCE =
  'ABB "B21, B23, B24 User Manual" 2CMC485003M0201 (Rev. B), chapter "Communication with Modbus" — holding ' +
  'registers 0x5000 active import energy (u64, 0.01 kWh), 0x5B00.. instantaneous values, 0x8900 serial number (u32)';

const ABB_B23: MeterProfile = {
  name: 'abb-b23',
  vendor: 'ABB',
  model: 'B23 (3-phase, direct connected 65 A)',
  source: ABB_SOURCE,
  phases: 3,
  maxPowerW: 50_000,
  factoryLine: { baudRate: 19200, parity: 'even', stopBits: 1, unitId: 1 },
  quantities: ABB_QUANTITIES,
  extras: ABB_EXTRAS,
  serial: { kind: 'holding', address: 0x8900, type: 'uint32', unit: 'Wh' },
};

const ABB_B24: MeterProfile = {
  ...ABB_B23,
  name: 'abb-b24',
  model: 'B24 (3-phase, CT connected; registers hold primary values)',
  // CT-connected: the bound follows the CT ratio; 1 MW covers any home or depot feeder.
  maxPowerW: 1_000_000,
};

const CG_SOURCE =
  'Carlo Gavazzi "EM330, EM340, ET330, ET340 Communication protocol" (Modbus RTU, version 1 revision 3) — ' +
  'INT32 with the least significant word at the lower address; 0x0034 kWh (+) TOT ×10; 0x5000 serial (7 registers ASCII)';

const EM340: MeterProfile = {
  name: 'em340',
  vendor: 'Carlo Gavazzi',
  model: 'EM340 (3-phase, direct connected 65 A)',
  source: CG_SOURCE,
  phases: 3,
  maxPowerW: 50_000,
  sharedMap: true,
  factoryLine: { baudRate: 9600, parity: 'none', stopBits: 1, unitId: 1 },
  quantities: {
    energy: cg32(0x0034, 0.1, 'kWh'), // kWh (+) TOT, value weight kWh × 10
    power: cg32(0x0028, 0.1, 'W'), // W sys, W × 10
    voltage: cg32(0x0000, 0.1, 'V'), // V L1-N, V × 10
    current: cg32(0x000c, 0.001, 'A'), // A L1, A × 1000
    frequency: reg('input', 0x0033, 'int16', 0.1, 'Hz'), // Hz × 10
  },
  extras: {
    voltageL2: cg32(0x0002, 0.1, 'V'),
    voltageL3: cg32(0x0004, 0.1, 'V'),
    currentL2: cg32(0x000e, 0.001, 'A'),
    currentL3: cg32(0x0010, 0.001, 'A'),
  },
  serial: { kind: 'holding', address: 0x5000, type: 'ascii', words: 7, unit: 'Wh' },
};

const ET340: MeterProfile = {
  ...EM340,
  name: 'et340',
  model: 'ET340 (3-phase, bidirectional)',
  extras: { ...EM340.extras, exportEnergy: cg32(0x004e, 0.1, 'kWh') }, // kWh (-) TOT
};

/**
 * Wallboxes with a built-in meter, read as a meter: the same device and unit id as the charger
 * (drivers/chargers/profiles.ts, where the sources are), so meter and charger share one line.
 * Whether the built-in meter may bill (calibration law, MID) is the station owner's to check.
 */
const HEIDELBERG_EC_METER: MeterProfile = {
  name: 'heidelberg-ec',
  vendor: 'Heidelberger Druckmaschinen',
  model: 'Wallbox Energy Control, built-in meter',
  source:
    'Heidelberg "Wallbox Energy Control – Modbus Register Table" (20210222): input 17-18 energy since ' +
    'installation (u32, high word first, Wh), 14 power, 10 voltage L1, 6 current L1 ×0.1 A; evcc charger/heidelberg-ec.go',
  phases: 3,
  maxPowerW: 11_500,
  factoryLine: { baudRate: 19200, parity: 'even', stopBits: 1, unitId: 1 },
  quantities: {
    energy: reg('input', 17, 'uint32', 1, 'Wh'),
    power: reg('input', 14, 'uint16', 1, 'W'),
    voltage: reg('input', 10, 'uint16', 1, 'V'),
    current: reg('input', 6, 'uint16', 0.1, 'A'),
  },
};

const PHOENIX_EV_ETH_METER: MeterProfile = {
  name: 'phoenix-ev-eth',
  vendor: 'Phoenix Contact',
  model: 'EV Charge Control EV-CC-AC1-M3-…-ETH, connected meter',
  source:
    'Phoenix Contact EV-CC-AC1-M3 Modbus TCP register table: holding 904 energy (u32, low word first, Wh), ' +
    'input 120 power (s32, low word first, W); evcc charger/phoenix-ev-eth.go',
  phases: 3,
  maxPowerW: 44_000,
  factoryLine: { baudRate: 9600, parity: 'none', stopBits: 1, unitId: 255 },
  quantities: {
    energy: reg('holding', 904, 'uint32', 1, 'Wh', 'low-first'),
    power: reg('input', 120, 'int32', 1, 'W', 'low-first'),
  },
};

const WALLBE_METER: MeterProfile = {
  ...PHOENIX_EV_ETH_METER,
  name: 'wallbe',
  vendor: 'Wallbe',
  model: 'Wallbe Eco / Pro (Phoenix EV-ETH, Wallbe firmware), connected meter',
  source: 'evcc charger/phoenix-ev-eth.go: Wallbe firmware energy at holding 2980 (u64, low word first, Wh)',
  quantities: {
    ...PHOENIX_EV_ETH_METER.quantities,
    energy: reg('holding', 2980, 'uint64', 1, 'Wh', 'low-first'),
  },
};

/** Every built-in profile, by name. */
export const PROFILES: Readonly<Record<string, MeterProfile>> = Object.freeze(
  Object.fromEntries(
    [
      SDM630,
      SDM120,
      SDM72D,
      SDM72D_V2,
      ABB_B23,
      ABB_B24,
      EM340,
      ET340,
      HEIDELBERG_EC_METER,
      PHOENIX_EV_ETH_METER,
      WALLBE_METER,
    ].map((p) => [p.name, p]),
  ),
);

/** Names accepted in `profile`, for messages. */
export const PROFILE_NAMES = [...Object.keys(PROFILES), 'generic'];

const REGISTER_KINDS = new Set(['input', 'holding']);
const DATA_TYPES = new Set([
  'int16',
  'uint16',
  'int32',
  'uint32',
  'int64',
  'uint64',
  'float32',
  'float64',
  'ascii',
]);
const UNITS = new Set(['Wh', 'kWh', 'MWh', 'W', 'kW', 'V', 'A', 'mA', 'Hz']);

function checkRegister(where: string, r: unknown): RegisterSpec {
  const fail = (what: string): never => {
    throw new MeterError('config', `generic profile: ${where} ${what}`, 'fix "generic" in agent.config.json');
  };
  if (typeof r !== 'object' || r === null) return fail('is missing or not an object');
  const s = r as RegisterSpec;
  if (!REGISTER_KINDS.has(s.kind)) fail(`kind must be "input" or "holding", not ${JSON.stringify(s.kind)}`);
  if (!Number.isInteger(s.address) || s.address < 0 || s.address > 0xffff) fail('address must be 0..65535');
  if (!DATA_TYPES.has(s.type)) fail(`type must be one of ${[...DATA_TYPES].join(', ')}`);
  if (!UNITS.has(s.unit)) fail(`unit must be one of ${[...UNITS].join(', ')}`);
  if (s.wordOrder !== undefined && s.wordOrder !== 'high-first' && s.wordOrder !== 'low-first') {
    fail('wordOrder must be "high-first" or "low-first"');
  }
  if (s.scale !== undefined && !(Number.isFinite(s.scale) && s.scale !== 0))
    fail('scale must be a non-zero number');
  return s;
}

/** The profile a config asks for; a generic one is checked field by field. */
export function resolveProfile(name: string, generic?: GenericProfile): MeterProfile {
  if (name !== 'generic') {
    const p = PROFILES[name];
    if (!p) {
      throw new MeterError(
        'config',
        `unknown meter profile "${name}"`,
        `use one of ${PROFILE_NAMES.join(', ')}`,
      );
    }
    return p;
  }
  if (!generic?.quantities) {
    throw new MeterError(
      'config',
      'profile "generic" needs a "generic" register description',
      'see docs/METERS.md',
    );
  }
  const energy = checkRegister('quantities.energy', generic.quantities.energy);
  if (!['Wh', 'kWh', 'MWh'].includes(energy.unit)) {
    throw new MeterError(
      'config',
      'generic profile: the energy register must be in Wh, kWh or MWh',
      'fix its unit',
    );
  }
  for (const [k, v] of Object.entries(generic.quantities)) checkRegister(`quantities.${k}`, v);
  for (const [k, v] of Object.entries(generic.extras ?? {})) checkRegister(`extras.${k}`, v);
  if (generic.serial) checkRegister('serial', generic.serial);
  return {
    ...generic,
    name: generic.name ?? 'generic',
    vendor: 'user-described',
    model: generic.description ?? 'generic Modbus meter',
    source: 'agent.config.json',
    phases: 3,
    maxPowerW: generic.maxPowerW ?? 100_000,
    factoryLine: { baudRate: 9600, parity: 'none', stopBits: 1, unitId: 1 },
  };
}
