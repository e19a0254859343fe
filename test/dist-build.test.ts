/**
 * The compiled build that installed devices run (`npm run build`, then P2PEV_DIST=1): it must
 * behave like the TypeScript sources, including the files read at run time (the config schema).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildVectors } from '../protocol/vectors.js';

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const P2PEV = `${root}bin/p2pev.mjs`;

describe('the compiled build (P2PEV_DIST=1)', () => {
  it('builds, decodes a signed vector like the sources, and loads its config schema', async () => {
    await run(process.execPath, [`${root}.ci/build.mjs`], { cwd: root });
    // `run` loads the minified bundle (the long-lived agent's memory); the other commands dist/.
    expect(existsSync(`${root}dist/p2pev-run/p2pev-run.mjs`)).toBe(true);
    const v = buildVectors().find((x) => x.name === 'chargeProvided')!;
    const args = [
      'msg',
      'decode',
      v.envelope.hex,
      '--chain-id',
      v.envelope.domain.chainId,
      '--contract',
      v.envelope.domain.verifyingContract,
    ];
    const compiled = await run(process.execPath, [P2PEV, ...args], {
      env: { ...process.env, P2PEV_DIST: '1' },
    });
    const sources = await run(process.execPath, [P2PEV, ...args], {
      env: { ...process.env, P2PEV_DIST: '' },
    });
    expect(JSON.parse(compiled.stdout)).toEqual(JSON.parse(sources.stdout));
    expect(JSON.parse(compiled.stdout).signer).toBe(v.envelope.signer);
    const bad = await run(process.execPath, [P2PEV, 'run', '--config', '/nonexistent/agent.config.json'], {
      env: { ...process.env, P2PEV_DIST: '1' },
    }).catch((e) => e);
    expect(bad.stderr).toMatch(/cannot read \/nonexistent\/agent.config.json/);

    // A config with problems: every one named by the precompiled validator, "did you mean" and all.
    const dir = mkdtempSync(join(tmpdir(), 'p2pev-dist-'));
    try {
      writeFileSync(join(dir, 'agent.config.json'), '{"role": "hcs", "nmae": "x"}');
      const invalid = await run(
        process.execPath,
        [P2PEV, 'run', '--config', join(dir, 'agent.config.json')],
        {
          env: { ...process.env, P2PEV_DIST: '1' },
        },
      ).catch((e) => e);
      expect(invalid.stderr).toMatch(/unknown key "nmae" \(did you mean "name"\?\)/);
      expect(invalid.stderr).toMatch(/\/keystore: is required/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    // What the long-lived agent loads holds no ajv (the config and OCPP validators are
    // precompiled) and none of ocpp-rpc's schemas of other OCPP versions; the OCPP 1.6 validators
    // are there, in the OCPP chunk.
    const bundle = readdirSync(`${root}dist/p2pev-run`).map((f) =>
      readFileSync(`${root}dist/p2pev-run/${f}`, 'utf8'),
    );
    expect(bundle.some((text) => text.includes('schema with key or id'))).toBe(false);
    expect(bundle.some((text) => text.includes('SetVariablesRequest'))).toBe(false);
    expect(bundle.some((text) => text.includes('urn:BootNotification.req'))).toBe(true);
  }, 120_000);
});
