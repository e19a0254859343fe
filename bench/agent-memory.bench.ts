/**
 * `npm run bench:memory` — the resident memory of one agent process, as `p2pev sim` runs it: the
 * default world (anvil, the embedded broker, 2 HCSs, 2 EVs, an edge, simulated Modbus TCP meters),
 * every agent the real `p2pev run` in its own process with the installed unit's NODE_OPTIONS.
 * For each way of running (TypeScript through tsx; the compiled JavaScript of `npm run build`,
 * P2PEV_DIST=1) the agents start, each EV charges once (settled and rated), and each process's
 * /proc/<pid>/status is read: VmHWM (peak) once ready and at the end, VmRSS, RssAnon and RssFile.
 * EV1 charges at HCS1, the station behind a simulated OCPP 1.6J wallbox (the OCPP central system,
 * its WebSocket server and strict validation loaded, a transaction running), EV2 at HCS2 behind a
 * simulated Modbus TCP wallbox. Prints a table, then one JSON object as the last line: per agent,
 * and per role (`byRole`: ev, hcs-ocpp, hcs-modbus, edge; the highest peak and the slowest start)
 * against the device goal (≤ 64 MB, ready ≤ 1.5 s). Figures only: nothing here asserts.
 *
 * Last, one HCS runs (compiled) with its keystore encrypted at a device's scrypt cost instead of
 * the sim's light one, for the start-up peak a real device sees (BENCH_DEVICE_KEYSTORE=0 skips it).
 *
 * BENCH_VARIANTS=tsx,compiled picks the ways of running; BENCH_NODE_OPTIONS replaces the unit's
 * NODE_OPTIONS (to try V8 flags).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKeystore, openKeystore } from '../agent/core/keys.js';
import type { SessionRecord } from '../agent/core/session.js';
import { type AgentProcess, control, type LogLine, spawnAgent, waitReady } from '../sim/agents.js';
import { EVS, STATIONS } from '../sim/experiment.js';
import { buildWorld, type Device, SIM_PASSWORD } from '../sim/world.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const VARIANTS: Record<string, Record<string, string>> = {
  tsx: {},
  compiled: { P2PEV_DIST: '1' },
};
const picked = (process.env.BENCH_VARIANTS ?? 'tsx,compiled').split(',').filter((v) => v in VARIANTS);

interface Sample {
  /** Peak resident set once the agent answers on its control port (start-up), MB. */
  readyHwm: number;
  /** Peak resident set over the whole run, MB. */
  hwm: number;
  /** Resident set at the end, and its anonymous (heap, code space) and file-backed parts, MB. */
  rss: number;
  anon: number;
  file: number;
  /** CPU time (user + system) the process has used, seconds: start-up and one charge. */
  cpuS: number;
  /** From spawning the process to its first answer on the control port, ms. */
  readyMs: number;
  /** CPU time the process had used by then, ms (what the start costs, whatever else runs). */
  readyCpuMs: number;
}

function status(pid: number): Sample {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(text)?.[1]) / 1024;
  // /proc/<pid>/stat: utime and stime are fields 14 and 15, in clock ticks (100 a second on Linux).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuS = (Number(fields[11]) + Number(fields[12])) / 100;
  return {
    readyHwm: 0,
    hwm: mb('VmHWM'),
    rss: mb('VmRSS'),
    anon: mb('RssAnon'),
    file: mb('RssFile'),
    cpuS,
    readyMs: 0,
    readyCpuMs: 0,
  };
}

/** Spawns an agent and waits until it answers on its control port; how long that took (ms). */
async function startTimed(
  d: Device,
  env: Record<string, string>,
  timeoutMs?: number,
): Promise<{ agent: AgentProcess; readyMs: number; readyCpuMs: number }> {
  const t0 = performance.now();
  const agent = await spawnAgent(d, onLog, env);
  await waitReady(agent, timeoutMs, 10);
  const readyMs = Math.round(performance.now() - t0);
  return { agent, readyMs, readyCpuMs: Math.round(status(agent.child.pid!).cpuS * 1000) };
}

/** The device goal of issue 16: peak resident memory and time to ready of one EV or HCS agent. */
const GOAL = { peakMb: 64, readyMs: 1500 };

/** What a device is, for the per-role figures: a station by the charger it drives. */
function roleOf(d: Device): string {
  if (d.role !== 'hcs') return d.role;
  return d.chargePoint ? 'hcs-ocpp' : d.wallbox ? 'hcs-modbus' : 'hcs';
}

/**
 * Charges once at the station given (by address), until the session is settled and rated. A
 * station whose meter has not answered its first read yet says busy; then the car asks again.
 */
async function chargeOnce(ev: AgentProcess, targetWh: number, hcs: Device, tries = 5): Promise<void> {
  const { id } = await control<{ id: string }>(ev.device, 'charge', {
    targetWh,
    rating: 5,
    comment: 'ok',
    hcs: hcs.address,
  });
  const until = Date.now() + 180_000;
  for (;;) {
    const s = (await control<SessionRecord[]>(ev.device, 'sessions')).find((x) => x.id === id);
    if (s?.state === 'done') {
      if (s.hcs?.toLowerCase() !== hcs.address.toLowerCase())
        throw new Error(`${ev.device.name} charged at ${s.hcs}, not at ${hcs.name}`);
      return;
    }
    if (s?.state === 'failed' && s.error === 'no station accepted' && tries > 1) {
      await new Promise((r) => setTimeout(r, 1000));
      return chargeOnce(ev, targetWh, hcs, tries - 1);
    }
    if (s?.state === 'failed') throw new Error(`${ev.device.name}: session failed: ${s.error}`);
    if (Date.now() > until) throw new Error(`${ev.device.name}: session not done (${s?.state})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Errors and warnings of the agents go to stderr; the rest of their log is dropped. */
const onLog = (line: LogLine, d: Device) => {
  if (line.level >= 40)
    process.stderr.write(`${d.name} ${line.msg}${line.err ? `: ${JSON.stringify(line.err)}` : ''}\n`);
};

const r1 = (x: number) => Math.round(x * 10) / 10;

/** Per role, the highest peak and the slowest start of its agents, and whether the goal holds. */
function byRole(byAgent: Record<string, Sample>): Record<string, unknown> {
  const out: Record<string, { peakMb: number; readyMs: number; goalMet?: boolean }> = {};
  for (const [name, s] of Object.entries(byAgent)) {
    const role = roleOf(deviceByName.get(name)!);
    const r = out[role] ?? { peakMb: 0, readyMs: 0 };
    out[role] = { peakMb: Math.max(r.peakMb, r1(s.hwm)), readyMs: Math.max(r.readyMs, s.readyMs) };
  }
  for (const [role, r] of Object.entries(out))
    if (role !== 'edge') r.goalMet = r.peakMb <= GOAL.peakMb && r.readyMs <= GOAL.readyMs;
  return out;
}
const deviceByName = new Map<string, Device>();

async function main(): Promise<void> {
  if (picked.includes('compiled') && !existsSync(join(root, 'dist/agent/cli.js'))) {
    process.stdout.write('building dist/ (npm run build)\n');
    execFileSync(process.execPath, [join(root, '.ci/build.mjs')], { stdio: 'inherit' });
  }
  const dir = mkdtempSync(join(tmpdir(), 'p2pev-mem-'));
  const world = await buildWorld({
    dir,
    stations: STATIONS,
    evs: EVS,
    edge: true,
    meters: 'tcp',
    timeScale: 300,
    fundEther: '100',
    depositEther: '10',
  });
  for (const d of world.devices) deviceByName.set(d.name, d);
  const results: Record<string, Record<string, Sample>> = {};
  let deviceKeystore: (Sample & { name: string }) | undefined;
  try {
    for (const variant of picked) {
      const env: Record<string, string> = { ...VARIANTS[variant] };
      if (process.env.BENCH_NODE_OPTIONS !== undefined) env.NODE_OPTIONS = process.env.BENCH_NODE_OPTIONS;
      const agents: AgentProcess[] = [];
      try {
        const readyMs = new Map<string, { readyMs: number; readyCpuMs: number }>();
        for (const role of ['edge', 'hcs', 'ev'] as const) {
          // One at a time: each start's time is its own, not shared with a sibling's.
          for (const d of world.devices.filter((x) => x.role === role)) {
            const { agent, ...times } = await startTimed(d, env);
            agents.push(agent);
            readyMs.set(d.name, times);
          }
        }
        const ready = new Map(agents.map((a) => [a.device.name, status(a.child.pid!).hwm]));
        // Each EV at its own station: EV1 at HCS1 (OCPP), EV2 at HCS2 (Modbus), both at once.
        const stations = world.devices.filter((d) => d.role === 'hcs');
        await Promise.all(
          agents
            .filter((a) => a.device.role === 'ev')
            .map((a, i) => chargeOnce(a, 3000, stations[i % stations.length]!)),
        );
        const ocpp = stations.find((d) => d.chargePoint);
        if (ocpp && !ocpp.chargePoint!.log.includes('→ StartTransaction'))
          throw new Error(`${ocpp.name}: the OCPP wallbox ran no transaction`);
        results[variant] = Object.fromEntries(
          agents.map((a) => [
            a.device.name,
            {
              ...status(a.child.pid!),
              readyHwm: ready.get(a.device.name)!,
              ...readyMs.get(a.device.name)!,
            },
          ]),
        );
      } finally {
        await Promise.all(agents.map((a) => a.stop()));
      }
    }
    // The sim's keystores use a light scrypt (N = 2^10, 1 MB); a device's has the default
    // N = 2^17, whose 128 MB of working memory every start passes through. One HCS, compiled,
    // with its keystore encrypted again at the default cost: its start-up peak.
    if (picked.includes('compiled') && process.env.BENCH_DEVICE_KEYSTORE !== '0') {
      const hcs = world.devices.find((d) => d.role === 'hcs')!;
      const keystore = join(hcs.dataDir, 'key.json');
      const light = readFileSync(keystore, 'utf8');
      const key = await openKeystore(keystore, SIM_PASSWORD);
      rmSync(keystore);
      await createKeystore(keystore, SIM_PASSWORD, { privateKey: key.privateKey });
      const env: Record<string, string> = { ...VARIANTS.compiled };
      if (process.env.BENCH_NODE_OPTIONS !== undefined) env.NODE_OPTIONS = process.env.BENCH_NODE_OPTIONS;
      const { agent, ...times } = await startTimed(hcs, env, 180_000);
      try {
        deviceKeystore = { name: hcs.name, ...status(agent.child.pid!), ...times };
      } finally {
        await agent.stop();
        rmSync(keystore);
        writeFileSync(keystore, light, { mode: 0o600 });
      }
    }
  } finally {
    await world.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const out = (l: string) => process.stdout.write(`${l}\n`);
  out('');
  out('Peak resident memory of each `p2pev run` process (MB), one charge per EV:');
  out('variant   agent  ready peak  peak   rss now  anon   file   cpu s  ready ms  ready cpu ms');
  for (const [variant, byAgent] of Object.entries(results))
    for (const [name, s] of Object.entries(byAgent))
      out(
        `${variant.padEnd(9)} ${name.padEnd(6)} ${r1(s.readyHwm).toFixed(1).padStart(10)} ${r1(s.hwm).toFixed(1).padStart(6)} ${r1(s.rss).toFixed(1).padStart(8)} ${r1(s.anon).toFixed(1).padStart(6)} ${r1(s.file).toFixed(1).padStart(6)} ${s.cpuS.toFixed(2).padStart(7)} ${String(s.readyMs).padStart(9)} ${String(s.readyCpuMs).padStart(13)}`,
      );
  const figures: Record<string, unknown> = {
    goal: GOAL,
    nodeOptions:
      process.env.BENCH_NODE_OPTIONS ??
      '--max-old-space-size=192 --max-semi-space-size=1 (MALLOC_ARENA_MAX=2, fixed mmap threshold)',
  };
  for (const [variant, byAgent] of Object.entries(results)) {
    const peaks = Object.values(byAgent).map((s) => s.hwm);
    figures[variant] = {
      peakMinMb: r1(Math.min(...peaks)),
      peakMaxMb: r1(Math.max(...peaks)),
      peakMb: Object.fromEntries(Object.entries(byAgent).map(([n, s]) => [n, r1(s.hwm)])),
      readyPeakMb: Object.fromEntries(Object.entries(byAgent).map(([n, s]) => [n, r1(s.readyHwm)])),
      rssMb: Object.fromEntries(Object.entries(byAgent).map(([n, s]) => [n, r1(s.rss)])),
      cpuS: Object.fromEntries(Object.entries(byAgent).map(([n, s]) => [n, s.cpuS])),
      readyMs: Object.fromEntries(Object.entries(byAgent).map(([n, s]) => [n, s.readyMs])),
      readyCpuMs: Object.fromEntries(Object.entries(byAgent).map(([n, s]) => [n, s.readyCpuMs])),
      byRole: byRole(byAgent),
    };
  }
  if (deviceKeystore) {
    out(
      `compiled, ${deviceKeystore.name} with a device keystore (scrypt N = 2^17): start-up peak ${r1(deviceKeystore.hwm).toFixed(1)} MB, then ${r1(deviceKeystore.rss).toFixed(1)} MB; ready in ${deviceKeystore.readyMs} ms (${deviceKeystore.readyCpuMs} ms of its own CPU; the keystore opener's is apart)`,
    );
    figures.deviceKeystore = {
      agent: `${deviceKeystore.name} (${roleOf(deviceByName.get(deviceKeystore.name)!)})`,
      peakMb: r1(deviceKeystore.hwm),
      rssMb: r1(deviceKeystore.rss),
      readyMs: deviceKeystore.readyMs,
      readyCpuMs: deviceKeystore.readyCpuMs,
    };
  }
  out(JSON.stringify(figures));
}

await main();
