/**
 * A worker thread of `p2pev sim --evs N --hcs M`. The first one builds the world (anvil, the
 * broker, one simulated meter per device, the simulated cables linking them, all members
 * registered); each runs the EV and HCS agents it is given, in-process, and their share of the
 * sessions. Agents reach their meters over Modbus TCP, so an agent's meter may live in the other
 * thread. The edge runs in the main thread.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';
import { loadConfig } from '../agent/core/config.js';
import { createLogger } from '../agent/core/log.js';
import { Agent } from '../agent/core/runtime.js';
import { buildWorld, SIM_PASSWORD, type World, type WorldOptions } from './world.js';
import { backoffMs } from '../drivers/index.js';

/** A car that found every station busy tries again later, backing off as a driver would. */
const DRIVER_BACKOFF = { baseMs: 250, maxMs: 8000, jitter: 0.5 } as const;

export type ToWorker =
  | { cmd: 'build'; opts: WorldOptions; standalone: string[] }
  | { cmd: 'start'; configPaths: string[] }
  | { cmd: 'run'; sessions: number; targetWh: number; timeoutMs: number }
  | { cmd: 'stats' }
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

let world: World | undefined;
const agents: Agent[] = [];
const port = parentPort!;
const reply = (msg: unknown) => port.postMessage(msg);

async function build(opts: WorldOptions, standalone: string[]) {
  world = await buildWorld(opts);
  return {
    rpcUrl: world.rpcUrl,
    brokerUrl: world.brokerUrl,
    deploymentFile: world.deploymentFile,
    devices: world.devices.map((d) => ({
      name: d.name,
      role: d.role,
      address: d.address,
      configPath: d.configPath,
      controlPort: d.controlPort,
      dataDir: d.dataDir,
      standalone: standalone.includes(d.name),
    })),
  };
}

/** Starts the agents of these configs in this thread (their meters, broker and node may be elsewhere). */
async function start(configPaths: string[]) {
  const log = createLogger({ level: 'error', pretty: false });
  for (const configPath of configPaths) {
    const cfg = loadConfig(configPath);
    // In-process agents need no control port (and hundreds of them would race for free ports).
    cfg.control.port = undefined;
    agents.push(await Agent.start(cfg, { password: SIM_PASSWORD, log: log.child({ agent: cfg.name }) }));
  }
}

/** This thread's event-loop utilisation at the start of the run (to tell how busy it was). */
let runElu: ReturnType<typeof performance.eventLoopUtilization> | undefined;

/** How long the EVs' sessions spent in each state (ms), to see where a session's time goes. */
const phases = new Map<string, number[]>();

function timePhases(ev: Agent): void {
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
    }
    return moved;
  };
}

/** `sessions` charges spread over the EVs, each EV charging again as soon as its last one settled. */
async function run(sessions: number, targetWh: number, timeoutMs: number): Promise<SessionResult[]> {
  const evs = agents.filter((a) => a.cfg.role === 'ev');
  for (const ev of evs) timePhases(ev);
  runElu = performance.eventLoopUtilization();
  /** Sessions a station took (they have a txid), by txid. */
  const counted = new Map<string, { ev: Agent; requestedAt: number }>();
  /** Why the cars that found no station found none, and how often. */
  const missReasons = new Map<string, number>();
  const until = Date.now() + timeoutMs;
  const recordOf = (txid: string) =>
    [...counted.get(txid)!.ev.sessions.values()].find((x) => x.txid === txid);
  const ended = () =>
    [...counted.keys()].filter((t) => ['done', 'failed'].includes(recordOf(t)?.state ?? '')).length;
  const progress = setInterval(
    () =>
      port.postMessage({
        progress: ended(),
        started: counted.size,
        why: Object.fromEntries(missReasons),
      }),
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
        const { id } = (await ev.control('charge', { targetWh })) as { id: string };
        let mine: string | undefined;
        for (;;) {
          const s = ev.sessions.get(id);
          // Count a session once a station took it (it charged: however short, it has a txid and
          // an end): a car that found every station busy drives on.
          if (s?.txid && (s.state === 'charging' || s.endedAt) && !mine && counted.size < sessions) {
            mine = s.txid;
            counted.set(mine, { ev, requestedAt });
          }
          if (!s || s.state === 'done' || s.state === 'failed' || Date.now() >= until) break;
          await new Promise((res) => setTimeout(res, 200));
        }
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
  return [...counted].map(([txid, { ev, requestedAt }]) => {
    const s = recordOf(txid);
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

function stats() {
  const bus = { sent: 0, sentBytes: 0, received: 0, dropped: 0 };
  for (const a of agents) for (const k of Object.keys(bus) as (keyof typeof bus)[]) bus[k] += a.bus.stats[k];
  return {
    bus,
    agents: agents.length,
    heapMb: process.memoryUsage().heapUsed / 2 ** 20,
    phases: Object.fromEntries(phases),
    busy: runElu ? performance.eventLoopUtilization(runElu).utilization : Number.NaN,
  };
}

/** Starts V8's CPU profiler on this thread; the function returned writes the profile to a dir. */
async function profile(): Promise<(dir: string) => Promise<void>> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async (dir) => {
    const { profile } = await session.post('Profiler.stop');
    const file = join(dir, `scale-worker-${Date.now()}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

port.on('message', async (msg: ToWorker) => {
  try {
    switch (msg.cmd) {
      case 'build':
        return reply({ ok: true, value: await build(msg.opts, msg.standalone) });
      case 'start':
        await start(msg.configPaths);
        return reply({ ok: true });
      case 'run': {
        // P2PEV_SCALE_PROFILE=<dir>: a CPU profile of this thread over the run (not the build).
        const stopProfile = process.env.P2PEV_SCALE_PROFILE ? await profile() : undefined;
        const value = await run(msg.sessions, msg.targetWh, msg.timeoutMs);
        await stopProfile?.(process.env.P2PEV_SCALE_PROFILE!);
        return reply({ ok: true, value });
      }
      case 'stats':
        return reply({ ok: true, value: stats() });
      case 'stop':
        for (const a of agents) await a.stop().catch(() => {});
        await world?.close();
        return reply({ ok: true });
    }
  } catch (err) {
    reply({ ok: false, error: (err as Error).stack ?? String(err) });
  }
});
