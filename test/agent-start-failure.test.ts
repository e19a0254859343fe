/**
 * An agent whose start fails half-way (here its control port is taken: the broker connection and
 * the chain are already up by then) must end with exit code 1, so that its supervisor (systemd's
 * Restart=always, the chaos sim) starts it again. Before, the process lived on, on the broker but
 * doing nothing, and was never restarted (issue 15's chaos run at 30 EVs x 8 stations).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIM_PASSWORD, type World } from '../sim/world.js';
import { device, smallWorld } from './helpers/world.js';

const BIN = new URL('../bin/p2pev.mjs', import.meta.url).pathname;

describe('an agent whose start fails half-way', () => {
  let world: World;
  const taken = createServer();

  beforeAll(async () => {
    world = await smallWorld({ edge: true });
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  }, 120_000);

  afterAll(async () => {
    taken.close();
    await world?.close();
  });

  it('ends with exit code 1 and says why', async () => {
    const edge = device(world, 'EDGE');
    const cfg = JSON.parse(readFileSync(edge.configPath, 'utf8'));
    cfg.control = { ...cfg.control, port: (taken.address() as { port: number }).port };
    writeFileSync(edge.configPath, JSON.stringify(cfg));
    const child = spawn(process.execPath, [BIN, 'run', '--config', edge.configPath], {
      env: { ...process.env, P2PEV_KEY_PASSWORD: SIM_PASSWORD },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (b) => {
      stderr += b;
    });
    child.stdout.on('data', (b) => {
      stdout += b;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    clearTimeout(timer);
    // Killed by the timer (still running after 90 s) would be null.
    expect(code).toBe(1);
    // It had reached the broker before the port failed: the half-way case.
    expect(stdout).toContain('broker connected');
    expect(stderr).toContain('EADDRINUSE');
  }, 150_000);
});
