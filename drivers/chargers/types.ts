/**
 * One charger interface for every way a station switches power: an OCPP 1.6J wallbox (the agent
 * is its central system), a Modbus wallbox (a data profile, drivers/chargers/profiles.ts), or a
 * relay on a GPIO line (the DIY station with a separate meter). The HCS role sees only this.
 */
import type { Transport } from '../types.js';

/**
 * What the charger reports, normalised (IEC 61851-1 states A/B/C, OCPP StatusNotification):
 * unplugged (A), plugged but not charging (B, or C without permission), charging (C with current
 * flowing), suspendedByEv (the EVSE offers current, the car takes none), fault (E, F, Faulted).
 */
export type ChargerStatus = 'unplugged' | 'plugged' | 'charging' | 'suspendedByEv' | 'fault';

export interface ChargerState {
  status: ChargerStatus;
  /** The vendor's own state as read ("C2", "7", "Charging/NoError"), for logs and diagnostics. */
  raw: string;
  /** Whether the charger is switched on (permits charging) as far as it reports. */
  enabled?: boolean;
  /** The current limit it runs with, A. */
  currentLimitA?: number;
  /** Its own energy register, Wh, where it has one. */
  energyWh?: number;
  powerW?: number;
  /** ms since the epoch, when read. */
  at: number;
}

export interface ChargerIdentity {
  vendor: string;
  model: string;
  serial?: string;
  firmware?: string;
}

/** A signed meter value as the charger sent it (OCMF from Eichrecht wallboxes). */
export interface SignedMeterValue {
  /** "OCMF", or whatever `format` the charger named. */
  format: string;
  /** The signed document exactly as received (OCMF: "OCMF|{…}|{…}"). */
  data: string;
  /** OCPP `context`: Transaction.Begin, Sample.Periodic, Transaction.End … */
  context?: string;
  /** The session (idTag) it belongs to. */
  sessionId?: string;
  at: number;
}

/** How long the charger keeps delivering after the agent dies, and how that is bounded. */
export interface FailsafeInfo {
  configured: boolean;
  /** Worst case, seconds, from the agent's death to the charger stopping by itself. */
  worstCaseS?: number;
  /** In words: which register / profile / mechanism bounds it. */
  detail: string;
}

export type ChargerKind = 'ocpp' | 'modbus' | 'gpio';

export interface Charger {
  readonly kind: ChargerKind;
  /** Connects (Modbus, GPIO) or starts listening (OCPP); configures the failsafe where there is one. */
  open(): Promise<void>;
  /** Whether it can be reached now (OCPP: a wallbox is connected). */
  connected(): boolean;
  identity(): Promise<ChargerIdentity>;
  /** Reads the state now (OCPP: the last StatusNotification and meter value). */
  state(): Promise<ChargerState>;
  /**
   * Permits charging for this session at `currentA` (OCPP: RemoteStartTransaction with the session
   * id as idTag, and a TxProfile limit). Resolves once the charger accepted; throws ChargerError.
   */
  enable(currentA: number, sessionId: string): Promise<void>;
  /** Stops charging (OCPP: RemoteStopTransaction). Idempotent. */
  disable(): Promise<void>;
  /** Changes the current limit while enabled. */
  setCurrent(currentA: number): Promise<void>;
  /** Keeps the failsafe from tripping while the agent is alive (Modbus watchdog, OCPP lease). */
  keepAlive(): Promise<void>;
  /** Signed meter values received for a session (OCPP/OCMF); empty where the charger has none. */
  signedValues(sessionId: string): SignedMeterValue[];
  failsafe(): FailsafeInfo;
  close(): Promise<void>;
}

export type ChargerErrorKind = 'config' | 'not-connected' | 'rejected' | 'io' | 'fault';

export class ChargerError extends Error {
  override readonly name = 'ChargerError';
  constructor(
    readonly kind: ChargerErrorKind,
    message: string,
    /** What to check, in an installer's words. */
    readonly hint: string,
    options?: { cause?: unknown },
  ) {
    super(hint ? `${message}: ${hint}` : message, options);
  }
}

/** The `charger` section of agent.config.json (agent/config.schema.json describes each field). */
export type ChargerConfig =
  | { kind: 'none' }
  | {
      kind: 'ocpp';
      /** Where the central system listens: ws://<host>:<port>/<chargePointId>. */
      host: string;
      port: number;
      /** The charge point's identity (the last path segment); other ids are refused. */
      chargePointId: string;
      connectorId: number;
      /** Security profile 1: env variable holding the HTTP basic-auth password. */
      passwordEnv?: string;
      passwordFile?: string;
      /** The TxProfile's current falls to 0 A after this unless renewed (the failsafe). */
      leaseS: number;
      heartbeatS: number;
      maxCurrentA: number;
      phases: 1 | 3;
    }
  | {
      kind: 'modbus';
      profile: string;
      unitId: number;
      transport: Transport;
      timeoutMs?: number;
      /** Watchdog: the wallbox falls back to 0 A after this much Modbus silence. */
      failsafeS: number;
      maxCurrentA: number;
      phases: 1 | 3;
    }
  | {
      kind: 'gpio';
      /** gpiochip name or path, e.g. gpiochip0. */
      chip: string;
      line: number;
      activeLow: boolean;
      maxCurrentA: number;
      phases: 1 | 3;
    }
  /** Simulation only: the simulated meter's control block (drivers/simcontrol.ts), switched by agent/core/metering.ts. */
  | { kind: 'sim-control'; maxCurrentA: number; phases: 1 | 3 };
