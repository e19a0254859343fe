#!/usr/bin/env node
// `npm run build`: compiles the TypeScript to dist/ (tsc) and copies the files the code reads at
// run time beside the compiled modules, so `P2PEV_DIST=1 p2pev …` runs without tsx (a device
// saves ~30 MB of memory and the compile at every start).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, rmSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
rmSync(`${root}dist`, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [`${root}node_modules/typescript/bin/tsc`, '-p', `${root}tsconfig.build.json`],
  { stdio: 'inherit' },
);
for (const asset of [
  'agent/config.schema.json',
  'agent/core/keystore-child.mjs',
  'agent/web/public',
  'protocol/vectors.json',
  'agent/install',
  'contracts/src',
  'contracts/test',
]) {
  if (existsSync(`${root}${asset}`)) cpSync(`${root}${asset}`, `${root}dist/${asset}`, { recursive: true });
}
console.log('built dist/');
