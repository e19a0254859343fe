/**
 * The agent's view of its meter: the billing register read through the driver (with latency and
 * error metrics), the meter's identity for the reports, and the simulation's switch. A real
 * station's power is switched by its charger (drivers/chargers, the `charger` config section,
 * agent/roles/charger-port.ts); with `charger.kind: "sim-control"` it is the simulated meter's
 * control block (drivers/simcontrol.ts), for tests and the simulated cars of the sim.
 *
 * The driver's rule (drivers/types.ts, `MeterReading.epoch`): two readings are comparable only
 * within one epoch; a counter reset or a swapped meter starts a new one. Sessions subtract a start
 * reading from later ones, so `energyWh()` is continuous across a discontinuity: the new epoch
 * continues from the last reading of the old one (whatever flowed between that reading and the
 * reset is unknown, and billing it would be invented). Readings are never subtracted across a reset.
 */
import {
  type Discontinuity,
  type Meter,
  type MeterReading,
  ModbusMeter,
  openMeter,
  switchSimCharge,
} from '../../drivers/index.js';
import type { AgentConfig } from './config.js';
import type { Journal } from './journal.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

/** Where the offset is kept across restarts (the agent's journal). */
export type OffsetStore = Pick<Journal, 'get' | 'put'>;
const OFFSET_KEY = 'meter:offsetWh';

export class Metering {
  serial = 'unknown';
  lastWh: number | undefined;
  lastReadAt = 0;
  consecutiveErrors = 0;
  /** Added to the register so readings stay continuous across resets and swaps (see above). */
  private offsetWh = 0;
  /**
   * Discontinuities seen since start (a reset, a swap, or a jump the plausibility check would not
   * believe): a charge that began in another epoch ends there as a meter fault (issue 12), billed
   * up to the last plausible reading.
   */
  epoch = 0;

  private constructor(
    readonly meter: Meter,
    private readonly cfg: NonNullable<AgentConfig['meter']>,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly store?: OffsetStore,
    /** The config's charger is "sim-control": setCharging writes the simulated meter's control block. */
    private readonly simControl = false,
  ) {
    this.offsetWh = store?.get<number>(OFFSET_KEY) ?? 0;
  }

  static async open(
    cfg: NonNullable<AgentConfig['meter']>,
    metrics: Metrics,
    log: Logger,
    store?: OffsetStore,
    simControl = false,
  ): Promise<Metering> {
    const { pollMs: _p, ...driverConfig } = cfg;
    return Metering.over(await openMeter(driverConfig), cfg, metrics, log, store, simControl);
  }

  /** The agent's view of a meter already open (tests hand in a fake one). */
  static async over(
    meter: Meter,
    cfg: NonNullable<AgentConfig['meter']>,
    metrics: Metrics,
    log: Logger,
    store?: OffsetStore,
    simControl = false,
  ): Promise<Metering> {
    const m = new Metering(meter, cfg, metrics, log, store, simControl);
    m.meter.on('reset', (d) =>
      m.discontinuity(
        d,
        d.currentWh > d.previousWh
          ? 'meter energy register jumped forwards (faster than meter.plausibility.maxPowerW allows)'
          : 'meter energy register went backwards (reset)',
      ),
    );
    m.meter.on('replaced', (d) => m.discontinuity(d, 'meter replaced (new serial)'));
    try {
      m.serial = (await m.meter.identity()).serial ?? 'unknown';
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'meter identity not readable yet');
    }
    return m;
  }

  /** A new epoch: it continues from the last reading of the old one. */
  private discontinuity(d: Discontinuity, what: string): void {
    this.epoch++;
    this.offsetWh += Math.floor(d.previousWh) - Math.floor(d.currentWh);
    // Journaled: after a restart the readings must stay on the same scale as the open session's.
    this.store?.put(OFFSET_KEY, this.offsetWh);
    this.log.warn({ d, offsetWh: this.offsetWh }, `${what}; readings continue from the last one before it`);
  }

  get profile(): string {
    return this.cfg.profile;
  }

  /**
   * The billing register in whole Wh, continuous across resets and swaps (see above); throws the
   * driver's MeterError (which says what to check).
   */
  async energyWh(): Promise<number> {
    const wh = await this.observed(
      () => this.meter.readEnergyWh(),
      (register) => register,
    );
    return Math.floor(wh) + this.offsetWh;
  }

  /**
   * Every quantity (telemetry, status, Home Assistant), as the meter shows them (its register, not
   * offset), with the same metrics and the same `lastWh` as the billing read.
   */
  async read(): Promise<MeterReading> {
    const r = await this.observed(
      () => this.meter.read(),
      (reading) => reading.energyWh,
    );
    if (r.powerW !== undefined) this.metrics.meterPowerW.set(r.powerW);
    return r;
  }

  /** One read, timed into the histogram, its outcome into meter_up and the error counter. */
  private async observed<T>(read: () => Promise<T>, registerOf: (t: T) => number): Promise<T> {
    const end = this.metrics.meterReadSeconds.startTimer();
    try {
      // The driver emits a discontinuity before it returns the reading that starts the new epoch.
      const result = await read();
      const register = Math.floor(registerOf(result));
      this.lastWh = register + this.offsetWh;
      this.lastReadAt = Date.now();
      this.consecutiveErrors = 0;
      this.metrics.meterEnergyWh.set(register);
      this.metrics.meterUp.set(1);
      return result;
    } catch (err) {
      this.consecutiveErrors++;
      this.metrics.meterUp.set(0);
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
    if (!this.simControl) return;
    await switchSimCharge(this.meter, on, kw, plugTo);
    this.log.debug({ on, kw }, 'charger switched');
  }

  async close(): Promise<void> {
    await this.meter.close();
  }
}
