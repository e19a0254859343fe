/**
 * Compiles the Solidity sources with the npm `solc` (solc-js, pinned; no compiler download) and
 * writes one artifact per contract to contracts/build/<Name>.json. contracts/build/ is not in git,
 * so everything that needs an artifact calls `loadArtifact`, which builds on demand and caches
 * by a hash of the sources, the compiler version and the settings.
 *
 * Run directly (`npm run build:contracts`) to build and print what was written.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BINDINGS_PATH, bindingsCurrent, bindingsText } from './bindings.js';

/** The compiler the contracts are audited with; a different installed solc is an error. */
export const SOLC_VERSION = '0.8.37';

export const CONTRACTS_DIR = dirname(fileURLToPath(import.meta.url));
export const BUILD_DIR = join(CONTRACTS_DIR, 'build');
const SOURCE_DIRS = ['src', 'test'];
const require = createRequire(import.meta.url);

const SETTINGS = {
  // Cancun: transient storage for the reentrancy guard, and what today's L1/L2 chains run.
  evmVersion: 'cancun',
  viaIR: true,
  optimizer: { enabled: true, runs: 1_000_000 },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};

export type ContractName = 'Settlement' | 'ReentrancyAttacker';

export interface Artifact {
  contractName: string;
  sourceName: string;
  // biome-ignore lint/suspicious/noExplicitAny: a JSON ABI, handed to ethers as is
  abi: any[];
  bytecode: string;
  deployedBytecode: string;
  /** Hash of sources, compiler version and settings: the cache key. */
  sourceHash: string;
  compiler: { version: string; settings: typeof SETTINGS };
}

interface SolcOutput {
  errors?: { severity: string; formattedMessage: string }[];
  contracts?: Record<
    string,
    Record<
      string,
      { abi: unknown[]; evm: { bytecode: { object: string }; deployedBytecode: { object: string } } }
    >
  >;
}

function listSources(): Record<string, string> {
  const sources: Record<string, string> = {};
  for (const dir of SOURCE_DIRS) {
    const abs = join(CONTRACTS_DIR, dir);
    for (const name of readdirSync(abs).sort()) {
      if (!name.endsWith('.sol')) continue;
      const path = join(abs, name);
      sources[relative(CONTRACTS_DIR, path)] = readFileSync(path, 'utf8');
    }
  }
  return sources;
}

function ozVersion(): string {
  return JSON.parse(readFileSync(require.resolve('@openzeppelin/contracts/package.json'), 'utf8')).version;
}

/** The cache key: our sources, the OpenZeppelin version they import, the compiler and settings. */
export function sourceHash(sources = listSources()): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ solc: SOLC_VERSION, oz: ozVersion(), settings: SETTINGS }));
  for (const [name, text] of Object.entries(sources)) h.update(`\0${name}\0${text}`);
  return h.digest('hex');
}

function artifactPath(name: string): string {
  return join(BUILD_DIR, `${name}.json`);
}

function readArtifact(name: string): Artifact | undefined {
  try {
    return JSON.parse(readFileSync(artifactPath(name), 'utf8')) as Artifact;
  } catch {
    return undefined;
  }
}

/** Resolves `@openzeppelin/contracts/...` imports from node_modules; nothing else is fetched. */
function findImport(path: string): { contents: string } | { error: string } {
  try {
    return { contents: readFileSync(require.resolve(path), 'utf8') };
  } catch {
    return { error: `import not found: ${path}` };
  }
}

function compile(sources: Record<string, string>, hash: string): Artifact[] {
  const solc = require('solc');
  const version: string = solc.version();
  if (!version.startsWith(`${SOLC_VERSION}+`)) {
    throw new Error(`solc ${version} is installed, contracts are pinned to ${SOLC_VERSION}: run npm ci`);
  }
  const input = {
    language: 'Solidity',
    sources: Object.fromEntries(Object.entries(sources).map(([name, content]) => [name, { content }])),
    settings: SETTINGS,
  };
  const output: SolcOutput = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error');
  if (errors.length > 0) throw new Error(`solc failed:\n${errors.map((e) => e.formattedMessage).join('\n')}`);
  const artifacts: Artifact[] = [];
  // OpenZeppelin's own notices (e.g. on its transient-storage guard) are not ours to fix.
  const warnings = (output.errors ?? []).filter(
    (e) => e.severity === 'warning' && !e.formattedMessage.includes('@openzeppelin/'),
  );
  if (warnings.length > 0) process.stderr.write(`${warnings.map((e) => e.formattedMessage).join('\n')}\n`);
  for (const [sourceName, contracts] of Object.entries(output.contracts ?? {})) {
    if (!(sourceName in sources)) continue; // OpenZeppelin's libraries are inlined, not deployed
    for (const [contractName, c] of Object.entries(contracts)) {
      if (!c.evm.bytecode.object) continue; // abstract contracts
      artifacts.push({
        contractName,
        sourceName,
        abi: c.abi,
        bytecode: `0x${c.evm.bytecode.object}`,
        deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
        sourceHash: hash,
        compiler: { version, settings: SETTINGS },
      });
    }
  }
  return artifacts;
}

function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

const LOCK_DIR = join(BUILD_DIR, '.lock');
const LOCK_STALE_MS = 5 * 60_000;

/** One compiler at a time across processes (test workers start together); mkdir is atomic. */
async function withBuildLock<T>(fn: () => T): Promise<T> {
  mkdirSync(BUILD_DIR, { recursive: true });
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      break;
    } catch {
      try {
        if (Date.now() - statSync(LOCK_DIR).mtimeMs > LOCK_STALE_MS)
          rmSync(LOCK_DIR, { recursive: true, force: true });
      } catch {
        // the holder just released it
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return fn();
  } finally {
    rmSync(LOCK_DIR, { recursive: true, force: true });
  }
}

/** Builds every contract unless the artifacts on disk match the sources; returns whether it compiled. */
export async function buildContracts(
  options: { force?: boolean } = {},
): Promise<{ built: boolean; hash: string }> {
  const sources = listSources();
  const hash = sourceHash(sources);
  const fresh = () => readArtifact('Settlement')?.sourceHash === hash && !options.force;
  if (fresh()) return { built: false, hash };
  return withBuildLock(() => {
    if (fresh()) return { built: false, hash }; // another process built it while we waited
    for (const artifact of compile(sources, hash)) {
      writeAtomically(artifactPath(artifact.contractName), `${JSON.stringify(artifact, null, 2)}\n`);
    }
    writeBindings(sources);
    return { built: true, hash };
  });
}

/**
 * Writes contracts/generated/settlement.ts (contracts/bindings.ts) from the Settlement artifact
 * and the sources' enums, when it differs from what is there.
 */
function writeBindings(sources = listSources()): boolean {
  // Only beside the sources: the compiled tree (dist/) runs the bindings, it does not write them.
  if (!import.meta.url.endsWith('.ts')) return false;
  const settlement = readArtifact('Settlement');
  if (!settlement) return false;
  const text = bindingsText(settlement.abi, sources, SOLC_VERSION);
  if (bindingsCurrent(text)) return false;
  mkdirSync(dirname(BINDINGS_PATH), { recursive: true });
  writeAtomically(BINDINGS_PATH, text);
  return true;
}

/** The bindings text the current artifact and sources give (for the test that they are committed). */
export async function expectedBindings(): Promise<string> {
  await buildContracts();
  return bindingsText((await loadArtifact('Settlement')).abi, listSources(), SOLC_VERSION);
}

/** The artifact of one contract, compiled first if missing or stale. */
export async function loadArtifact(name: ContractName): Promise<Artifact> {
  await buildContracts();
  const artifact = readArtifact(name);
  if (!artifact) throw new Error(`no artifact for ${name} in ${BUILD_DIR} after building`);
  return artifact;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const started = Date.now();
  const { built, hash } = await buildContracts({ force: process.argv.includes('--force') });
  const bindings = writeBindings();
  const settlement = await loadArtifact('Settlement');
  const size = (settlement.deployedBytecode.length - 2) / 2;
  process.stdout.write(
    `${built ? 'built' : 'up to date'}: ${relative(process.cwd(), BUILD_DIR)} (solc ${SOLC_VERSION}, ` +
      `source hash ${hash.slice(0, 12)}, Settlement ${size} bytes, ${Date.now() - started} ms)` +
      `${bindings ? `; wrote ${relative(process.cwd(), BINDINGS_PATH)}` : ''}\n`,
  );
}
