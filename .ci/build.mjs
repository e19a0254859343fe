#!/usr/bin/env node
// `npm run build`: compiles the TypeScript to dist/ (tsc) and copies the files the code reads at
// run time beside the compiled modules, so `P2PEV_DIST=1 p2pev …` runs without tsx (a device
// saves ~30 MB of memory and the compile at every start).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, rmSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
// `--out DIR`: compile there instead of dist/ (the Debian package builds into its staging tree,
// so it never races a test that rebuilds dist/).
const outFlag = process.argv.indexOf('--out');
const out = outFlag > 0 ? `${process.argv[outFlag + 1].replace(/\/$/, '')}/` : `${root}dist/`;
rmSync(out, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [`${root}node_modules/typescript/bin/tsc`, '-p', `${root}tsconfig.build.json`, '--outDir', out],
  { stdio: 'inherit' },
);
for (const asset of [
  'agent/config.schema.json',
  'agent/web/public',
  'protocol/vectors.json',
  'agent/install',
  'contracts/src',
  'contracts/test',
  // Loaded by the chaos run's agents (node --import) to step their wall clock.
  'sim/clock-preload.mjs',
]) {
  if (existsSync(`${root}${asset}`)) cpSync(`${root}${asset}`, `${out}${asset}`, { recursive: true });
}
console.log(`built ${out}`);
