/**
 * Modbus wallbox profiles as data, like the meter profiles (drivers/profiles.ts): for each model
 * the registers (kind, 0-based address, type, word order, scale), the state coding and its map to
 * the normalised status, how it is switched, and its watchdog (failsafe) registers. One schema,
 * no per-model code: drivers/chargers/modbus.ts reads any profile, sim/charger/modbus.ts serves
 * any profile.
 *
 * Sources — each profile names the vendor's register table and evcc's implementation, which
 * drives these wallboxes in the field (github.com/evcc-io/evcc, charger/heidelberg-ec.go,
 * charger/phoenix-ev-eth.go); the maps here were checked against both.
 */
import type { DataType, Parity, WordOrder } from '../types.js';
import { ChargerError, type ChargerStatus } from './types.js';

export interface ChargerRegister {
  kind: 'input' | 'holding';
  address: number;
  type: DataType;
  wordOrder?: WordOrder;
  /** value = raw × scale (in the unit the field names: Wh, W, A). */
  scale?: number;
  /** Register count for `ascii`. */
  words?: number;
  /** Phoenix stores text with the low byte of each register first. */
  lowByteFirst?: boolean;
}

export interface ChargerProfile {
  name: string;
  vendor: string;
  model: string;
  /** The vendor document and the evcc driver the map was checked against. */
  source: string;
  /** The transport the wallbox speaks (Heidelberg: RS-485 RTU; Phoenix: Modbus TCP). */
  transport: 'rtu' | 'tcp';
  defaultUnitId: number;
  factoryLine?: { baudRate: number; parity: Parity; stopBits: 1 | 2 };
  status: {
    register: { kind: 'input' | 'holding'; address: number };
    /** uint16: a number; ascii-low-byte: one ASCII letter in the register's low byte ("A".."F"). */
    coding: 'uint16' | 'ascii-low-byte';
    /** Raw value (as text) → normalised status and the vendor's name for it. */
    states: Record<string, { status: ChargerStatus; label: string }>;
  };
  /** The current setpoint: holding register, A per count, the range the wallbox accepts. */
  current: { address: number; unitA: number; minA: number; maxA: number };
  /** coil: a coil switches charging; current: writing 0 A stops, a current ≥ minA permits. */
  enable: { kind: 'coil'; address: number } | { kind: 'current' };
  /** Energy register, Wh, where the wallbox has a meter. */
  energy?: ChargerRegister;
  power?: ChargerRegister;
  firmware?: ChargerRegister;
  serial?: ChargerRegister;
  /**
   * Watchdog: after `timeout` ms (or s) without Modbus traffic the wallbox falls back to the
   * failsafe current; the agent writes 0 A there, so a dead agent means no current.
   */
  failsafe?: {
    timeout: { address: number; unitMs: number };
    current: { address: number; unitA: number };
  };
  /** Holding registers written once at open, with the reason. */
  setup?: { address: number; value: number; why: string }[];
}

const HEIDELBERG_EC: ChargerProfile = {
  name: 'heidelberg-ec',
  vendor: 'Heidelberger Druckmaschinen',
  model: 'Wallbox Energy Control (Modbus RTU)',
  source:
    'Heidelberg "Wallbox Energy Control – Modbus Register Table" (EC_ModBus_register_table_20210222, layout ' +
    'V1.0.8); evcc charger/heidelberg-ec.go (input 5 state, 6-8 currents, 14 power, 17-18 energy; holding ' +
    '257 watchdog ms, 258 standby, 259 remote lock, 261 max current ×0.1 A, 262 failsafe current)',
  transport: 'rtu',
  defaultUnitId: 1,
  factoryLine: { baudRate: 19200, parity: 'even', stopBits: 1 },
  status: {
    register: { kind: 'input', address: 5 },
    coding: 'uint16',
    states: {
      '2': { status: 'unplugged', label: 'A1 (no vehicle, charging not permitted)' },
      '3': { status: 'unplugged', label: 'A2 (no vehicle, charging permitted)' },
      '4': { status: 'plugged', label: 'B1 (vehicle connected, charging not permitted)' },
      '5': { status: 'plugged', label: 'B2 (vehicle connected, charging permitted)' },
      '6': { status: 'plugged', label: 'C1 (vehicle requests charge, not permitted)' },
      '7': { status: 'charging', label: 'C2 (charging)' },
      '8': { status: 'charging', label: 'derating (charging, reduced current)' },
      '9': { status: 'fault', label: 'E (error)' },
      '10': { status: 'fault', label: 'F (wallbox locked or not available)' },
      '11': { status: 'fault', label: 'error' },
    },
  },
  current: { address: 261, unitA: 0.1, minA: 6, maxA: 16 },
  enable: { kind: 'current' },
  // "Energy since installation", high word first, in Wh (evcc divides by 1000 for kWh).
  energy: { kind: 'input', address: 17, type: 'uint32', scale: 1 },
  power: { kind: 'input', address: 14, type: 'uint16', scale: 1 },
  // Input 203: application software revision.
  firmware: { kind: 'input', address: 203, type: 'uint16' },
  failsafe: {
    timeout: { address: 257, unitMs: 1 },
    current: { address: 262, unitA: 0.1 },
  },
  setup: [
    {
      address: 258,
      value: 4,
      why: 'standby off: a sleeping wallbox stops answering Modbus (evcc does the same)',
    },
    { address: 259, value: 1, why: 'remote lock released (1 = unlocked), or the wallbox stays in state F' },
  ],
};

const PHOENIX_STATES: ChargerProfile['status']['states'] = {
  A: { status: 'unplugged', label: 'A (no vehicle)' },
  B: { status: 'plugged', label: 'B (vehicle connected)' },
  C: { status: 'charging', label: 'C (charging)' },
  D: { status: 'charging', label: 'D (charging, ventilation)' },
  E: { status: 'fault', label: 'E (no power, short circuit)' },
  F: { status: 'fault', label: 'F (charge controller not available)' },
};

const PHOENIX_SOURCE =
  'Phoenix Contact "EV Charge Control Advanced / EV-CC-AC1-M3-…-ETH" Modbus TCP register table (UM EN ' +
  'EV-CC-AC1-M3…, input 100 state, 105 firmware, 120 power, coil 400 enable, holding 528 current, 904 energy); ' +
  'evcc charger/phoenix-ev-eth.go';

const PHOENIX_EV_ETH: ChargerProfile = {
  name: 'phoenix-ev-eth',
  vendor: 'Phoenix Contact',
  model: 'EV Charge Control EV-CC-AC1-M3-…-ETH (OEM firmware)',
  source: PHOENIX_SOURCE,
  transport: 'tcp',
  defaultUnitId: 255,
  status: { register: { kind: 'input', address: 100 }, coding: 'ascii-low-byte', states: PHOENIX_STATES },
  current: { address: 528, unitA: 1, minA: 6, maxA: 32 },
  enable: { kind: 'coil', address: 400 },
  energy: { kind: 'holding', address: 904, type: 'uint32', wordOrder: 'low-first', scale: 1 },
  power: { kind: 'input', address: 120, type: 'int32', wordOrder: 'low-first', scale: 1 },
  firmware: { kind: 'input', address: 105, type: 'ascii', words: 2, lowByteFirst: true },
  // No watchdog register in the EV-ETH table: the agent's start-up check is the failsafe.
};

const WALLBE: ChargerProfile = {
  ...PHOENIX_EV_ETH,
  name: 'wallbe',
  vendor: 'Wallbe',
  model: 'Wallbe Eco / Pro (Phoenix EV-ETH controller, Wallbe firmware)',
  source: `${PHOENIX_SOURCE}; Wallbe firmware: 0.1 A current steps (holding 528 ≥ 60), energy holding 2980 (u64, low word first, Wh), firmware input 149`,
  current: { address: 528, unitA: 0.1, minA: 6, maxA: 32 },
  energy: { kind: 'holding', address: 2980, type: 'uint64', wordOrder: 'low-first', scale: 1 },
  firmware: { kind: 'input', address: 149, type: 'ascii', words: 6, lowByteFirst: true },
};

export const CHARGER_PROFILES: Readonly<Record<string, ChargerProfile>> = Object.freeze(
  Object.fromEntries([HEIDELBERG_EC, PHOENIX_EV_ETH, WALLBE].map((p) => [p.name, p])),
);

export const CHARGER_PROFILE_NAMES = Object.keys(CHARGER_PROFILES);

export function resolveChargerProfile(name: string): ChargerProfile {
  const p = CHARGER_PROFILES[name];
  if (!p)
    throw new ChargerError(
      'config',
      `unknown charger profile "${name}"`,
      `use one of ${CHARGER_PROFILE_NAMES.join(', ')} (docs/CHARGERS.md), or an OCPP 1.6J wallbox`,
    );
  return p;
}

/** The status register's raw value as the key of `states`. */
export function statusKey(profile: ChargerProfile, raw: number): string {
  return profile.status.coding === 'ascii-low-byte' ? String.fromCharCode(raw & 0xff) : String(raw);
}

/** The raw register value for a key (the simulated wallbox's side). */
export function statusRaw(profile: ChargerProfile, key: string): number {
  return profile.status.coding === 'ascii-low-byte' ? key.charCodeAt(0) : Number(key);
}
