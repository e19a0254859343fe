/**
 * The agent's view of its meter: the billing register read through the driver (with latency and
 * error metrics), the meter's identity for the reports, and the charger switch. On a real charge
 * point the switch belongs to the wallbox; with `charger: "sim-control"` it is the simulated
 * meter's control register (sim/meter, SIM_CONTROL), for development and the sim.
 */
import { type Meter, ModbusMeter, openMeter } from '../../drivers/index.js';
import type { AgentConfig } from './config.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

/** The simulated meter's sim-only holding registers (see sim/meter/model.ts). */
const SIM_CONTROL = { enable: 0x7f00, powerHectoWatt: 0x7f01, plug: 0x7f02 } as const;

export class Metering {
  serial = 'unknown';
  lastWh: number | undefined;
  lastReadAt = 0;
  consecutiveErrors = 0;

  private constructor(
    readonly meter: Meter,
    private readonly cfg: NonNullable<AgentConfig['meter']>,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  static async open(
    cfg: NonNullable<AgentConfig['meter']>,
    metrics: Metrics,
    log: Logger,
  ): Promise<Metering> {
    const { pollMs: _p, charger: _c, ...driverConfig } = cfg;
    const m = new Metering(await openMeter(driverConfig), cfg, metrics, log);
    m.meter.on('reset', (d) => log.warn({ d }, 'meter energy register went backwards (reset)'));
    m.meter.on('replaced', (d) => log.warn({ d }, 'meter replaced (new serial)'));
    try {
      m.serial = (await m.meter.identity()).serial ?? 'unknown';
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'meter identity not readable yet');
    }
    return m;
  }

  get profile(): string {
    return this.cfg.profile;
  }

  /** The billing register in whole Wh; throws the driver's MeterError (which says what to check). */
  async energyWh(): Promise<number> {
    const end = this.metrics.meterReadSeconds.startTimer();
    try {
      const wh = Math.floor(await this.meter.readEnergyWh());
      this.lastWh = wh;
      this.lastReadAt = Date.now();
      this.consecutiveErrors = 0;
      return wh;
    } catch (err) {
      this.consecutiveErrors++;
      this.metrics.meterErrors.inc({ kind: (err as { kind?: string }).kind ?? 'unknown' });
      throw err;
    } finally {
      end();
    }
  }

  /**
   * The meter's own power register in W, where its profile has one (else undefined): the power the
   * meter stands for, which two energy readings apart cannot give when the meter runs at a time
   * scale (the sim) or its register steps in whole Wh. Shown on the page; never billed.
   */
  async powerW(): Promise<number | undefined> {
    // Only a profile-driven Modbus meter names its power register.
    const meter = this.meter instanceof ModbusMeter ? this.meter : undefined;
    const spec = meter?.profile.quantities.power;
    if (!meter || !spec) return undefined;
    try {
      this.lastPowerW = Math.round(await meter.readValue('power', spec));
    } catch {
      // A missing or failing power register only costs the page its figure.
      this.lastPowerW = undefined;
    }
    return this.lastPowerW;
  }

  lastPowerW: number | undefined;

  /**
   * Switches charging on (at `kw`) or off, where this device has a charger to switch. An EV names
   * the station it is plugged into (`plugTo`), which the simulated cable needs.
   */
  async setCharging(on: boolean, kw = 0, plugTo?: string): Promise<void> {
    if (this.cfg.charger !== 'sim-control') return;
    const write = (this.meter as unknown as { writeRegisters?: (a: number, v: number[]) => Promise<void> })
      .writeRegisters;
    if (!write) throw new Error('this meter driver cannot write registers (needed for charger: sim-control)');
    // Power first, then the switch: the meter starts at the power it was given.
    if (plugTo) {
      const hex = plugTo.slice(2).padStart(40, '0');
      await write.call(
        this.meter,
        SIM_CONTROL.plug,
        Array.from({ length: 10 }, (_, i) => Number.parseInt(hex.slice(4 * i, 4 * i + 4), 16)),
      );
    }
    if (on) await write.call(this.meter, SIM_CONTROL.powerHectoWatt, [Math.round(kw * 10)]);
    await write.call(this.meter, SIM_CONTROL.enable, [on ? 1 : 0]);
    this.log.debug({ on, kw }, 'charger switched');
  }

  async close(): Promise<void> {
    await this.meter.close();
  }
}
