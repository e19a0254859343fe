/**
 * The HCS's charger as the role sees it: a small port with four calls. The role decides when
 * (agreed → on; cap, settleBy, termination, plug-out → off); the port knows how (drivers/chargers),
 * journals what it did, feeds the charger's failsafe every tick and reports what the charger saw.
 *
 * Crash safety: the port journals `charger` = {session, on} before it switches on and after it
 * switches off. At start-up it is told which session (if any) is still charging: that one is
 * switched on again (an OCPP wallbox's running transaction is adopted), anything else is switched
 * off (an OCPP transaction with no open session is stopped). So a restart never leaves power on
 * without a session, and the charger's own failsafe (Modbus watchdog, OCPP TxProfile lease)
 * bounds what flows while the agent is dead.
 */
import { type Charger, type ChargerState, currentForKw } from '../../drivers/chargers/index.js';
import type { MeteredContext } from '../core/context.js';
import type { SessionRecord } from '../core/session.js';

/**
 * What the charger saw that ends a charge: the car unplugged, a fault, or the charger stopped by
 * itself (an OCPP wallbox ending the transaction locally, a Modbus wallbox switched off by another).
 */
export type ChargerEnd = 'unplugged' | 'fault' | 'stopped';

export interface ChargerPort {
  /** After a restart: switch on for the session still charging, off for everything else. */
  resume(charging: SessionRecord | undefined): Promise<void>;
  /** The session is agreed: switch on within its terms. Throws (the charger's error) if refused. */
  switchOn(s: SessionRecord): Promise<void>;
  /** Switch off (idempotent); never throws: a failure is logged and retried by the failsafe. */
  switchOff(s: SessionRecord, why: string): Promise<void>;
  /** Every tick: feed the failsafe, read the charger; what ends the session's charge, if anything. */
  watch(s: SessionRecord | undefined): Promise<ChargerEnd | undefined>;
  /** The signed meter values (OCMF) the charger sent for the session. */
  signedValues(s: SessionRecord): string[];
  status(): Record<string, unknown>;
}

interface Journaled {
  session?: string;
  on: boolean;
  currentA?: number;
  at: number;
}

/** How long (ms) a charger may report "unplugged" after switch-on before that counts as a plug-out. */
const PLUG_GRACE_MS = 60_000;
/** Pause between attempts to switch a resumed session's charger on again. */
const RETRY_ON_MS = 5_000;

/** The terms' power (kW) of a session, or the station's. */
const kwOf = (ctx: MeteredContext, s: SessionRecord) => s.kw ?? ctx.cfg.hcs?.powerKw ?? 11;

/**
 * No driver: kind "none" switches nothing; kind "sim-control" (tests, the sim) switches the
 * simulated meter's control block through the metering port.
 */
class MeterSwitchPort implements ChargerPort {
  constructor(private readonly ctx: MeteredContext) {}
  async resume(charging: SessionRecord | undefined): Promise<void> {
    await this.ctx.metering.setCharging(charging !== undefined, charging ? kwOf(this.ctx, charging) : 0);
  }
  async switchOn(s: SessionRecord): Promise<void> {
    await this.ctx.metering.setCharging(true, kwOf(this.ctx, s));
  }
  async switchOff(): Promise<void> {
    await this.ctx.metering
      .setCharging(false)
      .catch((err) => this.ctx.log.warn({ err: (err as Error).message }, 'charger switch-off failed'));
  }
  async watch(): Promise<undefined> {
    return undefined;
  }
  signedValues(): string[] {
    return [];
  }
  status(): Record<string, unknown> {
    return { charger: { kind: this.ctx.cfg.charger.kind } };
  }
}

class DriverPort implements ChargerPort {
  private last?: ChargerState;
  private lastError?: string;
  private keepAliveError?: string;
  /** Per session: whether the charger has seen the car (so "unplugged" means a plug-out). */
  private plugged = new Map<string, boolean>();
  /** Per session: whether the charger has reported itself switched on for it. */
  private enabledSeen = new Map<string, boolean>();
  private switchedOnAt = 0;
  /** A switch-on after restart that failed (the wallbox not back yet): retried from watch. */
  private retryOn?: { id: string; at: number };

  constructor(
    private readonly agent: MeteredContext,
    private readonly charger: Charger,
  ) {}

  private get cfg() {
    return this.agent.cfg.charger as { maxCurrentA?: number; phases?: 1 | 3 };
  }

  /** The terms' power as a current per phase, capped by the installation. */
  private currentFor(s: SessionRecord): number {
    return Math.min(currentForKw(kwOf(this.agent, s), this.cfg.phases ?? 3), this.cfg.maxCurrentA ?? 16);
  }

  private journal(j: Omit<Journaled, 'at'>): void {
    this.agent.journal.put('charger', { ...j, at: Date.now() });
  }

  async resume(charging: SessionRecord | undefined): Promise<void> {
    const was = this.agent.journal.get<Journaled>('charger');
    if (charging) {
      this.agent.log.info({ id: charging.id, was }, 'charger: resuming the session still charging');
      await this.switchOn(charging).catch((err) => {
        this.retryOn = { id: charging.id, at: Date.now() };
        this.agent.log.warn(
          { id: charging.id, err: (err as Error).message },
          'charger: switch-on after restart failed; retrying when it answers',
        );
      });
      return;
    }
    if (was?.on)
      this.agent.log.warn(
        { was },
        'charger: left on for a session that is no longer charging: switching off',
      );
    await this.off();
  }

  async switchOn(s: SessionRecord): Promise<void> {
    const currentA = this.currentFor(s);
    // Intent first: after a crash between these lines the restart finds "on" and checks.
    this.journal({ session: s.id, on: true, currentA });
    this.switchedOnAt = Date.now();
    await this.charger.enable(currentA, s.id);
    this.agent.metrics.chargerOn.set(1);
    this.agent.log.info({ id: s.id, currentA, kind: this.charger.kind }, 'charger on');
  }

  private async off(): Promise<boolean> {
    try {
      await this.charger.disable();
      this.journal({ on: false });
      this.agent.metrics.chargerOn.set(0);
      return true;
    } catch (err) {
      this.lastError = (err as Error).message;
      this.agent.log.error(
        { err: this.lastError },
        'charger: switch-off failed (its failsafe stops it if the agent cannot)',
      );
      return false;
    }
  }

  async switchOff(s: SessionRecord, why: string): Promise<void> {
    if (await this.off()) this.agent.log.info({ id: s.id, why }, 'charger off');
    this.plugged.delete(s.id);
    this.enabledSeen.delete(s.id);
    this.retryOn = undefined;
  }

  async watch(s: SessionRecord | undefined): Promise<ChargerEnd | undefined> {
    let st: ChargerState;
    // The failsafe's feed failing (a wallbox refusing a profile renewal) must not blind the watch.
    await this.charger.keepAlive().then(
      () => {
        this.keepAliveError = undefined;
      },
      (err) => {
        const message = `failsafe renewal failed: ${(err as Error).message}`;
        if (message !== this.keepAliveError)
          this.agent.log.warn({ err: message }, 'charger failsafe not renewed');
        this.keepAliveError = message;
      },
    );
    try {
      st = await this.charger.state();
      this.last = st;
      this.lastError = undefined;
      this.agent.metrics.chargerUp.set(1);
    } catch (err) {
      this.agent.metrics.chargerUp.set(0);
      const message = (err as Error).message;
      if (message !== this.lastError) this.agent.log.warn({ err: message }, 'charger not readable');
      this.lastError = message;
      return undefined;
    }
    if (!s) return undefined;
    if (this.retryOn?.id === s.id && Date.now() - this.retryOn.at > RETRY_ON_MS) {
      this.retryOn = undefined;
      await this.switchOn(s).catch(() => {
        this.retryOn = { id: s.id, at: Date.now() };
      });
    }
    if (st.status === 'fault') return 'fault';
    if (st.status !== 'unplugged') {
      this.plugged.set(s.id, true);
      if (st.enabled) this.enabledSeen.set(s.id, true);
      else if (st.enabled === false && this.enabledSeen.get(s.id)) return 'stopped';
      return undefined;
    }
    // Unplugged: a plug-out if the car was seen, or it never came within the grace period.
    if (this.plugged.get(s.id) || Date.now() - this.switchedOnAt > PLUG_GRACE_MS) return 'unplugged';
    return undefined;
  }

  signedValues(s: SessionRecord): string[] {
    return this.charger.signedValues(s.id).map((v) => v.data);
  }

  status(): Record<string, unknown> {
    return {
      charger: {
        kind: this.charger.kind,
        connected: this.charger.connected(),
        ...(this.last ? { status: this.last.status, raw: this.last.raw, energyWh: this.last.energyWh } : {}),
        ...(this.lastError ? { error: this.lastError } : {}),
        failsafe: this.charger.failsafe(),
      },
    };
  }
}

export function chargerPort(ctx: MeteredContext): ChargerPort {
  return ctx.charger ? new DriverPort(ctx, ctx.charger) : new MeterSwitchPort(ctx);
}
