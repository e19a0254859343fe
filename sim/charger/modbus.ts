/**
 * A simulated Modbus wallbox serving any charger profile (drivers/chargers/profiles.ts) over
 * Modbus TCP or RTU, on the simulated meter's servers: its status register follows the plug and
 * the switch, its current setpoint and enable coil are writable, its watchdog falls back to the
 * failsafe current after the configured silence, and its energy register reads the station's
 * simulated meter. The world (sim/world.ts) lets current flow — the meter's power — only while
 * it offers current and an EV is plugged in.
 */
import {
  type ChargerProfile,
  type ChargerRegister,
  resolveChargerProfile,
  statusRaw,
} from '../../drivers/chargers/profiles.js';
import type { ChargerStatus } from '../../drivers/chargers/types.js';
import { encodeRaw, encodeText, wordCount } from '../../drivers/registers.js';
import { FaultPlan } from '../meter/faults.js';
import type { SimMeterModel } from '../meter/model.js';
import type { ModbusUnit } from '../meter/pdu.js';
import { type SimEndpoint, startSerialEndpoint, startTcpEndpoint } from '../meter/servers.js';
import type { SimOutlet } from './outlet.js';

const VOLTS = 230;

export interface SimWallboxOptions {
  profile: string;
  unitId?: number;
  phases?: 1 | 3;
  /** The station's meter: the wallbox's energy register reads it. */
  meter?: SimMeterModel;
  firmware?: string;
}

export class SimWallboxModel implements ModbusUnit, SimOutlet {
  readonly profile: ChargerProfile;
  readonly unitId: number;
  readonly faults = new FaultPlan();
  absentUntil = 0;
  evPlugged = false;
  /** Injected: the wallbox reports an error state and offers nothing. */
  faulted = false;
  private coil = false;
  private currentRaw = 0;
  private watchdogRaw = 0;
  private failsafeRaw = 0;
  private lastContact = performance.now();
  private readonly holding = new Map<number, number>();
  private readonly phases: 1 | 3;

  constructor(private readonly opts: SimWallboxOptions) {
    this.profile = resolveChargerProfile(opts.profile);
    this.unitId = opts.unitId ?? this.profile.defaultUnitId;
    this.phases = opts.phases ?? 3;
  }

  /** The watchdog tripped: no Modbus request for longer than its timeout. */
  get tripped(): boolean {
    const fs = this.profile.failsafe;
    if (!fs || this.watchdogRaw === 0) return false;
    return performance.now() - this.lastContact > this.watchdogRaw * fs.timeout.unitMs;
  }

  get currentA(): number {
    const fs = this.profile.failsafe;
    if (fs && this.tripped) return this.failsafeRaw * fs.current.unitA;
    return this.currentRaw * this.profile.current.unitA;
  }

  get enabled(): boolean {
    return this.profile.enable.kind === 'coil' ? this.coil : this.currentRaw > 0;
  }

  get offeringKw(): number {
    if (this.faulted || !this.enabled || this.currentA < this.profile.current.minA) return 0;
    return (this.currentA * VOLTS * this.phases) / 1000;
  }

  get status(): ChargerStatus {
    if (this.faulted) return 'fault';
    if (!this.evPlugged) return 'unplugged';
    return this.offeringKw > 0 ? 'charging' : 'plugged';
  }

  /** The vendor's state key for the current status (two keys per status: by permission). */
  private statusKey(): string {
    const status = this.status;
    const keys = Object.entries(this.profile.status.states).filter(([, s]) => s.status === status);
    if (keys.length > 1) {
      const permitted = this.enabled;
      const pick = keys.find(([, s]) => s.label.includes('not permitted') === !permitted);
      if (pick) return pick[0];
    }
    return keys[0]![0];
  }

  private encode(r: ChargerRegister, value: number | string): number[] {
    if (r.type === 'ascii') {
      const words = encodeText(String(value), wordCount(r));
      return r.lowByteFirst ? words.map((w) => ((w & 0xff) << 8) | (w >> 8)) : words;
    }
    return encodeRaw(Math.floor(Number(value) / (r.scale ?? 1)), r);
  }

  readRegisters(kind: 'input' | 'holding', address: number, count: number): number[] | undefined {
    this.lastContact = performance.now();
    const image = new Map<number, number>();
    const put = (k: 'input' | 'holding', at: number, words: number[]) => {
      if (k !== kind) return;
      words.forEach((w, i) => {
        image.set(at + i, w & 0xffff);
      });
    };
    const p = this.profile;
    put(p.status.register.kind, p.status.register.address, [statusRaw(p, this.statusKey())]);
    put('holding', p.current.address, [this.currentRaw]);
    if (p.energy) put(p.energy.kind, p.energy.address, this.encode(p.energy, this.opts.meter?.energyWh ?? 0));
    if (p.power) put(p.power.kind, p.power.address, this.encode(p.power, this.opts.meter?.powerW ?? 0));
    if (p.firmware)
      put(p.firmware.kind, p.firmware.address, this.encode(p.firmware, this.opts.firmware ?? '1.0'));
    if (p.failsafe) {
      put('holding', p.failsafe.timeout.address, [this.watchdogRaw]);
      put('holding', p.failsafe.current.address, [this.failsafeRaw]);
    }
    for (const [a, v] of this.holding) put('holding', a, [v]);
    const words: number[] = [];
    for (let a = address; a < address + count; a++) {
      const w = image.get(a);
      if (w === undefined) return undefined;
      words.push(w);
    }
    return words;
  }

  readCoil(address: number): boolean | undefined {
    this.lastContact = performance.now();
    const e = this.profile.enable;
    return e.kind === 'coil' && e.address === address ? this.coil : undefined;
  }

  writeRegister(address: number, value: number): boolean {
    this.lastContact = performance.now();
    const p = this.profile;
    const e = p.enable;
    if (e.kind === 'coil' && e.address === address) {
      this.coil = value !== 0;
      return true;
    }
    if (address === p.current.address) {
      this.currentRaw = value;
      return true;
    }
    if (p.failsafe && address === p.failsafe.timeout.address) {
      this.watchdogRaw = value;
      return true;
    }
    if (p.failsafe && address === p.failsafe.current.address) {
      this.failsafeRaw = value;
      return true;
    }
    if (p.setup?.some((s) => s.address === address)) {
      this.holding.set(address, value);
      return true;
    }
    return false;
  }
}

export interface SimWallbox {
  readonly model: SimWallboxModel;
  readonly port?: number;
  /** Off the bus (TCP: connections refused; RTU: silent) until reappear(). */
  disappear(forMs?: number): void;
  reappear(): void;
  close(): Promise<void>;
}

export async function startSimWallbox(
  opts: SimWallboxOptions & {
    tcp?: { host?: string; port?: number };
    rtu?: { path: string; baudRate?: number };
  },
): Promise<SimWallbox> {
  const model = new SimWallboxModel(opts);
  const units = new Map([[model.unitId, model]]);
  let endpoint: SimEndpoint;
  if (opts.rtu) {
    endpoint = await startSerialEndpoint(units, {
      path: opts.rtu.path,
      ...(opts.rtu.baudRate ? { baudRate: opts.rtu.baudRate } : {}),
    });
  } else {
    endpoint = await startTcpEndpoint(units, {
      host: opts.tcp?.host ?? '127.0.0.1',
      port: opts.tcp?.port ?? 0,
    });
  }
  return {
    model,
    get port() {
      return endpoint.port;
    },
    disappear: (forMs) => endpoint.disappear(forMs),
    reappear: () => endpoint.reappear(),
    close: () => endpoint.close(),
  };
}
