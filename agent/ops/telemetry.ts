/**
 * The operations side of a running agent, hooked into the runtime's ticker: a telemetry sample
 * every `intervalS` (the meter's full reading, the wallet balance, the HCS's earnings or the EV's
 * deposit) for `GET /status` and Home Assistant; the clock-jump watch (agent/core/clock.ts); and
 * systemd's watchdog, pinged only while ticks keep running, so a wedged agent is restarted.
 */
import { execFile } from 'node:child_process';
import { resolveProfile } from '../../drivers/index.js';
import { ClockWatch, shiftSessionTimes } from '../core/clock.js';
import type { Bus } from '../core/bus.js';
import type { Chain } from '../core/chain.js';
import type { AgentConfig } from '../core/config.js';
import type { JournalPort, RoleHandler } from '../core/context.js';
import type { Logger } from '../core/log.js';
import type { Metering } from '../core/metering.js';
import type { Metrics } from '../core/metrics.js';
import type { SessionRecord } from '../core/session.js';
import { type HaState, HomeAssistant } from './homeassistant.js';
import { OPEN_STATES } from '../core/session.js';

export const VERSION = '0.1.0';
const DEFAULT_INTERVAL_S = 30;

export interface Telemetry {
  at?: number;
  reading?: { energyWh: number; powerW?: number; voltageV?: number; currentA?: number; at: number };
  meterError?: string;
  balanceWei?: string;
  /** HCS: earnings held by the contract. EV: deposit available for charging. */
  earningsWei?: string;
  depositWei?: string;
  chainError?: string;
}

type ChainFigures = Pick<Telemetry, 'balanceWei' | 'earningsWei' | 'depositWei' | 'chainError'>;

/** The meter's vendor and model from its profile (none for a generic profile). */
export function meterModel(meter: AgentConfig['meter']): { vendor?: string; model?: string } {
  if (!meter || meter.profile === 'generic') return {};
  try {
    const p = resolveProfile(meter.profile);
    return { vendor: p.vendor, model: p.model };
  } catch {
    return {};
  }
}

/** A broker URL fit for a status page: user and password (if any were put in it) removed. */
export function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

function systemdNotify(...args: string[]): void {
  // Only under systemd (Type=notify sets NOTIFY_SOCKET); the unit has NotifyAccess=all because
  // the message comes from this child process, not the agent's own pid.
  if (!process.env.NOTIFY_SOCKET) return;
  execFile('systemd-notify', args, () => {});
}

/** Telemetry period while a session charges (the configured one, 30 s by default, otherwise). */
const OPEN_SESSION_INTERVAL_MS = 5000;
/** After a session opens, starts or stops charging or ends: a sample, but not within this of the last. */
const CHANGE_GAP_MS = 2000;

/**
 * The chain figures (balance, earnings or deposit) are read at most this often, unless a session
 * ended since the last read (money moved): two chain reads on every sample were the larger part
 * of a sample's cost at scale, and between a session's steps the figures rarely change (a
 * reservation's hold on the deposit shows within this time).
 */
const CHAIN_READ_GAP_MS = OPEN_SESSION_INTERVAL_MS;

/** The ids in an open-sessions key (Ops.openSessions). */
const idsOf = (key: string): string[] =>
  key
    .split(';')
    .filter(Boolean)
    .map((x) => x.replace(/\+$/, ''));

/** What the operations side needs of a running agent (the runtime hands itself over). */
export interface OpsHost {
  readonly cfg: AgentConfig;
  readonly address: string;
  readonly log: Logger;
  readonly sessions: ReadonlyMap<string, SessionRecord>;
  readonly journal: JournalPort;
  readonly chain: Pick<Chain, 'rpc' | 'client' | 'reachable'>;
  readonly bus: Pick<Bus, 'connected'>;
  readonly metrics: Pick<Metrics, 'buildInfo' | 'probes'>;
  readonly metering?: Pick<Metering, 'serial' | 'meter' | 'read'>;
  readonly role: Pick<RoleHandler, 'status' | 'onClockJump'>;
}

export class Ops {
  telemetry: Telemetry = {};
  readonly clock = new ClockWatch();
  private ha?: HomeAssistant;
  private sampling = false;
  private lastSample = 0;
  private lastWatchdog = 0;
  private lastOpen?: string;
  /** A session opened, started or stopped charging, or ended since the last sample. */
  private changed = false;
  /** A session ended since the chain figures were last read; when they were. */
  private sessionEnded = false;
  private lastChainRead = Number.NEGATIVE_INFINITY;
  /** The chain figures of the last read (chainFigures), and the read under way. */
  private money: ChainFigures = {};
  private readingChain?: Promise<void>;
  private readonly intervalMs: number;
  private readonly watchdogMs: number;

  constructor(private readonly agent: OpsHost) {
    agent.metrics.buildInfo.set({ version: VERSION, node: process.versions.node, role: agent.cfg.role }, 1);
    agent.metrics.probes.brokerConnected = () => agent.bus.connected;
    agent.metrics.probes.chainReachable = () => agent.chain.reachable;
    this.intervalMs = (agent.cfg.homeassistant?.intervalS ?? DEFAULT_INTERVAL_S) * 1000;
    // systemd asks for a ping within WATCHDOG_USEC; ping at half of it.
    const usec = Number(process.env.WATCHDOG_USEC ?? 0);
    this.watchdogMs = usec > 0 ? usec / 2000 : 0;
  }

  static async start(agent: OpsHost): Promise<Ops> {
    const ops = new Ops(agent);
    const ha = agent.cfg.homeassistant;
    if (ha) {
      ops.ha = new HomeAssistant(ha, ops.deviceInfo(), agent.log);
      ops.ha.start();
    }
    // In the background: a silent meter or node must not delay the start.
    void ops.sample();
    systemdNotify('--ready', `--status=${agent.cfg.role} ${agent.address}`);
    return ops;
  }

  private deviceInfo() {
    const a = this.agent;
    return {
      address: a.address,
      name: a.cfg.name,
      role: a.cfg.role,
      version: VERSION,
      ...(a.metering ? { meter: { ...meterModel(a.cfg.meter), serial: a.metering.serial } } : {}),
    };
  }

  /** Shifts the open sessions' times when the wall clock was stepped since the last look. */
  watchClock(): void {
    const jump = this.clock.check();
    if (jump) this.onClockJump(jump);
  }

  /** Called on every runtime tick, before the role's tick. Never throws, never waits. */
  tick(): void {
    this.watchClock();
    const now = Date.now();
    if (this.watchdogMs && now - this.lastWatchdog >= this.watchdogMs) {
      this.lastWatchdog = now;
      systemdNotify('WATCHDOG=1');
    }
    // Fresh figures for `p2pev status` and Home Assistant: every few seconds while a session
    // charges (the power changes), and soon after a session opens, starts or stops charging, or
    // ends (no 11 kW shown after the charge, no stale earnings); not on the other steps, and not
    // twice within CHANGE_GAP_MS (a sample is a full meter read and two chain reads: on every
    // step, and every 5 s of a car's search, the scale run's agents spent a tenth of their CPU
    // on samples).
    const open = this.openSessions();
    if (this.lastOpen !== undefined && open !== this.lastOpen) {
      this.changed = true;
      const now = new Set(idsOf(open));
      if (idsOf(this.lastOpen).some((id) => !now.has(id))) this.sessionEnded = true;
    }
    this.lastOpen = open;
    const charging = open.includes('+');
    const interval = charging ? Math.min(this.intervalMs, OPEN_SESSION_INTERVAL_MS) : this.intervalMs;
    const since = now - this.lastSample;
    if (this.sampling || !((this.changed && since >= CHANGE_GAP_MS) || since >= interval)) return;
    this.changed = false;
    void this.sample();
  }

  /** The open sessions' ids, and which one charges, as one string to compare between ticks ('' when none). */
  private openSessions(): string {
    const a = this.agent;
    if (!a.sessions.size) return '';
    let key = '';
    for (const s of a.sessions.values())
      if (OPEN_STATES.includes(s.state)) key += s.state === 'charging' ? `${s.id}+;` : `${s.id};`;
    return key;
  }

  private onClockJump(ms: number): void {
    const a = this.agent;
    const open = a.sessions.size ? [...a.sessions.values()].filter((s) => OPEN_STATES.includes(s.state)) : [];
    a.log.warn({ jumpMs: ms, open: open.length }, 'system clock stepped; session timers shifted to match');
    for (const s of open) {
      shiftSessionTimes(s, ms);
      // Straight to the journal: save() would stamp updatedAt with the new clock.
      a.journal.put(`s:${s.id}`, s);
    }
    a.role.onClockJump?.(ms);
    this.lastSample += ms;
    this.lastWatchdog += ms;
  }

  /**
   * The chain figures (balance, earnings or deposit), read when someone will see them: Home
   * Assistant on each sample, `GET /status` when asked. Not on every sample of every agent: two
   * chain reads a sample were a fifth of the chain reads of a session at scale, for figures nobody
   * looked at. At most every CHAIN_READ_GAP_MS, unless a session ended since (money moved); one
   * read at a time. Failures are recorded (status shows them), never thrown.
   */
  async chainFigures(): Promise<void> {
    if (this.readingChain) return this.readingChain;
    if (!this.sessionEnded && Date.now() - this.lastChainRead < CHAIN_READ_GAP_MS) return;
    this.sessionEnded = false;
    this.lastChainRead = Date.now();
    const a = this.agent;
    this.readingChain = (async () => {
      let money: ChainFigures = {};
      try {
        // Straight to the node, no retries: a sample or a status must not hang while the node is away.
        money.balanceWei = (await a.chain.rpc.getBalance(a.address)).toString();
        if (a.cfg.role === 'hcs') money.earningsWei = (await a.chain.client.earningsOf(a.address)).toString();
        if (a.cfg.role === 'ev')
          money.depositWei = (await a.chain.client.availableDeposit(a.address)).toString();
      } catch (err) {
        // The last figures stand (those read now replace theirs), with the error beside them.
        const { chainError: _, ...last } = this.money;
        money = { ...last, ...money, chainError: (err as Error).message.split('\n')[0] };
      }
      this.money = money;
      const { balanceWei: _b, earningsWei: _e, depositWei: _d, chainError: _c, ...rest } = this.telemetry;
      this.telemetry = { ...rest, ...money };
    })().finally(() => {
      this.readingChain = undefined;
    });
    return this.readingChain;
  }

  /** One telemetry sample; failures are recorded in it (status shows them), never thrown. */
  async sample(): Promise<void> {
    this.sampling = true;
    this.lastSample = Date.now();
    const a = this.agent;
    const t: Telemetry = { at: Date.now() };
    try {
      if (a.metering) {
        try {
          const r = await a.metering.read();
          t.reading = {
            energyWh: Math.floor(r.energyWh),
            ...(r.powerW !== undefined ? { powerW: r.powerW } : {}),
            ...(r.voltageV !== undefined ? { voltageV: r.voltageV } : {}),
            ...(r.currentA !== undefined ? { currentA: r.currentA } : {}),
            at: r.at,
          };
        } catch (err) {
          t.meterError = (err as Error).message;
        }
      }
      // Home Assistant shows the money on every sample; without it nobody sees the figures but
      // `GET /status`, which reads them when asked (chainFigures).
      if (this.ha) await this.chainFigures();
      Object.assign(t, this.money);
      this.telemetry = t;
      await this.ha?.publishState(this.haState());
    } finally {
      this.sampling = false;
    }
  }

  private haState(): HaState {
    const a = this.agent;
    const r = this.telemetry.reading;
    const open = [...a.sessions.values()].find((s) => OPEN_STATES.includes(s.state));
    const wei = this.telemetry.earningsWei ?? this.telemetry.depositWei;
    const edgeBills = (a.role.status() as { edge?: { bills?: Record<string, number> } }).edge?.bills;
    return {
      energy_kwh: r ? r.energyWh / 1000 : null,
      power_w: r?.powerW ?? null,
      voltage_v: r?.voltageV ?? null,
      current_a: r?.currentA ?? null,
      session: edgeBills
        ? Object.entries(edgeBills)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ') || 'idle'
        : (open?.state ?? 'idle'),
      money_eth: wei !== undefined ? Number(BigInt(wei) / 10n ** 9n) / 1e9 : null,
    };
  }

  status(): Record<string, unknown> {
    return {
      telemetry: this.telemetry,
      clock: { jumps: this.clock.seen.jumps, totalJumpMs: this.clock.seen.totalMs },
      ...(this.agent.cfg.homeassistant
        ? {
            homeassistant: {
              url: withoutCredentials(this.agent.cfg.homeassistant.url),
            },
          }
        : {}),
    };
  }

  async stop(): Promise<void> {
    systemdNotify('STOPPING=1');
    await this.ha?.stop();
  }
}
