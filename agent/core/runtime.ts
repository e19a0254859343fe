/**
 * One agent process: config → keys → chain → bus → meter → role. The runtime owns the shared
 * machinery (journal, session records, the ticker that drives meter polls and timeouts, the local
 * control port); the role (roles/ev.ts, roles/hcs.ts, roles/edge.ts) owns the protocol.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type MessageInput, signatureChecks } from '../../protocol/index.js';
import { Bus } from './bus.js';
import { Chain } from './chain.js';
import { serveControl } from './control.js';
import type { AgentConfig } from './config.js';
import type { RoleContext, RoleHandler } from './context.js';
import { Journal } from './journal.js';
import { type DeviceKey, openKeystore, readPassword } from './keys.js';
import { createLogger, type Logger } from './log.js';
import { type Charger, createCharger } from '../../drivers/chargers/index.js';
import { Metering } from './metering.js';
import { collectNow, memoryFigures } from './memory.js';
import { createMetrics, type Metrics, serveMetrics } from './metrics.js';
import { Outbox, resendUntil } from './outbox.js';
import { Ops } from '../ops/telemetry.js';
import {
  canMove,
  OPEN_STATES,
  type MovePatch,
  type NextOf,
  type SessionIn,
  type SessionRecord,
} from './session.js';
import { type AgentWeb, agentWeb, serveWeb } from '../web/agent.js';

/**
 * Finished sessions kept (in memory and in the journal) for the status, the OCMF export and a
 * peer's late repeat; older ones are dropped. ~2–3 kB each: at most ~0.6 MB of journal.
 */
export const KEEP_SESSIONS = 200;

/** How often the edge (no meter) looks at its batches, holds and timeouts. */
const EDGE_TICK_MS = 500;

/** How long `GET /status` waits for the chain figures it asked for (the last ones stand after). */
const STATUS_CHAIN_WAIT_MS = 2000;

export interface AgentOptions {
  /** The keystore password; read from the config's env variable or file when omitted. */
  password?: string;
  log?: Logger;
}

export class Agent {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly journal: Journal;
  readonly sessions = new Map<string, SessionRecord>();
  chain!: Chain;
  bus!: Bus;
  /** What is resent until acknowledged (agent/core/outbox.ts). */
  outbox!: Outbox;
  metering?: Metering;
  /** What switches the power (the `charger` section): absent for kinds none and sim-control, and the edge. */
  charger?: Charger;
  role!: RoleHandler;
  private timer?: NodeJS.Timeout;
  private ticking = false;
  private servers: Server[] = [];
  controlPort?: number;
  metricsPort?: number;
  /** The members' page (agent/web/): the control port's unknown GETs, and `web.port`. */
  private web?: AgentWeb;
  webPort?: number;
  /** Telemetry, Home Assistant, clock-jump watch, systemd watchdog (agent/ops/telemetry.ts). */
  ops?: Ops;
  readonly startedAt = Date.now();

  private constructor(
    readonly cfg: AgentConfig,
    readonly key: DeviceKey,
    log: Logger,
  ) {
    this.log = log;
    this.metrics = createMetrics(cfg.metrics.port !== undefined);
    this.journal = new Journal(cfg.dataDir);
    for (const [, s] of this.journal.list<SessionRecord>('s:')) {
      this.sessions.set(s.id, s);
      this.countState(s);
    }
  }

  get address(): string {
    return this.key.address;
  }

  static async start(cfg: AgentConfig, opts: AgentOptions = {}): Promise<Agent> {
    const log = opts.log ?? createLogger({ level: cfg.log.level, name: cfg.name });
    const key = await openKeystore(cfg.keystore.path, opts.password ?? readPassword(cfg.keystore));
    const agent = new Agent(cfg, key, log);
    log.info(
      {
        role: cfg.role,
        address: key.address,
        journal: agent.journal.path,
        open: agent.openSessions().length,
      },
      'agent starting',
    );
    agent.chain = await Chain.connect({
      ...cfg.chain,
      privateKey: key.privateKey,
      log,
      role: cfg.role,
    });
    agent.bus = new Bus({
      mqtt: cfg.mqtt,
      address: key.address,
      privateKey: key.privateKey,
      domain: agent.chain.domain,
      ...(cfg.server ? { server: cfg.server } : cfg.role === 'edge' ? { server: key.address } : {}),
      isMember: (a) => agent.chain.isMember(a),
      log,
      metrics: agent.metrics,
      // Group commit (agent/core/journal.ts): what was staged is on disk before anything is sent.
      beforeSend: () => agent.journal.flush(),
    });
    if (cfg.role !== 'edge') {
      if (!cfg.meter) throw new Error(`a ${cfg.role} agent needs the config's meter section`);
      agent.metering = await Metering.open(
        cfg.meter,
        agent.metrics,
        log,
        agent.journal,
        cfg.charger.kind === 'sim-control',
      );
      agent.charger = await createCharger(cfg.charger, { log });
      await agent.charger?.open();
    }
    agent.outbox = new Outbox(
      agent.journal,
      (to, env, type) => agent.bus.publishEnvelope(to, env, type),
      log,
      // The bus flushes the journal before any of its writes leave the process (beforeSend above).
      true,
    );
    agent.role = await agent.createRole();
    agent.bus.onAck((id, from) => agent.outbox.ack(id, from));
    agent.bus.onMessage((m) => agent.exclusive(() => agent.role.onMessage(m)));
    await agent.bus.connect();
    await agent.role.resume();
    await agent.serve();
    agent.ops = await Ops.start(agent);
    // Once a second (the edge, which has no meter, every EDGE_TICK_MS for its batches and
    // timeouts), and at the meter's pollMs while a session charges (retime).
    agent.fastTickMs = cfg.meter && cfg.meter.pollMs < 1000 ? cfg.meter.pollMs : undefined;
    agent.timer = setInterval(
      () => {
        if (!agent.fastTimer) void agent.tick();
      },
      cfg.meter ? 1000 : EDGE_TICK_MS,
    );
    agent.retime();
    log.info({ control: agent.controlPort, metrics: agent.metricsPort }, 'agent running');
    return agent;
  }

  private async createRole(): Promise<RoleHandler> {
    const ctx = this.roleContext();
    if (this.cfg.role === 'edge') return new (await import('../roles/edge.js')).EdgeRole(ctx);
    const metering = this.metering;
    if (!metering) throw new Error(`a ${this.cfg.role} agent needs a meter (the config's meter section)`);
    return this.cfg.role === 'ev'
      ? new (await import('../roles/ev.js')).EvRole({ ...ctx, metering })
      : new (await import('../roles/hcs.js')).HcsRole({
          ...ctx,
          metering,
          ...(this.charger ? { charger: this.charger } : {}),
        });
  }

  /** What the role may use of this agent (agent/core/context.ts); chain and bus are connected by now. */
  private roleContext(): RoleContext {
    return {
      cfg: this.cfg,
      address: this.address,
      log: this.log,
      metrics: this.metrics,
      journal: this.journal,
      chain: this.chain,
      bus: this.bus,
      sessions: this.sessions,
      openSessions: () => this.openSessions(),
      save: (s) => this.save(s),
      // Through this agent at each call (the scale sim times phases by wrapping agent.move).
      move: <R extends SessionRecord, T extends NextOf<R['state']>>(
        s: R,
        to: T,
        patch: MovePatch<R['state'], T>,
      ) => this.move(s, to, patch),
      prune: (keep) => this.prune(keep),
      send: (to, msg) => this.send(to, msg),
      sendReliably: (to, msg, txid, settleBy) => this.sendReliably(to, msg, txid, settleBy),
      sendEnvelopeReliably: (to, envelope, type, txid, settleBy) =>
        this.sendEnvelopeReliably(to, envelope, type, txid, settleBy),
      exclusive: (fn) => this.exclusive(fn),
    };
  }

  private lock: Promise<unknown> = Promise.resolve();

  /**
   * Runs `fn` alone: messages, ticks and control calls all change session state, and must not
   * interleave (a completion arriving while a poll ends the same charge would end it twice).
   * A clock step is looked for first: a deadline set by `fn` in the stepped clock's frame must not
   * be shifted again by the next tick's check (a session offered just after NTP stepped the clock
   * back had its fresh consent deadline moved into the past, and failed at once).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const alone = () => {
      this.ops?.watchClock();
      return fn();
    };
    const run = this.lock.then(alone, alone);
    this.lock = run.catch(() => {});
    return run;
  }

  /** A local control action (what `POST /<action>` on the control port does). */
  control(action: string, body: Record<string, unknown> = {}): Promise<unknown> {
    // A full garbage collection and the memory after it (agent/core/memory.ts): any role.
    if (action === 'gc') return Promise.resolve({ memory: collectNow() });
    return this.exclusive(() => this.role.control(action, body));
  }

  /** The meter's poll period, where faster than once a second: the ticker's while a session charges. */
  private fastTickMs?: number;
  private fastTimer?: NodeJS.Timeout;
  private stopped = false;

  /**
   * Poll fast only while a charge is metered; otherwise once a second is plenty for timeouts.
   * A second timer runs only then: one timer at pollMs for every agent, idle or not, fired
   * 6,000 times a second in the sim at scale (600 agents at 100 ms), each to find nothing to do.
   */
  private retime(): void {
    const want =
      this.fastTickMs !== undefined && !this.stopped && (this.stateCounts.get('charging') ?? 0) > 0;
    if (want && !this.fastTimer) this.fastTimer = setInterval(() => void this.tick(), this.fastTickMs);
    else if (!want && this.fastTimer) {
      clearInterval(this.fastTimer);
      this.fastTimer = undefined;
    }
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      this.ops?.tick();
      await this.exclusive(async () => {
        await this.metering?.retrySwitch();
        await this.outbox.tick();
        await this.role.tick();
      });
      this.metrics.journalBytes.set(this.journal.fileBytes);
    } catch (err) {
      this.log.error({ err }, 'tick failed');
    } finally {
      this.ticking = false;
    }
  }

  /**
   * The open sessions (a copy), in the order they were opened. Kept as sessions are saved: asked
   * on every tick of every agent (at scale 600 agents in a process, 10 ticks a second each while
   * charging), a scan of up to KEEP_SESSIONS records each time was a few per cent of the workers' CPU.
   */
  openSessions(): SessionRecord[] {
    this.open ??= [...this.sessions.values()].filter((s) => OPEN_STATES.includes(s.state));
    return this.open.slice();
  }

  private open: SessionRecord[] | undefined;

  /** Journals the record (synced) and updates the gauges; call before acting on the new state. */
  save(s: SessionRecord): void {
    s.updatedAt = Date.now();
    this.journal.put(`s:${s.id}`, s);
    this.sessions.set(s.id, s);
    if (this.open) {
      const i = this.open.findIndex((x) => x.id === s.id);
      if (OPEN_STATES.includes(s.state)) {
        if (i < 0) this.open.push(s);
        else this.open[i] = s;
      } else if (i >= 0) this.open.splice(i, 1);
    }
    this.countState(s);
    this.retime();
  }

  /**
   * Moves a session to `to` if the state table allows it, and returns it typed by its new state;
   * undefined (and a log line) if the table does not allow it.
   */
  move<R extends SessionRecord, T extends NextOf<R['state']>>(
    s: R,
    to: T,
    patch: MovePatch<R['state'], T>,
  ): SessionIn<T> | undefined {
    if (!canMove(s, to)) {
      this.log.debug({ id: s.id, from: s.state, to }, 'transition not allowed; ignored');
      return undefined;
    }
    this.log.info(
      { id: s.id, txid: s.txid, from: s.state, to, ...(patch.error ? { error: patch.error } : {}) },
      'session',
    );
    Object.assign(s, patch, { state: to });
    this.save(s);
    // Over for us: nothing of this session needs resending any more, but our report to the peer
    // of a settled session (an EV rates the station with the station's signed report), and all
    // we sent the edge: a session settled without it (the station's fallback while the edge was
    // away) would otherwise stay open at the edge until its window closes, its station counted
    // as charging and never suggested (issue 15's chaos run at 40 x 10). The edge acks it and
    // closes the bill: the chain answers AlreadySettled.
    if (to === 'failed' && s.txid) this.outbox.settle(s.txid);
    if (to === 'done' && s.txid)
      this.outbox.settle(
        s.txid,
        (e) =>
          (s.server !== undefined && e.to === s.server.toLowerCase()) ||
          e.type === 'chargeReceived' ||
          e.type === 'chargeProvided',
      );
    // The table allowed the move and the patch brought what the new state holds.
    return s as SessionIn<T>;
  }

  /** Forgets finished sessions beyond the newest `keep`, so the journal stays bounded. */
  prune(keep = KEEP_SESSIONS): void {
    const finished = [...this.sessions.values()]
      .filter((s) => !OPEN_STATES.includes(s.state))
      .sort((a, b) => a.updatedAt - b.updatedAt);
    for (const s of finished.slice(0, Math.max(0, finished.length - keep))) {
      this.sessions.delete(s.id);
      this.journal.delete(`s:${s.id}`);
      this.countState(s, true);
    }
  }

  /** Each session's state as last counted, and the sessions per state (the `sessions` gauge). */
  private readonly countedState = new Map<string, string>();
  private readonly stateCounts = new Map<string, number>();

  /** The gauge kept as sessions change (it counted every session on every save). */
  private countState(s: SessionRecord, forgotten = false): void {
    const before = this.countedState.get(s.id);
    const now = forgotten ? undefined : s.state;
    if (before === now) return;
    if (now === undefined) this.countedState.delete(s.id);
    else this.countedState.set(s.id, now);
    for (const [state, d] of [
      [before, -1],
      [now, 1],
    ] as const) {
      if (state === undefined) continue;
      const n = (this.stateCounts.get(state) ?? 0) + d;
      if (n > 0) {
        this.stateCounts.set(state, n);
        this.metrics.sessions.set({ state }, n);
      } else {
        this.stateCounts.delete(state);
        this.metrics.sessions.remove({ state });
      }
    }
  }

  /**
   * Sends to a device (or the same message to several: signed once), logging (not throwing) when
   * the broker is away: QoS 1 retries later.
   */
  async send(to: string | readonly string[], msg: MessageInput): Promise<Uint8Array | undefined> {
    try {
      return await this.bus.send(to, msg);
    } catch (err) {
      this.log.warn({ to, type: msg.type, err: (err as Error).message }, 'send failed');
      return undefined;
    }
  }

  /**
   * Signs `msg` and sends it to `to` until `to` acknowledges it (journaled first; resent across
   * broker and agent restarts) or the session's window `settleBy` (unix s) has long passed.
   */
  async sendReliably(to: string, msg: MessageInput, txid: string, settleBy: number): Promise<void> {
    const envelope = await this.bus.sign(msg);
    await this.sendEnvelopeReliably(to, envelope, msg.type, txid, settleBy);
  }

  /** An envelope signed earlier (a journaled report), sent until acknowledged; to several, journaled in one write. */
  async sendEnvelopeReliably(
    to: string | readonly string[],
    envelope: Uint8Array,
    type: string,
    txid: string,
    settleBy: number,
  ): Promise<void> {
    await this.outbox.send(to, envelope, type, txid, resendUntil(settleBy)).catch((err: Error) => {
      this.log.warn({ to, type, err: err.message }, 'send failed; resent later');
    });
  }

  status(): Record<string, unknown> {
    return {
      name: this.cfg.name,
      role: this.cfg.role,
      address: this.address,
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      pid: process.pid,
      heapUsedMb: Math.round(process.memoryUsage().heapUsed / 10_485.76) / 100,
      memory: memoryFigures(),
      broker: { url: this.cfg.mqtt.url, connected: this.bus.connected },
      chain: {
        rpcUrl: this.cfg.chain.rpcUrl,
        reachable: this.chain.reachable,
        contract: this.chain.deployment.address,
        chainId: this.chain.deployment.chainId,
      },
      meter: this.metering
        ? {
            profile: this.metering.profile,
            serial: this.metering.serial,
            lastWh: this.metering.lastWh,
            lastReadAt: this.metering.lastReadAt || undefined,
          }
        : undefined,
      journal: {
        path: this.journal.path,
        bytes: this.journal.fileBytes,
        keys: this.journal.size,
        flushes: this.journal.flushes,
      },
      outbox: { waiting: this.outbox.size, ...this.outbox.figures },
      messages: { ...this.bus.stats, droppedBy: this.bus.droppedBy, queued: this.bus.queued },
      // Signer recoveries and signatures since start: per session, what the crypto costs (bench:edge).
      signatures: { checks: signatureChecks.total, signed: signatureChecks.signed },
      sessions: this.openSessions().map((s) => ({
        id: s.id,
        state: s.state,
        txid: s.txid,
        peer: s.role === 'ev' ? s.hcs : s.ev,
        // Progress towards the target: energy so far on this session's meter.
        ...(s.targetWh !== undefined ? { targetWh: s.targetWh } : {}),
        ...(s.startWh !== undefined && s.lastWh !== undefined ? { energyWh: s.lastWh - s.startWh } : {}),
      })),
      ...this.ops?.status(),
      ...this.role.status(),
    };
  }

  /** The local control and status port (loopback by default), and the metrics port. */
  private async serve(): Promise<void> {
    this.web = agentWeb(this);
    if (this.cfg.control.port !== undefined) {
      const web = this.web;
      const server = await serveControl(
        { ...this.cfg.control, port: this.cfg.control.port, dataDir: this.cfg.dataDir },
        {
          // Fresh chain figures first (read when asked, not on every sample), within a moment:
          // a node that is away must not hold the status up.
          status: async () => {
            const read = this.ops?.chainFigures();
            if (read)
              await Promise.race([read, new Promise((r) => setTimeout(r, STATUS_CHAIN_WAIT_MS).unref())]);
            return this.status();
          },
          sessions: () => [...this.sessions.values()],
          control: (action, body) => this.control(action, body),
          page: (req, res, ctx) => web.handle(req, res, ctx),
        },
      );
      this.controlPort = (server.address() as AddressInfo).port;
      this.servers.push(server);
    }
    if (this.cfg.metrics.port !== undefined) {
      const server = await serveMetrics(this.metrics, this.cfg.metrics.host, this.cfg.metrics.port);
      this.metricsPort = (server.address() as AddressInfo).port;
      this.servers.push(server);
    }
    if (this.cfg.web?.port !== undefined) {
      const server = await serveWeb(this.web.handle, this.cfg.web.host, this.cfg.web.port);
      this.webPort = (server.address() as AddressInfo).port;
      this.servers.push(server);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.retime();
    // Let a batch on its way hear its receipt, within reason: what it misses is journaled.
    await Promise.race([this.role?.stop?.(), new Promise((r) => setTimeout(r, 5000).unref())]);
    for (const s of this.servers) s.close();
    this.web?.close();
    await this.bus?.close().catch(() => {});
    // A message or tick still in hand finishes before the journal closes (its writes would fail).
    await Promise.race([this.exclusive(async () => {}), new Promise((r) => setTimeout(r, 5000).unref())]);
    await this.ops?.stop();
    await this.charger?.close().catch(() => {});
    await this.metering?.close().catch(() => {});
    this.chain?.close();
    this.journal.close();
    this.log.info('agent stopped');
  }
}
