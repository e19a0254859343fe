/**
 * Two things a developer meets on the bench: `p2pev doctor` without systemd (no systemctl advice,
 * no timedatectl error, a quiet skip), and `npx p2pev … &` stopping when its npm is killed.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { runDoctor } from '../agent/ops/doctor.js';
import { freePort } from '../sim/chain.js';
import { tempDir } from './helpers/world.js';

const BIN = new URL('../bin/p2pev.mjs', import.meta.url).pathname;

describe('doctor on a bench', () => {
  it('skips the clock quietly and says p2pev run, not systemctl', async () => {
    const dir = tempDir('doctor');
    const config = join(dir, 'agent.config.json');
    writeFileSync(
      config,
      JSON.stringify({
        role: 'edge',
        dataDir: join(dir, 'data'),
        keystore: { path: join(dir, 'missing-key.json') },
        chain: {
          rpcUrl: `http://127.0.0.1:${await freePort()}`,
          deploymentFile: join(dir, 'deployment.json'),
        },
        mqtt: { url: `mqtt://127.0.0.1:${await freePort()}` },
        control: { port: await freePort() },
      }),
    );
    const checks = await runDoctor({ configPath: config, timeoutMs: 300, systemd: false });
    const byName = Object.fromEntries(checks.map((c) => [c.name, c]));
    expect(byName.clock).toMatchObject({
      status: 'skip',
      detail: 'no systemd here (a bench): NTP sync not checked',
    });
    expect(byName.agent!.status).toBe('warn');
    expect(JSON.stringify(byName.agent)).toContain(`p2pev run --config ${config}`);
    expect(JSON.stringify(checks)).not.toContain('systemctl');
    const installed = await runDoctor({ configPath: config, timeoutMs: 300, systemd: true });
    expect(JSON.stringify(installed.find((c) => c.name === 'agent'))).toContain('systemctl start p2pev');
  }, 30_000);
});

describe('started by npm', () => {
  it('stops when the npm (and shell) that launched it are killed', async () => {
    // What `npx p2pev sim meter … &` makes: npm → sh → node; `kill $!` kills the first two.
    const sh = spawn(
      'sh',
      [
        '-c',
        `${process.execPath} ${BIN} sim meter --profile sdm630 --tcp 127.0.0.1:0 --json & echo $!; wait`,
      ],
      {
        env: { ...process.env, npm_command: 'exec' },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const lines = createInterface({ input: sh.stdout! })[Symbol.asyncIterator]();
    const pid = Number((await lines.next()).value);
    const ready = JSON.parse((await lines.next()).value as string);
    expect(ready.ready).toBe(true);
    expect(() => process.kill(pid, 0)).not.toThrow();
    sh.kill('SIGKILL');
    // The orphaned node notices within a second and stops as on SIGTERM.
    await expect
      .poll(
        () => {
          try {
            process.kill(pid, 0);
            return 'running';
          } catch {
            return 'gone';
          }
        },
        { timeout: 15_000, interval: 100 },
      )
      .toBe('gone');
  }, 30_000);
});
