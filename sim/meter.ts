/**
 * The simulated meter: a real Modbus device (TCP, or RTU on a serial port / pty) serving one of the
 * driver profiles, with an energy counter fed by a charging curve, optional wire-time emulation of
 * a baud rate, and fault injection. See docs/METERS.md.
 */
import type { RequestFault, SimFault } from './meter/faults.js';
import { REQUEST_FAULT_KINDS } from './meter/faults.js';
import { SimMeterModel, type StartChargingOptions } from './meter/model.js';
import { type SimEndpoint, startSerialEndpoint, startTcpEndpoint } from './meter/servers.js';

export { CHARGING_PRESETS_KW } from './meter/curve.js';
export type { SimFault } from './meter/faults.js';
export { SIM_CONTROL } from './meter/model.js';

export interface SimMeterOptions {
  profile: string;
  unitId?: number;
  /** Serve Modbus TCP (or RTU framing over TCP, see `framing`) on host:port; port 0 = a free one. */
  tcp?: { host?: string; port?: number; framing?: 'tcp' | 'rtu'; maxClients?: number };
  /** Serve Modbus RTU on a serial device: the slave end of a pty pair (sim/pty.ts). */
  rtu?: { path: string; baudRate?: number; parity?: 'none' | 'even' | 'odd'; stopBits?: 1 | 2 };
  /** Hold each answer back for the wire time of a line at this baud rate (RTU framings only). */
  emulateBaud?: number;
  /** Serial number; digits for meters with a numeric serial register. */
  serial?: string;
  initialWh?: number;
  /** The power a charge runs at once switched on (kW; default 11). */
  chargeKw?: number;
  /** Simulated seconds per real second of every charge (default 1). */
  timeScale?: number;
}

export interface SimMeter {
  /** The TCP port, when serving TCP. */
  readonly port?: number;
  readonly unitId: number;
  readonly serial: string;
  /** The counter, Wh (fractional: the register shows it at the profile's resolution). */
  energyWh: number;
  readonly powerW: number;
  readonly charging: boolean;
  /** The model behind the registers (the world links an EV's meter to its station's through it). */
  readonly model: SimMeterModel;
  /** kw: a preset (3.7, 7.4, 11, 22) or any power. */
  startCharging(kw: number, opts?: StartChargingOptions): void;
  stopCharging(): void;
  inject(fault: SimFault): void;
  /** Ends every fault (and a disappearance). */
  clear(): void;
  close(): Promise<void>;
}

export interface SimBusOptions {
  tcp?: SimMeterOptions['tcp'];
  rtu?: SimMeterOptions['rtu'];
  emulateBaud?: number;
  meters: Omit<SimMeterOptions, 'tcp' | 'rtu' | 'emulateBaud'>[];
}

export interface SimBus {
  readonly port?: number;
  readonly meters: SimMeter[];
  /** The whole endpoint goes away (TCP: connections closed and refused) for `forMs`, or until reappear(). */
  disappear(forMs?: number): void;
  reappear(): void;
  close(): Promise<void>;
}

function facade(
  model: SimMeterModel,
  endpoint: SimEndpoint,
  soleUnit: boolean,
  close: () => Promise<void>,
): SimMeter {
  return {
    get port() {
      return endpoint.port;
    },
    unitId: model.unitId,
    get serial() {
      return model.serial;
    },
    get energyWh() {
      return model.energyWh;
    },
    set energyWh(wh: number) {
      model.energyWh = wh;
    },
    get powerW() {
      return model.powerW;
    },
    get charging() {
      return model.charging;
    },
    get model() {
      return model;
    },
    startCharging: (kw, opts) => model.startCharging(kw, opts),
    stopCharging: () => model.stopCharging(),
    inject(fault: SimFault) {
      if (REQUEST_FAULT_KINDS.has(fault.kind)) model.faults.add(fault as RequestFault);
      else if (fault.kind === 'reset') model.reset();
      else if (fault.kind === 'replace') model.replace(fault.serial, fault.initialWh);
      else if (fault.kind === 'jump') model.energyWh += fault.wh;
      else if (fault.kind === 'disappear') {
        model.absentUntil = performance.now() + (fault.forMs ?? Number.POSITIVE_INFINITY);
        // A device alone on its endpoint takes the endpoint with it (TCP: connections refused).
        if (soleUnit) endpoint.disappear(fault.forMs);
      }
    },
    clear() {
      model.faults.clear();
      model.absentUntil = 0;
      if (soleUnit) endpoint.reappear();
    },
    close,
  };
}

/** Several simulated meters (distinct unit ids) on one endpoint: an RS-485 bus or a gateway. */
export async function startSimBus(opts: SimBusOptions): Promise<SimBus> {
  if (!opts.tcp === !opts.rtu) throw new Error('startSimBus: give exactly one of tcp or rtu');
  const units = new Map<number, SimMeterModel>();
  for (const m of opts.meters) {
    const model = new SimMeterModel(m);
    if (units.has(model.unitId)) throw new Error(`startSimBus: unit id ${model.unitId} used twice`);
    units.set(model.unitId, model);
  }
  const endpoint = opts.tcp
    ? await startTcpEndpoint(units, {
        ...opts.tcp,
        ...(opts.emulateBaud ? { timing: { baud: opts.emulateBaud } } : {}),
      })
    : await startSerialEndpoint(units, {
        path: opts.rtu!.path,
        ...(opts.rtu!.baudRate ? { baudRate: opts.rtu!.baudRate } : {}),
        ...(opts.emulateBaud
          ? {
              timing: {
                baud: opts.emulateBaud,
                ...(opts.rtu!.parity ? { parity: opts.rtu!.parity } : {}),
                ...(opts.rtu!.stopBits ? { stopBits: opts.rtu!.stopBits } : {}),
              },
            }
          : {}),
      });
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= endpoint.close();
    return closing;
  };
  const meters = [...units.values()].map((m) => facade(m, endpoint, units.size === 1, close));
  return {
    get port() {
      return endpoint.port;
    },
    meters,
    disappear: (forMs) => endpoint.disappear(forMs),
    reappear: () => endpoint.reappear(),
    close,
  };
}

export async function startSimMeter(opts: SimMeterOptions): Promise<SimMeter> {
  const { tcp, rtu, emulateBaud, ...meter } = opts;
  const bus = await startSimBus({
    ...(tcp ? { tcp } : {}),
    ...(rtu ? { rtu } : {}),
    ...(emulateBaud ? { emulateBaud } : {}),
    meters: [meter],
  });
  return bus.meters[0]!;
}
