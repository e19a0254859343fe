/**
 * The agent's view of its meter: the billing register read through the driver (with latency and
 * error metrics) and the meter's identity for the reports. What switches the power is the
 * charger (drivers/chargers, the `charger` config section).
 */
import { type Meter, openMeter } from '../../drivers/index.js';
import type { AgentConfig } from './config.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

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
    const { pollMs: _p, ...driverConfig } = cfg;
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

  async close(): Promise<void> {
    await this.meter.close();
  }
}
