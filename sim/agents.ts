/**
 * Runs agents as their own processes (the real `p2pev run`) and talks to them over their local
 * control ports. Their JSON log lines are parsed so the sim can print session events.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readControlToken } from '../agent/core/http.js';
import { freePort } from './chain.js';
import type { Device } from './world.js';
import { SIM_PASSWORD } from './world.js';

// The package's bin: one level up from sim/, two from the compiled dist/sim/.
const P2PEV = [new URL('../bin/p2pev.mjs', import.meta.url), new URL('../../bin/p2pev.mjs', import.meta.url)]
  .map((u) => fileURLToPath(u))
  .find((path) => existsSync(path))!;

/**
 * The installed unit's environment (its `Environment=` lines: the heap and young-generation sizes,
 * glibc's malloc settings, the compiled code), so the sim's agents run as a device runs them. Read
 * from the unit file itself: beside the sources or the compiled tree, or where the Debian package
 * puts it. For `role` edge, the unit's `# edge: Environment=…` lines too (what an edge's unit gets
 * on top: a server's young generation), over the device's.
 */
export function unitEnvironment(
  path = [
    new URL('../agent/install/p2pev.service', import.meta.url),
    new URL('../../agent/install/p2pev.service', import.meta.url),
  ]
    .map((u) => fileURLToPath(u))
    .concat('/lib/systemd/system/p2pev.service')
    .find((p) => existsSync(p)),
  role?: string,
): Record<string, string> {
  const env: Record<string, string> = {};
  if (!path) return env;
  const lines = readFileSync(path, 'utf8').split('\n');
  const edgeLines = lines.flatMap((l) => /^#\s*edge:\s*(Environment=.*)$/.exec(l.trim())?.[1] ?? []);
  for (const line of role === 'edge' ? [...lines, ...edgeLines] : lines) {
    const m = /^Environment=(.*)$/.exec(line.trim());
    if (!m) continue;
    // systemd's quoting: assignments separated by spaces, each may be wholly in double quotes.
    for (const [, quoted, bare] of m[1]!.matchAll(/"([^"]*)"|(\S+)/g)) {
      const assignment = quoted ?? bare ?? '';
      const eq = assignment.indexOf('=');
      if (eq > 0) env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
    }
  }
  return env;
}

/**
 * What of the unit's environment a sim agent of `role` gets: the memory settings and whether V8's
 * optimizing compilers run (P2PEV_JIT; the code it runs is the caller's choice); an edge's, a
 * server's.
 */
export function unitMemoryEnvironment(role?: string): Record<string, string> {
  return Object.fromEntries(
    Object.entries(unitEnvironment(undefined, role)).filter(
      ([k]) => k === 'NODE_OPTIONS' || k === 'P2PEV_JIT' || k.startsWith('MALLOC_'),
    ),
  );
}

export interface AgentProcess {
  device: Device;
  child: ChildProcess;
  /** Resolves when the process exits. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface LogLine {
  level: number;
  msg: string;
  agent?: string;
  [key: string]: unknown;
}

/**
 * Gives the device a control port that is free right now: ports picked when the world was built
 * may have been taken since by one of the many servers a world starts.
 */
export async function freshControlPort(device: Device): Promise<void> {
  const cfg = JSON.parse(readFileSync(device.configPath, 'utf8'));
  device.controlPort = await freePort();
  cfg.control = { ...cfg.control, port: device.controlPort };
  writeFileSync(device.configPath, `${JSON.stringify(cfg, null, 2)}\n`);
}

export async function spawnAgent(
  device: Device,
  onLog: (line: LogLine, device: Device) => void,
  env: Record<string, string> = {},
  /** Node's own options before the script (`--cpu-prof …`: not allowed in NODE_OPTIONS). */
  nodeArgs: string[] = [],
): Promise<AgentProcess> {
  await freshControlPort(device);
  const child = spawn(process.execPath, [...nodeArgs, P2PEV, 'run', '--config', device.configPath], {
    // The installed unit's memory settings (agent/install/p2pev.service), so the sim measures what a Pi runs.
    env: {
      ...process.env,
      // A device's, for every role: the tests' bounds (a flooded edge's resident set) are a Pi's;
      // bench:edge and the scale run give their edge an edge's (`unitMemoryEnvironment('edge')`).
      ...unitMemoryEnvironment(),
      P2PEV_KEY_PASSWORD: SIM_PASSWORD,
      CI: '1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on('line', (text) => {
      try {
        onLog(JSON.parse(text) as LogLine, device);
      } catch {
        onLog({ level: 50, msg: text }, device);
      }
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  // A process that ended by itself (or was killed from outside) needs no kill at our exit.
  child.once('exit', () => process.off('exit', kill));
  return {
    device,
    child,
    exited,
    async stop(signal = 'SIGTERM') {
      process.off('exit', kill);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** GET /status or POST /<action> on a device's control port. */
export async function control<T = Record<string, unknown>>(
  device: Device,
  action: string,
  body?: unknown,
): Promise<T> {
  const url = `http://127.0.0.1:${device.controlPort}/${action}`;
  const res = await fetch(
    url,
    body === undefined
      ? {}
      : {
          method: 'POST',
          body: JSON.stringify(body),
          // The agent wrote its control token into its data directory at start.
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${readControlToken(device.dataDir)}`,
          },
        },
  ).catch((err: Error & { cause?: { code?: string } }) => {
    throw new Error(
      `${device.name} ${action}: no answer on its control port ${url} (${err.cause?.code ?? err.message}): is the agent still running?`,
    );
  });
  const json = (await res.json()) as T & { error?: string };
  if (!res.ok) throw new Error(`${device.name} ${action}: ${json.error ?? res.status}`);
  return json;
}

/** Waits until the agent answers on its control port (it has connected to chain and broker). */
export async function waitReady(agent: AgentProcess, timeoutMs = 60_000, pollMs = 200): Promise<void> {
  const until = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void agent.exited.then((c) => {
    exitCode = c;
  });
  for (;;) {
    if (exitCode !== undefined)
      throw new Error(`${agent.device.name} exited with code ${exitCode} before it was ready`);
    try {
      await control(agent.device, 'status');
      return;
    } catch {
      if (Date.now() > until)
        throw new Error(
          `${agent.device.name} did not answer on port ${agent.device.controlPort} within ${timeoutMs} ms`,
        );
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }
}
