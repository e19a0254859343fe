/**
 * What a role (agent/roles) works through: a narrow context, not the whole runtime. The runtime
 * (core/runtime.ts) builds one for its role; a unit test builds one from fakes (test/fakes/), so a
 * role's logic runs in-process without a chain node or a broker. Roles import this module, never
 * the runtime: the runtime loads the roles, nothing loads it back.
 */
import type { Charger } from '../../drivers/chargers/types.js';
import type { MessageInput } from '../../protocol/index.js';
import type { Bus, Incoming } from './bus.js';
import type { Chain } from './chain.js';
import type { AgentConfig } from './config.js';
import type { Journal } from './journal.js';
import type { Logger } from './log.js';
import type { Metering } from './metering.js';
import type { Metrics } from './metrics.js';
import type { MovePatch, NextOf, SessionIn, SessionRecord } from './session.js';

/** The chain as a role uses it: calls with retries, one send queue, the contract client. */
export type ChainPort = Pick<
  Chain,
  'retry' | 'send' | 'domain' | 'deployment' | 'client' | 'openBatchSender'
>;

/** The bus beyond `send`: signing a report to keep, publishing a kept envelope again. */
export type BusPort = Pick<Bus, 'sign' | 'publishEnvelope'>;

/** The journal as a role uses it (its own keys: the station's seq, the edge's bills). */
export type JournalPort = Pick<
  Journal,
  'get' | 'put' | 'list' | 'delete' | 'stage' | 'stageDelete' | 'flush'
>;

/** The meter as a role uses it (agent/core/metering.ts); `setCharging` is the simulation's switch. */
export type MeteringPort = Pick<
  Metering,
  'energyWh' | 'setCharging' | 'serial' | 'profile' | 'consecutiveErrors' | 'epoch' | 'ready'
>;

/** The session records: journaled at every change, before anything that depends on them is sent. */
export interface SessionStore {
  readonly sessions: ReadonlyMap<string, SessionRecord>;
  openSessions(): SessionRecord[];
  /** Journals the record (synced); call before acting on the new state. */
  save(s: SessionRecord): void;
  /** Moves a session to `to` if the state table allows it: the record, typed by its new state; undefined if not. */
  move<R extends SessionRecord, T extends NextOf<R['state']>>(
    s: R,
    to: T,
    patch: MovePatch<R['state'], T>,
  ): SessionIn<T> | undefined;
  /** Forgets finished sessions beyond the newest `keep`. */
  prune(keep?: number): void;
}

export interface RoleContext extends SessionStore {
  readonly cfg: AgentConfig;
  /** This device's address (lowercase 0x). */
  readonly address: string;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly journal: JournalPort;
  readonly chain: ChainPort;
  readonly bus: BusPort;
  /**
   * Signs and sends; to several devices the same message, signed once. Logs (does not throw) when
   * the broker is away: QoS 1 delivers later.
   */
  send(to: string | readonly string[], msg: MessageInput): Promise<Uint8Array | undefined>;
  /**
   * Runs `fn` alone, as messages and ticks run: what a role finishes under the lock after waiting
   * beside it (the edge's agreement after its deposit read).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Signs and sends until `to` acknowledges it (agent/core/outbox.ts: journaled first, resent
   * across broker and agent restarts), or until the session's window `settleBy` (unix s) is long past.
   */
  sendReliably(to: string, msg: MessageInput, txid: string, settleBy: number): Promise<void>;
  /** An envelope signed earlier (a journaled report), sent until acknowledged; to several, journaled in one write. */
  sendEnvelopeReliably(
    to: string | readonly string[],
    envelope: Uint8Array,
    type: string,
    txid: string,
    settleBy: number,
  ): Promise<void>;
}

/** The context of a role with a meter (EV, station). */
export interface MeteredContext extends RoleContext {
  readonly metering: MeteringPort;
  /**
   * The station's charger (drivers/chargers: OCPP, Modbus, GPIO), when the config has one; the
   * station reaches it through its port (agent/roles/charger-port.ts).
   */
  readonly charger?: Charger;
}

/** A role plugged into the runtime (agent/roles/ev.ts, hcs.ts, edge.ts). */
export interface RoleHandler {
  /** Picks up the sessions found in the journal (after a restart). */
  resume(): Promise<void>;
  onMessage(incoming: Incoming): Promise<void>;
  /** Called every poll period: meter reads, timeouts, batches. */
  tick(): Promise<void>;
  /** Local control (`POST /<action>` on the control port). */
  control(action: string, body: Record<string, unknown>): Promise<unknown>;
  status(): Record<string, unknown>;
  /** Finishes work in flight before the agent closes (optional). */
  stop?(): Promise<void>;
  /** The system clock stepped by `ms` (agent/ops/telemetry.ts): shift what waits on it. */
  onClockJump?(ms: number): void;
}
