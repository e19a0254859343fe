/**
 * A worker process of `p2pev sim --evs N --hcs M` (forked by sim/scale.ts, commands over the IPC
 * channel): it runs the agents it is given in-process (the EVs, the stations, or the edge), and in
 * an EV worker its share of the sessions. The world (anvil, the broker, the simulated meters and
 * the cables linking them) lives elsewhere: agents reach their meters over Modbus TCP, the broker
 * and the chain over their sockets. One process per kind of agent, so that the run can say what
 * each kind costs in CPU.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { loadConfig } from '../agent/core/config.js';
import { createLogger } from '../agent/core/log.js';
import { Agent } from '../agent/core/runtime.js';
import type { SessionRecord } from '../agent/core/session.js';
import { SIM_PASSWORD } from './world.js';
import { backoffMs } from '../drivers/index.js';

/** A car that found every station busy tries again later, backing off as a driver would. */
const DRIVER_BACKOFF = { baseMs: 250, maxMs: 8000, jitter: 0.5 } as const;

export type ToWorker =
  | { cmd: 'start'; configPaths: string[] }
  | { cmd: 'mark' }
  | { cmd: 'run'; sessions: number; targetWh: number; timeoutMs: number }
  | { cmd: 'stats' }
  | { cmd: 'peek' }
  | { cmd: 'stop' };

export interface SessionResult {
  ev: string;
  ok: boolean;
  txid?: string;
  requestedAt: number;
  endedAt?: number;
  doneAt?: number;
  /** When the EV learned its bill was on chain (before its rating). */
  settledAt?: number;
  error?: string;
}

export interface WorkerStats {
  bus: { sent: number; sentBytes: number; received: number; dropped: number };
  /** Messages sent by the agents here, by type (their metrics' counters). */
  sentByType: Record<string, number>;
  /** Envelopes resent for want of an ack, and acks received (agent/core/outbox.ts). */
  outbox: { resent: number; acked: number };
  agents: number;
  heapMb: number;
  rssMb: number;
  phases: Record<string, number[]>;
  /** Event-loop utilisation since `mark`. */
  busy: number;
  /** Promise rejections nothing handled (logged and survived, as `p2pev run` does), and the first's message. */
  unhandled: { count: number; first?: string };
}

const agents: Agent[] = [];
/** Agents started at once. */
const START_AT_ONCE = 25;
/** Tries to start an agent, and the pause before the next (times the attempt), as systemd's RestartSec. */
const START_ATTEMPTS = 5;
const RESTART_DELAY_MS = 2000;
/** Agents whose start failed and was tried again. */
let restarts = 0;

/** Starts the agents of these configs in this process (their meters, broker and node are elsewhere). */
async function start(configPaths: string[]) {
  const log = createLogger({ level: 'error', pretty: false });
  const startOne = async (configPath: string) => {
    const cfg = loadConfig(configPath);
    // In-process agents need no control port (and hundreds of them would race for free ports).
    cfg.control.port = undefined;
    // An agent whose start fails (its meter slow to answer while thousands start at once) is
    // started again, as systemd restarts a device's (Restart=always); without this one such
    // agent ended the whole 6,000-agent run before its first session.
    for (let attempt = 1; ; attempt++) {
      try {
        agents.push(await Agent.start(cfg, { password: SIM_PASSWORD, log: log.child({ agent: cfg.name }) }));
        return;
      } catch (err) {
        if (attempt >= START_ATTEMPTS) throw err;
        restarts++;
        await new Promise((res) => setTimeout(res, RESTART_DELAY_MS * attempt));
      }
    }
  };
  // A few dozen at a time: each start waits mostly on the chain node and the broker.
  for (let i = 0; i < configPaths.length; i += START_AT_ONCE)
    await Promise.all(configPaths.slice(i, i + START_AT_ONCE).map(startOne));
}

/** This process's event-loop utilisation at the start of the run (to tell how busy it was). */
let runElu: ReturnType<typeof performance.eventLoopUtilization> | undefined;
let stopProfile: ((dir: string) => Promise<void>) | undefined;

/** How long the EVs' sessions spent in each state (ms), to see where a session's time goes. */
const phases = new Map<string, number[]>();

/** Called after each move of a session, by session id (the run waits on them instead of polling). */
const watchers = new Map<string, (s: SessionRecord) => void>();

/** Times each EV state, and tells the run of each move. */
function watchMoves(ev: Agent): void {
  const entered = new Map<string, number>();
  const move = ev.move.bind(ev);
  ev.move = (s, to, patch) => {
    const from = s.state;
    const moved = move(s, to, patch);
    if (moved) {
      const now = Date.now();
      const since = entered.get(s.id) ?? s.createdAt;
      if (!phases.has(from)) phases.set(from, []);
      phases.get(from)!.push(now - since);
      if (to === 'done' || to === 'failed') entered.delete(s.id);
      else entered.set(s.id, now);
      watchers.get(s.id)?.(s);
    }
    return moved;
  };
}

/** `sessions` charges spread over the EVs, each EV charging again as soon as its last one settled. */
async function run(sessions: number, targetWh: number, timeoutMs: number): Promise<SessionResult[]> {
  const evs = agents.filter((a) => a.cfg.role === 'ev');
  for (const ev of evs) watchMoves(ev);
  /** Sessions a station took (they have a txid), by txid, with the record that holds it. */
  const counted = new Map<string, { ev: Agent; id: string; requestedAt: number }>();
  /** Why the cars that found no station found none, and how often. */
  const missReasons = new Map<string, number>();
  let ended = 0;
  const until = Date.now() + timeoutMs;
  const progress = setInterval(
    () => process.send?.({ progress: ended, started: counted.size, why: Object.fromEntries(missReasons) }),
    1000,
  );
  // Cars arrive over a ramp, not all in the same millisecond (which no real fleet does, and which
  // only measures how a thundering herd queues at the edge).
  const rampMs = Math.min(30_000, evs.length * 10);
  await Promise.all(
    evs.map(async (ev) => {
      await new Promise((res) => setTimeout(res, Math.random() * rampMs));
      let misses = 0;
      while (counted.size < sessions && Date.now() < until) {
        const requestedAt = Date.now();
        let id: string;
        try {
          ({ id } = (await ev.control('charge', { targetWh })) as { id: string });
        } catch (err) {
          // Refused before it began (the car's meter did not answer in time): the driver tries again.
          const why = (err as Error).message;
          missReasons.set(why, (missReasons.get(why) ?? 0) + 1);
          await new Promise((res) => setTimeout(res, backoffMs(++misses, DRIVER_BACKOFF)));
          continue;
        }
        let mine: string | undefined;
        // Count a session once a station took it (it charged: however short, it has a txid and an
        // end): a car that found every station busy drives on.
        const take = (s: SessionRecord) => {
          if (s.txid && (s.state === 'charging' || s.endedAt) && !mine && counted.size < sessions) {
            mine = s.txid;
            counted.set(mine, { ev, id, requestedAt });
          }
        };
        const first = ev.sessions.get(id);
        if (first && !['done', 'failed'].includes(first.state))
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.max(0, until - Date.now()));
            watchers.set(id, (s) => {
              take(s);
              if (s.state === 'done' || s.state === 'failed') {
                clearTimeout(timer);
                resolve();
              }
            });
          });
        watchers.delete(id);
        const last = ev.sessions.get(id);
        if (last) take(last);
        if (mine) ended++;
        if (!mine) {
          if (counted.size >= sessions) break; // the plan is full: this car's charge is not counted
          const why = ev.sessions.get(id)?.error ?? 'unknown';
          missReasons.set(why, (missReasons.get(why) ?? 0) + 1);
          // Every station busy: try again later, backing off (with jitter) as a driver would.
          misses++;
          await new Promise((res) => setTimeout(res, backoffMs(misses, DRIVER_BACKOFF)));
        } else misses = 0;
      }
    }),
  );
  clearInterval(progress);
  return [...counted].map(([txid, { ev, id, requestedAt }]) => {
    // The record by its id; a pruned one (the EV keeps its last 200) by its txid.
    const s = ev.sessions.get(id) ?? [...ev.sessions.values()].find((x) => x.txid === txid);
    return {
      ev: ev.cfg.name,
      ok: s?.state === 'done',
      txid,
      requestedAt,
      ...(s?.endedAt ? { endedAt: s.endedAt } : {}),
      ...(s?.settledAt ? { settledAt: s.settledAt } : {}),
      ...(s && (s.state === 'done' || s.state === 'failed') ? { doneAt: s.updatedAt } : {}),
      ...(s?.state !== 'done' ? { error: s?.error ?? `still ${s?.state ?? 'unknown'} at the deadline` } : {}),
    };
  });
}

/** What the agents here are doing now: open sessions by state, messages queued and dropped (by reason), the edge's bills. */
function peek(): Record<string, unknown> {
  const states: Record<string, number> = {};
  const droppedBy: Record<string, number> = {};
  let queued = 0;
  for (const a of agents) {
    for (const s of a.openSessions()) states[s.state] = (states[s.state] ?? 0) + 1;
    for (const [r, n] of Object.entries(a.bus.droppedBy)) droppedBy[r] = (droppedBy[r] ?? 0) + (n ?? 0);
    queued += a.bus.queued;
  }
  const edge = agents.find((a) => a.cfg.role === 'edge');
  return {
    states,
    droppedBy,
    queued,
    ...(unhandled.count ? { unhandled } : {}),
    ...(restarts ? { restarts } : {}),
    ...(edge ? (edge.role.status() as Record<string, unknown>) : {}),
  };
}

async function stats(): Promise<WorkerStats> {
  const bus = { sent: 0, sentBytes: 0, received: 0, dropped: 0 };
  const sentByType: Record<string, number> = {};
  const outbox = { resent: 0, acked: 0 };
  for (const a of agents) {
    outbox.resent += a.outbox.figures.resent;
    outbox.acked += a.outbox.figures.acked;
    for (const k of Object.keys(bus) as (keyof typeof bus)[]) bus[k] += a.bus.stats[k];
    for (const { labels, value } of (await a.metrics.messagesOut.get()).values)
      sentByType[String(labels.type)] = (sentByType[String(labels.type)] ?? 0) + value;
  }
  const mem = process.memoryUsage();
  return {
    bus,
    sentByType,
    outbox,
    agents: agents.length,
    heapMb: mem.heapUsed / 2 ** 20,
    rssMb: mem.rss / 2 ** 20,
    phases: Object.fromEntries(phases),
    busy: runElu ? performance.eventLoopUtilization(runElu).utilization : Number.NaN,
    unhandled,
  };
}

/** Starts V8's CPU profiler in this process; the function returned writes the profile to a dir. */
async function profile(): Promise<(dir: string) => Promise<void>> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async (dir) => {
    const { profile } = await session.post('Profiler.stop');
    const kind = agents.every((a) => a.cfg.role === agents[0]?.cfg.role) ? agents[0]?.cfg.role : 'mixed';
    const file = join(dir, `scale-${kind}-${process.pid}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

/**
 * A rejection nothing handled: `p2pev run` logs it and carries on (agent/commands.ts: ethers' HTTP
 * layer can leave a request's promise unawaited when the node is slow or away), so the agents here,
 * which share one process, do the same, and the run counts them. Without this one such rejection
 * (an ethers `request timeout` under the 6,000-agent world) ended the station worker and all its
 * agents with it, which no device would have done.
 */
const unhandled: WorkerStats['unhandled'] = { count: 0 };
process.on('unhandledRejection', (reason) => {
  unhandled.count++;
  unhandled.first ??= reason instanceof Error ? reason.message : String(reason);
});

// The edge keeps V8's optimizing compiler, as `p2pev run` gives it; so do the simulated fleets
// (hundreds of agents in one process run the same code hot).
setFlagsFromString('--turbofan');

process.on('message', async ({ id, ...msg }: ToWorker & { id: number }) => {
  // Replies carry the request's id: a quick question (peek) may be answered before a long one (run).
  const reply = (m: Record<string, unknown>) => process.send?.({ id, ...m });
  try {
    switch (msg.cmd) {
      case 'start':
        await start(msg.configPaths);
        return reply({ ok: true });
      case 'mark':
        // The run starts: busy share and (P2PEV_SCALE_PROFILE=<dir>) a CPU profile from here.
        runElu = performance.eventLoopUtilization();
        if (process.env.P2PEV_SCALE_PROFILE) stopProfile = await profile();
        return reply({ ok: true });
      case 'run':
        return reply({ ok: true, value: await run(msg.sessions, msg.targetWh, msg.timeoutMs) });
      case 'peek':
        return reply({ ok: true, value: peek() });
      case 'stats': {
        const value = await stats();
        await stopProfile?.(process.env.P2PEV_SCALE_PROFILE!);
        stopProfile = undefined;
        return reply({ ok: true, value });
      }
      case 'stop':
        await Promise.all(agents.map((a) => a.stop().catch(() => {})));
        reply({ ok: true });
        return setTimeout(() => process.exit(0), 50);
    }
  } catch (err) {
    reply({ ok: false, error: (err as Error).stack ?? String(err) });
  }
});
// The parent gone (killed, crashed): nothing left to serve.
process.on('disconnect', () => process.exit(0));
process.send?.({ ready: true });
