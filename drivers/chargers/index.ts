/**
 * Chargers: one interface (types.ts) for OCPP 1.6J wallboxes, Modbus wallboxes (data profiles)
 * and a GPIO relay. See docs/CHARGERS.md.
 */
import { readFileSync } from 'node:fs';
import { GpioRelayCharger } from './gpio.js';
import { ModbusCharger } from './modbus.js';
import type { OcppOptions } from './ocpp.js';
import { type Charger, ChargerError, type ChargerConfig } from './types.js';

export { GpioRelayCharger } from './gpio.js';
export { ModbusCharger } from './modbus.js';
// The OCPP central system (ocpp-rpc, ws, its ajv) is loaded only by a station that has one:
// import OcppCharger from './ocpp.js' directly, or go through createCharger.
export { CHARGER_PROFILE_NAMES, CHARGER_PROFILES, resolveChargerProfile } from './profiles.js';
export * from './types.js';

/** Mains voltage per phase, to turn a power into a current limit. */
export const PHASE_VOLTS = 230;

/** The current limit (A per phase) that delivers `kw` on `phases` phases. */
export function currentForKw(kw: number, phases: 1 | 3): number {
  return Math.floor(((kw * 1000) / (PHASE_VOLTS * phases)) * 10) / 10;
}

/** The OCPP basic-auth password from an env variable or a file, never from the config itself. */
export function ocppPassword(cfg: { passwordEnv?: string; passwordFile?: string }): string | undefined {
  if (cfg.passwordFile) return readFileSync(cfg.passwordFile, 'utf8').trim();
  if (cfg.passwordEnv) {
    const v = process.env[cfg.passwordEnv];
    if (v === undefined)
      throw new ChargerError(
        'config',
        `charger.passwordEnv names ${cfg.passwordEnv}, which is not set`,
        'set it in the service environment (or use passwordFile), or remove passwordEnv for no basic auth',
      );
    return v;
  }
  return undefined;
}

/**
 * Builds the charger a config describes (not yet open); undefined for kind "none", and for
 * "sim-control", which is the simulated meter's own switch (agent/core/metering.ts).
 */
export async function createCharger(
  cfg: ChargerConfig,
  deps: { log?: OcppOptions['log']; readOnly?: boolean } = {},
): Promise<Charger | undefined> {
  switch (cfg.kind) {
    case 'none':
      return undefined;
    case 'ocpp': {
      const password = ocppPassword(cfg);
      const { OcppCharger } = await import('./ocpp.js');
      return new OcppCharger({
        host: cfg.host,
        port: cfg.port,
        chargePointId: cfg.chargePointId,
        connectorId: cfg.connectorId,
        ...(password !== undefined ? { password } : {}),
        heartbeatS: cfg.heartbeatS,
        leaseS: cfg.leaseS,
        maxCurrentA: cfg.maxCurrentA,
        ...(deps.log ? { log: deps.log } : {}),
      });
    }
    case 'modbus':
      return new ModbusCharger({
        profile: cfg.profile,
        unitId: cfg.unitId,
        transport: cfg.transport,
        ...(cfg.timeoutMs ? { timeoutMs: cfg.timeoutMs } : {}),
        failsafeS: cfg.failsafeS,
        maxCurrentA: cfg.maxCurrentA,
        ...(deps.readOnly ? { readOnly: true } : {}),
      });
    case 'gpio':
      return new GpioRelayCharger({ chip: cfg.chip, line: cfg.line, activeLow: cfg.activeLow });
    case 'sim-control':
      return undefined;
  }
}
