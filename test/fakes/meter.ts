/** A meter driver in memory: scripted register values, the driver's discontinuity events, written registers. */
import { EventEmitter } from 'node:events';
import type { BusStats, Discontinuity, Meter, MeterConfig, MeterReading } from '../../drivers/index.js';

export class FakeMeter extends EventEmitter implements Meter {
  readonly config = {
    profile: 'sdm630',
    unitId: 1,
    transport: { kind: 'tcp', host: 'fake', port: 502 },
  } as MeterConfig;
  /** What the register reads now. */
  wh = 0;
  epoch = 0;
  failing = false;
  readonly writes: { address: number; values: number[] }[] = [];

  async open(): Promise<void> {}
  async close(): Promise<void> {}
  async identity() {
    return { serial: 'FAKE-1', profile: 'sdm630', unitId: 1 };
  }
  async readEnergyWh(): Promise<number> {
    if (this.failing) throw Object.assign(new Error('fake meter silent'), { kind: 'timeout' });
    return this.wh;
  }
  async read(): Promise<MeterReading> {
    return { energyWh: await this.readEnergyWh(), at: Date.now(), epoch: this.epoch };
  }
  stats(): BusStats {
    throw new Error('not in the fake');
  }
  async writeRegisters(address: number, values: number[]): Promise<void> {
    this.writes.push({ address, values });
  }
  /** The register starts over (a reset, or another meter): the driver announces it before the reading. */
  discontinue(kind: 'reset' | 'replaced', currentWh: number): void {
    this.epoch++;
    const d: Discontinuity = {
      kind,
      previousWh: this.wh,
      currentWh,
      reason: 'test',
      at: Date.now(),
      epoch: this.epoch,
    };
    this.wh = currentWh;
    this.emit(kind, d);
  }
}
