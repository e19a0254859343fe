/**
 * A real local EVM node for the tests, the benchmark and the simulation: anvil from the npm
 * package @foundry-rs/anvil, on a free port of 127.0.0.1 only, stopped with the process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getAddress, HDNodeWallet, Mnemonic } from 'ethers';
import { addressOfUncompressed, signatureBackend } from '../protocol/signature.js';

/** anvil's default mnemonic: its funded accounts are derived from it (test keys, public). */
export const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk';
export const ANVIL_CHAIN_ID = 31337n;

export interface AnvilAccount {
  address: string;
  privateKey: string;
}

export interface AnvilOptions {
  /** Port on 127.0.0.1; a free one if omitted. */
  port?: number;
  /** Seconds per block; omitted = a block per transaction (automine). */
  blockTime?: number;
  /** Funded accounts to derive (anvil's default is 10). */
  accounts?: number;
  /** Block gas limit (default 30,000,000, the figure the benchmark quotes). */
  gasLimit?: number;
  /** More anvil flags, e.g. ['--steps-tracing'] for opcode traces. */
  extraArgs?: string[];
  /** How long to wait for the JSON-RPC to answer (default 20 s). */
  startTimeoutMs?: number;
}

export interface Anvil {
  rpcUrl: string;
  chainId: bigint;
  accounts: AnvilAccount[];
  /** Kills the node and waits for it to exit. */
  stop(): Promise<void>;
}

const HERE = dirname(fileURLToPath(import.meta.url));
/** The package root: one level up from sim/, two from the compiled dist/sim/. */
const ROOTS = [join(HERE, '..'), join(HERE, '..', '..')];

/**
 * The anvil binary. The platform package's executable comes first: node_modules/.bin/anvil is a
 * Node shim that spawns it, and killing the shim could leave the real node running.
 */
export function anvilBinary(): string {
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const candidates = ROOTS.flatMap((root) => [
    join(root, 'node_modules', '@foundry-rs', `anvil-${process.platform}-${arch}`, 'bin', 'anvil'),
    join(root, 'node_modules', '.bin', 'anvil'),
  ]);
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new Error('anvil not found in node_modules: run npm ci (package @foundry-rs/anvil)');
  return found;
}

/**
 * A port the OS says is free right now on 127.0.0.1, closed again before it is returned: only for
 * a child process that must be told its port before it starts (a spawned agent, mosquitto), or for
 * a port meant to have nothing on it. Whatever can listen on port 0 and say which port it got
 * (anvil, the embedded broker, in-process agents) does that instead: no race with other processes.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The order of secp256k1's group. */
const CURVE_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/**
 * The first `count` accounts of anvil's default mnemonic (m/44'/60'/0'/0/i). The seed (PBKDF2,
 * 2048 rounds) and the parent node once, through ethers; each child is then BIP-32's
 * non-hardened step done here: HMAC-SHA512 of the parent's public key and the index (node:crypto),
 * the key added mod n, its public key from the native signer. ethers' own deriveChild computed
 * each public key in JavaScript: ~0.8 ms an account, seconds for a world of thousands.
 */
export function anvilAccounts(count: number): AnvilAccount[] {
  const parent = HDNodeWallet.fromMnemonic(Mnemonic.fromPhrase(ANVIL_MNEMONIC), "m/44'/60'/0'/0");
  const chainCode = Buffer.from(parent.chainCode.slice(2), 'hex');
  const parentKey = BigInt(parent.privateKey);
  const data = Buffer.alloc(37);
  Buffer.from(parent.publicKey.slice(2), 'hex').copy(data, 0);
  const signer = signatureBackend();
  return Array.from({ length: count }, (_, i) => {
    data.writeUInt32BE(i, 33);
    const I = createHmac('sha512', chainCode).update(data).digest();
    const il = BigInt(`0x${I.subarray(0, 32).toString('hex')}`);
    const key = (il + parentKey) % CURVE_ORDER;
    // BIP-32: such an index is skipped (probability below 2^-127; never for anvil's accounts).
    if (il >= CURVE_ORDER || key === 0n) throw new Error(`account ${i} of the mnemonic is not a valid key`);
    const privateKey = `0x${key.toString(16).padStart(64, '0')}`;
    const publicKey = signer.publicKey(Buffer.from(privateKey.slice(2), 'hex'));
    return { address: getAddress(addressOfUncompressed(publicKey)), privateKey };
  });
}

async function rpcChainId(rpcUrl: string): Promise<bigint | undefined> {
  try {
    const res = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      signal: AbortSignal.timeout(1000),
    });
    const body = (await res.json()) as { result?: string };
    return body.result ? BigInt(body.result) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * anvil runs under a small sh watchdog holding the read end of a pipe from us: when this process
 * goes away for any reason (exit, crash, SIGKILL of a test worker) the pipe closes and the
 * watchdog stops anvil, so no node is left orphaned on the machine. Closing the pipe is also how
 * stop() asks it to end.
 */
const WATCHDOG = [
  'exec 3<&0',
  '"$0" "$@" </dev/null &',
  'node=$!',
  '( read -r _ <&3; kill "$node" 2>/dev/null ) &',
  'watcher=$!',
  'wait "$node"; status=$?',
  'kill "$watcher" 2>/dev/null',
  'exit "$status"',
].join('\n');

function spawnWatched(binary: string, args: string[], stdout: 'pipe' | 'ignore'): ChildProcess {
  return spawn('/bin/sh', ['-c', WATCHDOG, binary, ...args], { stdio: ['pipe', stdout, 'pipe'] });
}

/**
 * Starts anvil and resolves once its JSON-RPC answers. Without a fixed port anvil binds port 0
 * itself (the OS picks a free one, no race with other processes) and says which on its stdout.
 */
export async function startAnvil(options: AnvilOptions = {}): Promise<Anvil> {
  return launch(options.port ?? 0, options);
}

class AnvilExited extends Error {}

/** The port in anvil's "Listening on 127.0.0.1:PORT" line (its banner before it is dropped). */
function listeningPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer) => {
      seen = (seen + chunk.toString()).slice(-4096);
      const m = /Listening on [^\s]*:(\d+)/.exec(seen);
      if (!m) return;
      child.stdout?.off('data', onData);
      child.stdout?.resume(); // whatever it prints later is dropped
      resolve(Number(m[1]));
    };
    child.stdout?.on('data', onData);
    child.once('exit', () => reject(new AnvilExited('anvil exited before it listened')));
  });
}

async function launch(requestedPort: number, options: AnvilOptions): Promise<Anvil> {
  const accountCount = options.accounts ?? 10;
  const args = [
    '--host',
    '127.0.0.1',
    '--port',
    String(requestedPort),
    '--accounts',
    String(accountCount),
    '--mnemonic',
    ANVIL_MNEMONIC,
    '--chain-id',
    String(ANVIL_CHAIN_ID),
    '--gas-limit',
    String(options.gasLimit ?? 30_000_000),
    // No old block states on disk: anvil writes those it evicts from memory under
    // ~/.foundry/anvil/tmp and leaves them there when it is killed (60 GB from a day of sims and
    // tests filled this machine's disk). Nothing here reads a state that old; recent ones stay
    // in memory as before.
    '--max-persisted-states',
    '0',
    // On port 0 the banner's last line says which port it bound; otherwise nothing to read.
    ...(requestedPort === 0 ? [] : ['--silent']),
  ];
  if (options.blockTime !== undefined) args.push('--block-time', String(options.blockTime));
  args.push(...(options.extraArgs ?? []));

  const child = spawnWatched(anvilBinary(), args, requestedPort === 0 ? 'pipe' : 'ignore');
  const bound = requestedPort === 0 ? listeningPort(child) : Promise.resolve(requestedPort);
  bound.catch(() => {}); // an early exit is reported below, with anvil's stderr
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });
  // Our end of the watchdog pipe must not keep this process alive.
  (child.stdin as { unref?: () => void } | null)?.unref?.();

  const stop = async (): Promise<void> => {
    if (hasExited) return;
    child.stdin?.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 20_000);
  let timer: NodeJS.Timeout | undefined;
  const port = await Promise.race([
    bound,
    new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), options.startTimeoutMs ?? 20_000);
    }),
  ])
    .catch(() => undefined)
    .finally(() => clearTimeout(timer));
  if (port === undefined) {
    await stop();
    throw new AnvilExited(`anvil did not say which port it bound: ${stderr.trim() || 'no output'}`);
  }
  const rpcUrl = `http://127.0.0.1:${port}`;
  for (;;) {
    const chainId = await rpcChainId(rpcUrl);
    if (chainId !== undefined) return { rpcUrl, chainId, accounts: anvilAccounts(accountCount), stop };
    if (hasExited || Date.now() > deadline) {
      await stop();
      if (hasExited) throw new AnvilExited(`anvil on ${rpcUrl} exited: ${stderr.trim() || 'no output'}`);
      throw new Error(`anvil on ${rpcUrl} did not answer within ${options.startTimeoutMs ?? 20_000} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
