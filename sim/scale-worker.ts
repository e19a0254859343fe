/**
 * The worker thread of `p2pev sim --evs N --hcs M`: it builds the world (anvil, the broker, one
 * simulated meter per device, all members registered) and runs every EV and HCS agent in-process,
 * so that the simulated cables can link their meters. The edge runs in the main thread: the two
 * threads share the signature work on two cores.
 */
import { parentPort } from 'node:worker_threads';
import { loadConfig } from '../agent/config.js';
import { createLogger } from '../agent/log.js';
import { Agent } from '../agent/runtime.js';
import { buildWorld, SIM_PASSWORD, type World, type WorldOptions } from './world.js';

export type ToWorker =
  | { cmd: 'build'; opts: WorldOptions; standalone: string[] }
  | { cmd: 'start' }
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

async function start(standalone: Set<string>) {
  const log = createLogger({ level: 'error', pretty: false });
  for (const d of world!.devices) {
    if (d.role === 'edge' || standalone.has(d.name)) continue;
    const cfg = loadConfig(d.configPath);
    // In-process agents need no control port (and hundreds of them would race for free ports).
    cfg.control.port = undefined;
    agents.push(await Agent.start(cfg, { password: SIM_PASSWORD, log: log.child({ agent: d.name }) }));
  }
}

/** `sessions` charges spread over the EVs, each EV charging again as soon as its last one settled. */
async function run(sessions: number, targetWh: number, timeoutMs: number): Promise<SessionResult[]> {
  const evs = agents.filter((a) => a.cfg.role === 'ev');
  const results: SessionResult[] = [];
  let started = 0;
  let busyRetries = 0;
  const until = Date.now() + timeoutMs;
  const progress = setInterval(
    () => port.postMessage({ progress: results.filter((r) => r.doneAt).length, started, busyRetries }),
    1000,
  );
  await Promise.all(
    evs.map(async (ev) => {
      while (started < sessions && Date.now() < until) {
        const requestedAt = Date.now();
        const { id } = (await ev.control('charge', { targetWh })) as { id: string };
        let s = ev.sessions.get(id);
        while (s && s.state !== 'done' && s.state !== 'failed' && Date.now() < until) {
          // Count a session once a station took it: a car that found every station busy drives on.
          if (s.txid && !results.some((r) => r.txid === s!.txid)) {
            if (started >= sessions) break;
            started++;
            results.push({ ev: ev.cfg.name, ok: false, txid: s.txid, requestedAt });
          }
          await new Promise((res) => setTimeout(res, 50));
          s = ev.sessions.get(id);
        }
        const r = results.find((x) => x.txid && x.txid === s?.txid);
        if (!r) {
          busyRetries++;
          await new Promise((res) => setTimeout(res, 200 + Math.random() * 800));
          continue;
        }
        Object.assign(r, {
          ok: s?.state === 'done',
          endedAt: s?.endedAt,
          doneAt: s?.updatedAt,
          ...(s?.error ? { error: s.error } : {}),
        });
        if (s?.state !== 'done' && s?.state !== 'failed') r.error = `still ${s?.state} at the deadline`;
      }
    }),
  );
  clearInterval(progress);
  return results;
}

function stats() {
  const bus = { sent: 0, sentBytes: 0, received: 0, dropped: 0 };
  for (const a of agents) for (const k of Object.keys(bus) as (keyof typeof bus)[]) bus[k] += a.bus.stats[k];
  return { bus, agents: agents.length, heapMb: process.memoryUsage().heapUsed / 2 ** 20 };
}

let standaloneNames = new Set<string>();
port.on('message', async (msg: ToWorker) => {
  try {
    switch (msg.cmd) {
      case 'build':
        standaloneNames = new Set(msg.standalone);
        return reply({ ok: true, value: await build(msg.opts, msg.standalone) });
      case 'start':
        await start(standaloneNames);
        return reply({ ok: true });
      case 'run':
        return reply({ ok: true, value: await run(msg.sessions, msg.targetWh, msg.timeoutMs) });
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
