/** Shared setup for the agent tests: a world (sim/world.ts) and in-process agents. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEther } from 'ethers';
import { loadConfig } from '../../agent/core/config.js';
import { createLogger } from '../../agent/core/log.js';
import { Agent } from '../../agent/core/runtime.js';
import { type MosquittoBroker, startMosquitto } from '../../sim/broker.js';
import { buildWorld, type Device, SIM_PASSWORD, type World, type WorldOptions } from '../../sim/world.js';

export const PRICE = parseEther('0.0003'); // wei per kWh

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `p2pev-${prefix}-`));
}

export async function smallWorld(opts: Partial<WorldOptions> & { edge: boolean }): Promise<World> {
  return buildWorld({
    dir: tempDir('world'),
    stations: [
      {
        name: 'HCS1',
        latitude: 52.52,
        longitude: 13.405,
        priceWeiPerKWh: PRICE,
        powerKw: 11,
        profile: 'sdm630',
      },
    ],
    evs: [{ name: 'EV1', latitude: 52.521, longitude: 13.41, profile: 'sdm120' }],
    timeScale: 200,
    overrides: { timeouts: { replyMs: 5000, reportMs: 5000, chargeIdleMs: 20000, settleFallbackMs: 30000 } },
    ...opts,
  });
}

/**
 * Starts the device's agent in this process. Its control port is whatever the OS gave it (the
 * config says 0, so no port is picked and released before the agent binds it); the port it got
 * is then written into the device and its config, where `p2pev status` and `doctor` look.
 */
export async function startAgent(d: Device, level = process.env.P2PEV_TEST_LOG ?? 'warn'): Promise<Agent> {
  writeControlPort(d, 0);
  const agent = await Agent.start(loadConfig(d.configPath), {
    password: SIM_PASSWORD,
    log: createLogger({ level, name: d.name, pretty: false }),
  });
  if (agent.controlPort !== undefined) writeControlPort(d, agent.controlPort);
  return agent;
}

function writeControlPort(d: Device, port: number): void {
  const cfg = JSON.parse(readFileSync(d.configPath, 'utf8'));
  cfg.control = { ...cfg.control, port };
  writeFileSync(d.configPath, `${JSON.stringify(cfg, null, 2)}\n`);
  d.controlPort = port;
}

export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const device = (w: World, name: string): Device => w.devices.find((d) => d.name === name)!;

/** Waits until an agent's session `id` is done (settled); a failed session fails the wait. */
export function sessionDone(agent: Agent, id: string, timeoutMs = 60_000) {
  return waitFor(
    'EV session done',
    () => {
      const s = agent.sessions.get(id);
      if (s?.state === 'failed') throw new Error(`session failed: ${s.error}`);
      return s?.state === 'done' ? s : undefined;
    },
    timeoutMs,
  );
}

/** A small world on Debian's mosquitto with every device's agent started in this process. */
export interface MosquittoWorld {
  broker: MosquittoBroker;
  world: World;
  /** By device name; a test that restarts an agent puts the new one here, so `close` stops it. */
  agents: Map<string, Agent>;
  close(): Promise<void>;
}

export async function mosquittoWorld(timeouts: Record<string, number>): Promise<MosquittoWorld> {
  const broker = await startMosquitto();
  const world = await smallWorld({ edge: true, broker: broker.url, overrides: { timeouts } });
  const agents = new Map<string, Agent>();
  for (const d of world.devices) agents.set(d.name, await startAgent(d));
  return {
    broker,
    world,
    agents,
    async close() {
      for (const a of agents.values()) await a.stop().catch(() => {});
      await world.close();
      await broker.close();
    },
  };
}
