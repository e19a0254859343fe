/**
 * The agent's view of its meter: the billing register read through the driver (with latency and
 * error metrics), the meter's identity for the reports, and the charger switch. On a real charge
 * point the switch belongs to the wallbox; with `charger: "sim-control"` it is the simulated
 * meter's control register (sim/meter, SIM_CONTROL), for development and the sim.
 */
import { type Meter, openMeter } from '../../drivers/index.js';
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
   * Switches charging on (at `kw`) or off, where this device has a charger to switch. An EV names
   * the station it is plugged into (`plugTo`), which the simulated cable needs.
   */
  async setCharging(on: boolean, kw = 0, plugTo?: string): Promise<void> {
    if (this.cfg.charger !== 'sim-control') return;
    try {
      await this.switchCharger(on, kw, plugTo);
      this.pendingSwitch = undefined;
    } catch (err) {
      // Retried every tick (retrySwitch) until it lands: a charger left on after a meter fault
      // would feed the next car with nobody metering it.
      this.pendingSwitch = { on, kw, ...(plugTo ? { plugTo } : {}) };
      throw err;
    }
  }

  /** Whether a switch of the charger has not landed yet (it is retried every tick). */
  get switchPending(): boolean {
    return this.pendingSwitch !== undefined;
  }

  /**
   * Whether the meter answers and the charger is where we left it: a station offers a charge only
   * then (a meter away cannot bill it; a charger stuck on would feed a car nobody meters).
   */
  async ready(): Promise<boolean> {
    if (this.pendingSwitch) return false;
    // Read a moment ago: no need to ask again (a request must not wait on a meter read each time).
    if (this.consecutiveErrors === 0 && this.lastReadAt && Date.now() - this.lastReadAt < 2000) return true;
    try {
      await this.energyWh();
      return true;
    } catch {
      return false;
    }
  }

  /** A switch that did not reach the charger (the meter/controller was away), if any. */
  private pendingSwitch?: { on: boolean; kw: number; plugTo?: string };

  /** Tries the last failed switch again (every tick); quiet until it lands. */
  async retrySwitch(): Promise<void> {
    const p = this.pendingSwitch;
    if (!p) return;
    try {
      await this.switchCharger(p.on, p.kw, p.plugTo);
      if (this.pendingSwitch === p) this.pendingSwitch = undefined;
      this.log.info({ on: p.on }, 'charger switch landed on retry');
    } catch {
      // still away: the next tick
    }
  }

  private async switchCharger(on: boolean, kw: number, plugTo?: string): Promise<void> {
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
