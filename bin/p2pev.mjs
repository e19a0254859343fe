#!/usr/bin/env node
// Entry point of the `p2pev` command. The sources are TypeScript, run through tsx's loader so that
// a fresh `npm ci` is enough (no build step). With P2PEV_DIST=1 (the installed service sets it) the
// compiled JavaScript of `npm run build` runs instead: no compile at start, ~25 MB less memory.
import { existsSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

// `p2pev run` is one long-lived agent. It starts without V8's optimizing compiler (TurboFan):
// loading ethers and the rest would otherwise optimize their start-up loops, and the optimized
// code and compiler memory stay, ~10 MB of an EV's or HCS's resident set. An EV or HCS checks a
// few dozen messages a session (their signatures checked natively); the edge turns it back on
// once it has read its config (agent/commands.ts). Nor the baseline compiler (Sparkplug): its code
// for every function run a few times at start-up is another ~2 MB (docs/BENCHMARKS.md). Only
// these flags, only for `run`; set before any import.
if (process.argv[2] === 'run') {
  setFlagsFromString('--no-turbofan');
  setFlagsFromString('--no-sparkplug');
}

const dist = new URL('../dist/agent/cli.js', import.meta.url);
// `run` (the long-lived agent) loads the same compiled code as one minified bundle: ~4 MB less
// resident memory (.ci/build.mjs says why).
const bundle = new URL('../dist/p2pev-run.mjs', import.meta.url);
if (process.env.P2PEV_DIST === '1') {
  if (!existsSync(dist)) {
    process.stderr.write('p2pev: P2PEV_DIST=1 but dist/ is not built: run npm run build\n');
    process.exit(1);
  }
  // P2PEV_BUNDLE=0: the separate modules (a CPU profile with their names).
  const entry =
    process.argv[2] === 'run' && process.env.P2PEV_BUNDLE !== '0' && existsSync(bundle) ? bundle : dist;
  const { main } = await import(entry.href);
  await main(process.argv);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import('../agent/cli.ts');
  await main(process.argv);
}
