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
  'agent/core/keystore-child.mjs',
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

// `p2pev run` loads one minified bundle of the compiled agent and its pure-JS dependencies
// (dist/p2pev-run/p2pev-run.mjs, with chunks beside it): V8 keeps every loaded module's source text for as long as the process
// lives, and the dependencies' sources with their comments were ~6 MB of an agent's heap; the
// bundle cut an EV's or HCS's peak resident memory by ~4 MB (docs/BENCHMARKS.md). Each module's
// `import.meta.url` is rewritten to the URL of its compiled file beside the bundle, so the files
// it reads at run time (config schema, keystore opener, contract artifacts, the members' page) are
// found where they are. Native modules, and what loads files or workers relative to itself, stay
// outside (imported from node_modules as before).
const esbuild = await import('esbuild');
const dist = out;
const metaUrl = {
  name: 'module-own-import-meta-url',
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, async (args) => {
      if (!args.path.startsWith(dist) || args.path.includes('/node_modules/')) return undefined;
      const { readFile } = await import('node:fs/promises');
      const source = await readFile(args.path, 'utf8');
      const rel = args.path.slice(dist.length);
      return {
        contents: source.replaceAll(
          'import.meta.url',
          `new URL(${JSON.stringify(`../${rel}`)}, import.meta.url).href`,
        ),
        loader: 'js',
      };
    });
  },
};
// ocpp-rpc builds, as it is loaded, strict validators for every OCPP version it knows: it parses
// 1.7 MB of JSON schemas (1.6, 2.0.1, 2.1) into its own ajv copy with ajv-formats, ~8 MB of a
// station's memory. The agent validates OCPP 1.6 with validators precompiled from the same
// schemas (drivers/chargers/ocpp-validator.ts, passed as strictModeValidators), so in the bundle
// ocpp-rpc's list is empty and its ajv-backed createValidator, which the agent never calls, says so.
const ocppRpcOwnValidators = {
  name: 'ocpp-rpc-without-its-ajv',
  setup(build) {
    build.onResolve({ filter: /^\.\/(lib\/)?(standard-validators|validator)$/ }, (args) => {
      if (!/[/\\]ocpp-rpc[/\\](index|lib[/\\][\w-]+)\.js$/.test(args.importer)) return undefined;
      return { path: args.path.replace(/^.*\//, ''), namespace: 'ocpp-rpc-stub' };
    });
    build.onLoad({ filter: /.*/, namespace: 'ocpp-rpc-stub' }, (args) => ({
      loader: 'js',
      contents:
        args.path === 'standard-validators'
          ? 'module.exports = [];'
          : `class Validator {}
function createValidator() {
  throw new Error('ocpp-rpc createValidator is not in p2pev run: OCPP 1.6 is validated by drivers/chargers/ocpp-validator');
}
module.exports = { Validator, createValidator };`,
    }));
  },
};
await esbuild.build({
  // The runner and the module that registers `run` (bin/commands.mjs), as bin/p2pev.mjs takes them.
  stdin: {
    contents:
      "export { main } from './agent/cli.js';\nexport { registerAgentCommands } from './agent/commands.js';\n",
    resolveDir: dist,
    sourcefile: 'p2pev-run-entry.js',
  },
  // Modules the agent imports only when it needs them (an OCPP charger, the diagnostics) stay in
  // chunks of their own, loaded then: in the one bundle their source text would be held anyway.
  outdir: `${dist}p2pev-run`,
  entryNames: 'p2pev-run',
  chunkNames: 'chunk-[hash]',
  splitting: true,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: true,
  keepNames: false,
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [metaUrl, ocppRpcOwnValidators],
  // Compiled into another tree (the Debian package's staging dir), the dependencies are still this
  // checkout's: that tree gets its own production node_modules only after the build.
  nodePaths: [`${root}node_modules`],
  external: [
    // bin/p2pev.mjs builds the program with its own commander: one copy, one CommanderError
    'commander',
    // native bindings and what finds them relative to itself
    'secp256k1',
    'node-gyp-build',
    'serialport',
    '@serialport/*',
    'cbor-extract',
    // pino starts transports in worker threads by file name
    'pino',
    'pino-pretty',
    // development and simulation only (absent after npm prune --omit=dev)
    'tsx',
    'tsx/*',
    'aedes',
    'playwright-core',
    'solc',
    '@foundry-rs/anvil',
  ],
  // CommonJS dependencies inside an ES module bundle still call require() for node's built-ins.
  banner: {
    js: "import { createRequire as __p2pevRequire } from 'node:module'; const require = __p2pevRequire(import.meta.url);",
  },
});
console.log(`built ${out}`);
