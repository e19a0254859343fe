/**
 * Meter drivers: Modbus RTU, Modbus TCP and RTU over TCP, meter profiles as data, plausibility
 * checks and bus statistics. See docs/METERS.md.
 */
import { ModbusMeter } from './meter.js';
import type { Meter, MeterConfig } from './types.js';

export { describeTransport, MeterError } from './errors.js';
export { ModbusMeter } from './meter.js';
export { listSerialPorts, type SerialPortInfo } from './ports.js';
export { PROFILE_NAMES, PROFILES, resolveProfile } from './profiles.js';
export { Backoff, type BackoffOptions, backoffMs, type RetryOptions, retry } from './retry.js';
export { SIM_CONTROL, switchSimCharge } from './simcontrol.js';
export type * from './types.js';

/**
 * Opens a meter. Meters on the same serial port (or TCP endpoint) share one connection and take
 * turns: one request on the wire at a time. Throws MeterError('config') for a bad config only;
 * an absent or silent meter shows up on the first read.
 */
export async function openMeter(config: MeterConfig): Promise<Meter> {
  const meter = new ModbusMeter(config);
  await meter.open();
  return meter;
}
