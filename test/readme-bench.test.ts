/**
 * The README's developer's bench ("Run one agent of each role"), read from README.md and run as
 * written by bash: anvil, mosquitto, the contract, a sim meter, the key imported, register, verify,
 * run, status. Only what a test must change is changed: free ports instead of 8545/1883/5020/8911
 * (other tests run at the same time), a temporary directory with a copy of agent.config.json, and
 * `npx p2pev`/`npx anvil` spelled as the package's own bin (npx resolves them from the checkout).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../sim/chain.js';
import { tempDir } from './helpers/world.js';

const root = new URL('..', import.meta.url).pathname;
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** The first ```sh block after the bench heading. */
function benchBlock(readme: string): string {
  const from = readme.indexOf("## Run one agent of each role (a developer's bench)");
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(from));
  if (from < 0 || !block) throw new Error('README.md has no bench block');
  return block[1]!;
}

describe("the README's bench block", () => {
  it.runIf(has('mosquitto'))(
    'runs as written: the HCS agent is registered, verified, running and reports its meter',
    async () => {
      const ports: Record<string, number> = {
        8545: await freePort(),
        1883: await freePort(),
        5020: await freePort(),
        8911: await freePort(),
        9911: await freePort(),
      };
      const swapPorts = (text: string) =>
        text.replace(/\b(8545|1883|5020|8911|9911)\b/g, (p) => String(ports[Number(p)]));
      const dir = tempDir('bench');
      writeFileSync(
        join(dir, 'agent.config.json'),
        swapPorts(readFileSync(join(root, 'agent.config.json'), 'utf8')).replace(
          '"./agent/config.schema.json"',
          JSON.stringify(join(root, 'agent/config.schema.json')),
        ),
      );
      const block = swapPorts(benchBlock(readFileSync(join(root, 'README.md'), 'utf8')))
        .replaceAll('npx p2pev ', `${process.execPath} ${root}bin/p2pev.mjs `)
        .replaceAll('npx anvil ', `${root}node_modules/.bin/anvil `);
      const script = `set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT
${block}`;
      const r = spawnSync('bash', ['-c', script], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 240_000,
        env: { ...process.env, P2PEV_DIST: '0', CI: '1' },
      });
      const out = `${r.stdout}\n${r.stderr}`;
      expect(r.status, out).toBe(0);
      expect(out).toMatch(/deployed Settlement at 0x[0-9a-fA-F]{40} on chain 31337/);
      expect(out).toMatch(/simulated sdm630 unit 1 \(serial \d+\)/);
      expect(out).toContain('0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC');
      expect(out).toMatch(/registered as hcs in block \d+/);
      expect(out).toMatch(/0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC: verified \(verify in block \d+\)/);
      // p2pev status: the running agent, its broker, chain and meter.
      expect(out).toMatch(/bench-hcs \(hcs\) 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC, up \d+ min/i);
      expect(out).toMatch(/broker {3}mqtt:\/\/127\.0\.0\.1:\d+: connected/);
      expect(out).toMatch(/meter {4}sdm630 serial \d+/);
      expect(existsSync(join(dir, 'hcs.key'))).toBe(false); // the plain key is gone
      expect(existsSync(join(dir, '.data/hcs/key.json'))).toBe(true);
    },
    300_000,
  );
});
