/**
 * Simulation only: the simulated meter's control registers (sim/meter/model.ts, SIM_CONTROL)
 * stand for a charger, and for the EV's side of the cable (which station it is plugged into).
 * No real device has them; `charger.kind: "sim-control"` is for tests and the EVs of the sim.
 */
import type { Meter } from '../types.js';
import type { Charger, ChargerIdentity, ChargerState, FailsafeInfo, SignedMeterValue } from './types.js';

const SIM_CONTROL = { enable: 0x7f00, powerHectoWatt: 0x7f01, plug: 0x7f02 } as const;

type Writable = Meter & { writeRegisters(address: number, values: number[]): Promise<void> };

export class SimControlCharger implements Charger {
  readonly kind = 'sim-control' as const;
  private on = false;
  private limitA?: number;
  /** The station an EV is plugged into (written before switching on). */
  plugTo?: string;

  constructor(
    private readonly meter: Meter,
    private readonly volts: number,
  ) {}

  private get writer(): Writable['writeRegisters'] {
    const w = (this.meter as Partial<Writable>).writeRegisters;
    if (!w) throw new Error('this meter driver cannot write registers (needed for charger: sim-control)');
    return w.bind(this.meter);
  }

  async open(): Promise<void> {}

  connected(): boolean {
    return true;
  }

  async identity(): Promise<ChargerIdentity> {
    return { vendor: 'p2pev', model: 'simulated meter control register' };
  }

  async state(): Promise<ChargerState> {
    return {
      status: this.on ? 'charging' : 'plugged',
      raw: this.on ? 'on' : 'off',
      enabled: this.on,
      ...(this.limitA !== undefined ? { currentLimitA: this.limitA } : {}),
      at: Date.now(),
    };
  }

  async enable(currentA: number, _sessionId: string): Promise<void> {
    const write = this.writer;
    if (this.plugTo) {
      const hex = this.plugTo.slice(2).padStart(40, '0');
      await write(
        SIM_CONTROL.plug,
        Array.from({ length: 10 }, (_, i) => Number.parseInt(hex.slice(4 * i, 4 * i + 4), 16)),
      );
    }
    await this.setCurrent(currentA);
    await write(SIM_CONTROL.enable, [1]);
    this.on = true;
  }

  async disable(): Promise<void> {
    await this.writer(SIM_CONTROL.enable, [0]);
    this.on = false;
  }

  async setCurrent(currentA: number): Promise<void> {
    this.limitA = currentA;
    await this.writer(SIM_CONTROL.powerHectoWatt, [Math.round((currentA * this.volts) / 100)]);
  }

  async keepAlive(): Promise<void> {}

  signedValues(_sessionId: string): SignedMeterValue[] {
    return [];
  }

  failsafe(): FailsafeInfo {
    return { configured: false, detail: 'simulation only' };
  }

  async close(): Promise<void> {}
}
