#!/usr/bin/env node
// Entry point of the `p2pev` command.
//
// Start-up: `p2pev --version` and `p2pev --help` load nothing but commander and this file; any
// other command loads only the module that owns it (the table below), never the whole program
// (ethers alone takes ~0.4 s to load on a Pi).
//
// Which code runs: the compiled JavaScript in dist/ (`npm run build`) whenever it is there, as on
// an installed device or the Debian package; in a development checkout (a `.git` beside dist/) the
// TypeScript sources through tsx, since a dist/ there may be older than the sources you edit.
// P2PEV_DIST=1 picks dist/ (it must be built), P2PEV_DIST=0 the sources.
import { existsSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { Command } from 'commander';
import { COMMANDS } from './commands.mjs';

// `p2pev run` is one long-lived agent. It starts without V8's optimizing compiler (TurboFan):
// loading ethers and the rest would otherwise optimize their start-up loops, and the optimized
// code and compiler memory stay, ~10 MB of an EV's or HCS's resident set; and what it optimizes
// later keeps growing for hours (an edge's resident set +2.3 MB/h over a soak's first hour with it,
// flat without: docs/AGENT.md). A device checks a few dozen messages a session (their signatures
// checked natively). Nor the baseline compiler (Sparkplug): its code for every function run a few
// times at start-up is another ~2 MB (docs/BENCHMARKS.md). P2PEV_JIT=1 keeps both: an edge on a
// server, for throughput (the unit's `# edge:` line sets it). Only for `run`; before any import.
if (process.argv[2] === 'run' && process.env.P2PEV_JIT !== '1') {
  setFlagsFromString('--no-turbofan');
  setFlagsFromString('--no-sparkplug');
}

const root = new URL('../', import.meta.url);
const VERSION = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).version;

/** The program with every command as a stub (name and description); `load` adds the real ones. */
export function rootProgram() {
  return (
    new Command('p2pev')
      .description('Smart-meter agent for peer-to-peer EV charging (EV, HCS and edge roles)')
      .version(VERSION)
      .enablePositionalOptions()
      .showHelpAfterError()
      .configureHelp({ sortSubcommands: true })
      // Before any command is added: subcommands copy it, so their usage errors exit 2 too.
      .exitOverride()
  );
}

/**
 * Started by npm (`npx p2pev … &`, `npm run …`), this process is a grandchild: npm, then a shell,
 * then node. A `kill $!` stops npm and the shell but not us, and an agent would keep its ports.
 * So when npm is the launcher and we are orphaned (our parent is gone), stop as on SIGTERM.
 * Only then: `nohup p2pev run &` from a shell that logs out must keep running.
 */
function stopWithLauncher() {
  if (!process.env.npm_command) return;
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
  }, 500).unref();
}

function addStubs(program) {
  const have = new Set(program.commands.map((c) => c.name()));
  for (const c of COMMANDS) if (!have.has(c.name)) program.command(c.name).description(c.description);
}

const args = process.argv.slice(2);
const [first, second] = args;
// `p2pev help diag` is `p2pev diag --help`: the command's own module gives its help.
const named = first === 'help' ? second : first;
const entry = COMMANDS.find((c) => c.name === named);

if (!entry && (args.length === 0 || ['-V', '--version', '-h', '--help', 'help'].includes(first))) {
  // The fast path: the version and the list of commands need no command module.
  const program = rootProgram();
  addStubs(program);
  if (args.length === 0) {
    program.outputHelp({ error: true });
    process.exitCode = 2;
  } else {
    try {
      program.parse(process.argv);
    } catch (err) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
    }
  }
} else {
  stopWithLauncher();
  const dist = new URL('dist/', root);
  const distBuilt = existsSync(new URL('agent/cli.js', dist));
  const devCheckout = existsSync(new URL('.git', root));
  const mode = process.env.P2PEV_DIST;
  let useDist = mode === '1' || (mode !== '0' && distBuilt && !devCheckout);
  if (mode === '1' && !distBuilt) {
    process.stderr.write('p2pev: P2PEV_DIST=1 but dist/ is not built: run npm run build\n');
    process.exit(1);
  }
  if (!useDist) {
    try {
      const { register } = await import('tsx/esm/api');
      register();
    } catch {
      // An installed tree without dev dependencies has no tsx: then dist/ is the only way.
      if (!distBuilt) {
        process.stderr.write('p2pev: neither dist/ (npm run build) nor tsx (npm ci) is installed\n');
        process.exit(1);
      }
      useDist = true;
    }
  }
  // `run` (the long-lived agent) loads the same compiled code as one minified bundle, its runner
  // and its command together: ~4 MB less resident memory (.ci/build.mjs says why).
  // P2PEV_BUNDLE=0: the separate modules (a CPU profile with their names).
  const bundle = new URL('p2pev-run/p2pev-run.mjs', dist);
  const bundled =
    useDist && entry?.name === 'run' && process.env.P2PEV_BUNDLE !== '0' && existsSync(bundle)
      ? await import(bundle.href)
      : undefined;
  const load = (module) =>
    bundled ??
    (useDist ? import(new URL(`${module}.js`, dist).href) : import(new URL(`${module}.ts`, root).href));
  const { main } = await load('agent/cli');
  const program = rootProgram();
  if (entry) (await load(entry.module))[entry.register](program);
  addStubs(program);
  await main(program, process.argv);
}
