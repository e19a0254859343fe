/**
 * A chaos or soak run stopped from outside (Ctrl-C, `kill`, a CI timeout) must take its agents and
 * its broker with it: they are supervised children, and Node's default for SIGTERM skips the
 * 'exit' handlers that kill them, which left five agents and mosquitto running unseen.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { waitFor } from './helpers/world.js';

const alive = (pid: number) => existsSync(`/proc/${pid}`);

describe('p2pev sim --chaos stopped from outside', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)(
    'kills every agent and the broker on %s',
    async (signal) => {
      const sim = spawn(
        process.execPath,
        ['bin/p2pev.mjs', 'sim', '--chaos', '--seed', '2', '--duration', '300'],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let output = '';
      sim.stdout.on('data', (b) => {
        output += b;
      });
      sim.stderr.on('data', (b) => {
        output += b;
      });
      const exited = new Promise<number | null>((r) => sim.once('exit', (code) => r(code)));
      try {
        const pidsFile = await waitFor(
          'the agents supervised',
          async () => /pids in (\S+pids\.json)/.exec(output)?.[1],
          120_000,
        );
        const pids = Object.values(JSON.parse(readFileSync(pidsFile, 'utf8')) as Record<string, number>);
        expect(pids.length).toBe(6); // broker, edge, two stations, two cars
        expect(pids.every(alive)).toBe(true);

        sim.kill(signal);
        expect(await exited).toBe(signal === 'SIGINT' ? 130 : 143);
        await waitFor('every child gone', async () => (pids.some(alive) ? undefined : true), 10_000);
      } finally {
        if (sim.exitCode === null) sim.kill('SIGKILL');
      }
    },
    180_000,
  );
});
