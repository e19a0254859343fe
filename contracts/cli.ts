/**
 * `p2pev chain deploy|status`: deploy the settlement contract and write the deployment file the
 * agents read; show what a deployment file points at. Keys are never printed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { getAddress, Wallet } from 'ethers';
import { MemberStatus, parseEntryResults, SettlementClient } from './client.js';
import { DEFAULT_PARAMS, type Deployment, deploySettlement, readDeployment } from './deploy.js';
import { connectRpc, probeChainId } from './rpc.js';

export const DEFAULT_DEPLOYMENT_FILE = 'deployment.json';
/** getLogs ranges, so that public nodes with range limits still answer. */
const LOG_CHUNK_BLOCKS = 10_000;

export interface DeployCliOptions {
  rpc: string;
  wait?: string;
  key?: string;
  keyFile?: string;
  keystore?: string;
  out: string;
  window: string;
  absToleranceWh: string;
  relToleranceBps: string;
  admin?: string;
  operator?: string;
  adminDelay?: string;
  json?: boolean;
}

export interface StatusCliOptions {
  deployment?: string;
  config?: string;
  rpc?: string;
  json?: boolean;
}

function positiveInteger(value: string, flag: string): bigint {
  if (!/^\d+$/.test(value)) throw new Error(`${flag} ${value} is not a non-negative integer`);
  return BigInt(value);
}

/** A usage mistake: the CLI exits 2 for it. */
class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * The keystore password: P2PEV_KEY_PASSWORD, the one name the agent uses too. The older
 * P2PEV_KEYSTORE_PASSWORD still works, with a warning.
 */
export function keystorePassword(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.P2PEV_KEY_PASSWORD !== undefined) return env.P2PEV_KEY_PASSWORD;
  if (env.P2PEV_KEYSTORE_PASSWORD !== undefined) {
    process.stderr.write(
      'p2pev: P2PEV_KEYSTORE_PASSWORD is deprecated and will go: set P2PEV_KEY_PASSWORD instead\n',
    );
    return env.P2PEV_KEYSTORE_PASSWORD;
  }
  return undefined;
}

/**
 * The deployer key, never from the command line (`ps` and the shell history would show it):
 * --key-file, else --keystore, else $P2PEV_DEPLOYER_KEY.
 */
async function deployerKey(opts: Pick<DeployCliOptions, 'key' | 'keyFile' | 'keystore'>): Promise<string> {
  if (opts.key !== undefined)
    throw new UsageError(
      '--key would show the key in `ps` and the shell history: give --key-file FILE (mode 0600), --keystore FILE, or set P2PEV_DEPLOYER_KEY',
    );
  if (opts.keyFile && opts.keystore) throw new UsageError('give only one of --key-file and --keystore');
  let key: string | undefined;
  if (opts.keyFile) {
    try {
      key = readFileSync(opts.keyFile, 'utf8').trim();
    } catch (err) {
      throw new Error(`cannot read --key-file ${opts.keyFile}: ${(err as NodeJS.ErrnoException).code}`);
    }
  } else if (!opts.keystore) key = process.env.P2PEV_DEPLOYER_KEY;
  if (key) {
    const hex = key.startsWith('0x') ? key : `0x${key}`;
    if (!/^0x[0-9a-fA-F]{64}$/.test(hex))
      throw new Error('the deploy key must be 64 hex digits (it is not shown here)');
    return hex;
  }
  if (!opts.keystore) {
    throw new UsageError('no deploy key: give --key-file FILE, --keystore FILE, or set P2PEV_DEPLOYER_KEY');
  }
  const password = keystorePassword();
  if (password === undefined) throw new UsageError('set P2PEV_KEY_PASSWORD to unlock the --keystore file');
  let json: string;
  try {
    json = readFileSync(opts.keystore, 'utf8');
  } catch {
    throw new Error(`cannot read keystore ${opts.keystore}`);
  }
  try {
    return (await Wallet.fromEncryptedJson(json, password)).privateKey;
  } catch {
    throw new Error(`cannot unlock keystore ${opts.keystore}: wrong password or not an Ethereum keystore`);
  }
}

/**
 * Which deployment file a command means: --deployment, else the one an agent config names
 * (--config: its chain.deploymentFile, relative to the config), else ./deployment.json.
 */
export function deploymentPath(opts: { deployment?: string; config?: string }): string {
  if (opts.deployment && opts.config) throw new UsageError('give only one of --deployment and --config');
  if (opts.deployment) return opts.deployment;
  if (opts.config) {
    let cfg: { chain?: { deploymentFile?: string } };
    try {
      cfg = JSON.parse(readFileSync(opts.config, 'utf8'));
    } catch (err) {
      throw new Error(`cannot read ${opts.config}: ${(err as Error).message}`);
    }
    const file = cfg.chain?.deploymentFile;
    if (!file) throw new Error(`${opts.config} has no chain.deploymentFile`);
    return isAbsolute(file) ? file : resolve(dirname(resolve(opts.config)), file);
  }
  if (!existsSync(DEFAULT_DEPLOYMENT_FILE) && existsSync('agent.config.json'))
    return deploymentPath({ config: 'agent.config.json' });
  return DEFAULT_DEPLOYMENT_FILE;
}

/** The options that say where the deployment is. */
function deploymentOptions(cmd: Command): Command {
  return cmd
    .option(
      '--deployment <file>',
      `deployment file (default: ${DEFAULT_DEPLOYMENT_FILE}, else the one agent.config.json names)`,
    )
    .option(
      '-c, --config <file>',
      'an agent config: use the deployment file it names (chain.deploymentFile)',
    );
}

/** The options that give the deployer's or operator's key, never the key itself. */
function keyOptions(cmd: Command, who: string): Command {
  return cmd
    .option('--key-file <file>', `file holding the ${who} private key (mode 0600; or set P2PEV_DEPLOYER_KEY)`)
    .option('--keystore <file>', 'encrypted JSON keystore; password from P2PEV_KEY_PASSWORD')
    .addOption(new Option('--key <hex>').hideHelp());
}

const STATUS_NAMES = Object.fromEntries(Object.entries(MemberStatus).map(([k, v]) => [v, k.toLowerCase()]));

/** `chain deploy`: deploys, writes the file, returns what to print. */
export async function runDeploy(opts: DeployCliOptions): Promise<string> {
  const params = {
    settlementWindowSec: positiveInteger(opts.window, '--window'),
    absToleranceWh: positiveInteger(opts.absToleranceWh, '--abs-tolerance-wh'),
    relToleranceBps: positiveInteger(opts.relToleranceBps, '--rel-tolerance-bps'),
    ...(opts.admin ? { admin: checkedAddress(opts.admin, '--admin') } : {}),
    ...(opts.operator ? { operator: checkedAddress(opts.operator, '--operator') } : {}),
    ...(opts.adminDelay ? { adminDelaySec: positiveInteger(opts.adminDelay, '--admin-delay') } : {}),
  };
  const key = await deployerKey(opts);
  if (opts.wait) await waitForNode(opts.rpc, Number(opts.wait));
  const d = await deploySettlement({ rpcUrl: opts.rpc, signer: key, params, out: opts.out });
  if (opts.json) {
    const { abi: _abi, ...summary } = d;
    return JSON.stringify({ ...summary, file: opts.out });
  }
  return (
    `deployed Settlement at ${d.address} on chain ${d.chainId} (block ${d.block}, tx ${d.txHash}); ` +
    `admin ${d.params.admin}, operator ${d.params.operator}; wrote ${opts.out}`
  );
}

/** Waits up to `seconds` for the node to answer (a bench that has just started anvil). */
async function waitForNode(rpcUrl: string, seconds: number): Promise<void> {
  if (!Number.isFinite(seconds) || seconds < 0) throw new UsageError('--wait takes a number of seconds');
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      await probeChainId(rpcUrl, 2000);
      return;
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

function checkedAddress(value: string, flag: string): string {
  try {
    return getAddress(value);
  } catch {
    throw new Error(`${flag} ${value} is not an Ethereum address`);
  }
}

export interface ChainStatus {
  file: string;
  rpcUrl: string;
  address: string;
  chainId: number;
  nodeChainId: number;
  deployedBlock: number;
  latestBlock: number;
  codeBytes: number;
  params?: { settlementWindowSec: string; absToleranceWh: string; relToleranceBps: string };
  members?: { evs: number; hcss: number };
  sessions?: {
    reserved: number;
    settled: number;
    disputed: number;
    released: number;
    rated: number;
    skipped: number;
  };
  problems: string[];
}

/** `chain status`: what the deployment file points at, as seen by the node now. */
export async function chainStatus(opts: StatusCliOptions): Promise<ChainStatus> {
  const file = deploymentPath(opts);
  const d: Deployment = readDeployment(file);
  const rpcUrl = opts.rpc ?? d.rpcUrl;
  if (!rpcUrl) throw new Error(`${file} names no RPC URL: give --rpc URL`);
  const { provider, chainId } = await connectRpc(rpcUrl);
  try {
    const [latestBlock, code] = await Promise.all([provider.getBlockNumber(), provider.getCode(d.address)]);
    const status: ChainStatus = {
      file,
      rpcUrl,
      address: d.address,
      chainId: d.chainId,
      nodeChainId: Number(chainId),
      deployedBlock: d.block,
      latestBlock,
      codeBytes: (code.length - 2) / 2,
      problems: [],
    };
    if (status.nodeChainId !== d.chainId) {
      status.problems.push(
        `the node is on chain ${status.nodeChainId}, the deployment on chain ${d.chainId}`,
      );
    }
    if (status.codeBytes === 0) status.problems.push(`no contract code at ${d.address} on this node`);
    if (status.problems.length > 0) return status;

    const client = SettlementClient.fromDeployment(d, provider);
    const c = client.contract;
    const [members, window, abs, rel] = await Promise.all([
      client.memberCounts(),
      c.getFunction('SETTLEMENT_WINDOW')(),
      c.getFunction('ABS_TOLERANCE_WH')(),
      c.getFunction('REL_TOLERANCE_BPS')(),
    ]);
    status.members = members;
    status.params = {
      settlementWindowSec: String(window),
      absToleranceWh: String(abs),
      relToleranceBps: String(rel),
    };
    const counts = { reserved: 0, settled: 0, disputed: 0, released: 0, rated: 0, skipped: 0 };
    const names = ['SessionsReserved', 'SessionsSettled', 'Disputed', 'SessionReleased', 'Rated'];
    const topics = names.map((name) => c.interface.getEvent(name)?.topicHash ?? name);
    for (let from = d.block; from <= latestBlock; from += LOG_CHUNK_BLOCKS) {
      const to = Math.min(latestBlock, from + LOG_CHUNK_BLOCKS - 1);
      const logs = await provider.getLogs({
        address: d.address,
        fromBlock: from,
        toBlock: to,
        topics: [topics],
      });
      for (const log of logs) {
        const name = names[topics.indexOf(log.topics[0] ?? '')];
        const parsed = c.interface.parseLog(log);
        if (parsed && (name === 'SessionsReserved' || name === 'SessionsSettled')) {
          const results = parseEntryResults(c.interface, parsed.args.results, name === 'SessionsSettled');
          const ok = results.filter((r) => r.reason === '').length;
          if (name === 'SessionsReserved') counts.reserved += ok;
          else counts.settled += ok;
          counts.skipped += results.length - ok;
        } else if (name === 'Disputed') counts.disputed++;
        else if (name === 'SessionReleased') counts.released++;
        else if (name === 'Rated') counts.rated++;
      }
    }
    status.sessions = counts;
    return status;
  } finally {
    provider.destroy();
  }
}

export function formatStatus(s: ChainStatus): string {
  const lines = [
    `deployment  ${s.file}: Settlement ${s.address} (chain ${s.chainId}, block ${s.deployedBlock})`,
    `node        ${s.rpcUrl}: chain ${s.nodeChainId}, block ${s.latestBlock}, ` +
      (s.codeBytes > 0 ? `code present (${s.codeBytes} bytes)` : 'NO CODE at the address'),
  ];
  if (s.params) {
    lines.push(
      `parameters  withdrawal notice ${s.params.settlementWindowSec} s; tolerance ` +
        `max(${s.params.absToleranceWh} Wh, ${s.params.relToleranceBps} bps)`,
    );
  }
  if (s.members) lines.push(`members     ${s.members.evs} EV, ${s.members.hcss} HCS`);
  if (s.sessions) {
    const x = s.sessions;
    lines.push(
      `sessions    ${x.reserved} reserved, ${x.settled} settled (${x.disputed} disputed), ` +
        `${x.released} released unsettled, ${x.rated} rated, ${x.skipped} entries refused`,
    );
  }
  for (const p of s.problems) lines.push(`problem     ${p}`);
  return lines.join('\n');
}

/** Registers `p2pev chain …`. */
export function registerChainCommands(program: Command): void {
  const chain = program.command('chain').description('Deploy the settlement contract and show a deployment');
  const deploy = chain
    .command('deploy')
    .description('Deploy Settlement (compiling it if needed) and write the deployment file agents read')
    .requiredOption('--rpc <url>', 'JSON-RPC URL of the node, e.g. http://127.0.0.1:8545');
  keyOptions(deploy, 'deployer')
    .option('--out <file>', 'deployment file to write', DEFAULT_DEPLOYMENT_FILE)
    .option(
      '--window <seconds>',
      'withdrawal notice = longest settlement window',
      String(DEFAULT_PARAMS.settlementWindowSec),
    )
    .option(
      '--abs-tolerance-wh <wh>',
      'absolute reconciliation tolerance',
      String(DEFAULT_PARAMS.absToleranceWh),
    )
    .option(
      '--rel-tolerance-bps <bps>',
      'relative reconciliation tolerance',
      String(DEFAULT_PARAMS.relToleranceBps),
    )
    .option(
      '--admin <address>',
      'admin: grants operators, handed over only after a delay (default: the deployer)',
    )
    .option(
      '--operator <address>',
      'first operator: verifies, suspends, revokes members (default: the admin)',
    )
    .option('--admin-delay <seconds>', 'how long an admin transfer waits (default 259200, 3 days)')
    .option('--wait <seconds>', 'wait this long for the node to answer (a node that is just starting)')
    .option('--json', 'print the deployment (without its ABI) as one JSON line')
    .action(async (opts: DeployCliOptions) => {
      process.stdout.write(`${await runDeploy(opts)}\n`);
    });
  deploymentOptions(
    chain
      .command('status')
      .description('Show the chain, code, block, members and session counts of a deployment'),
  )
    .option('--rpc <url>', 'JSON-RPC URL (default: the one in the deployment file)')
    .option('--json', 'print as one JSON line')
    .action(async (opts: StatusCliOptions) => {
      const status = await chainStatus(opts);
      process.stdout.write(`${opts.json ? JSON.stringify(status) : formatStatus(status)}\n`);
      if (status.problems.length > 0) process.exitCode = 1;
    });
  // The operator's side of the paper's physical registration check.
  for (const [action, what] of [
    ['verify', 'Mark a registered member verified (after the physical check of its documents)'],
    ['suspend', 'Suspend a member: its messages are dropped and its sessions cannot settle'],
    ['revoke', 'Revoke a membership for good'],
  ] as const) {
    keyOptions(
      deploymentOptions(
        chain
          .command(action)
          .description(`${what}; needs the operator key`)
          .argument('<address>', 'the member'),
      ).option('--rpc <url>', 'JSON-RPC URL (default: the one in the deployment file)'),
      'operator',
    )
      .option('--json', 'print as one JSON line')
      .action(
        async (
          member: string,
          opts: {
            deployment?: string;
            config?: string;
            rpc?: string;
            key?: string;
            keyFile?: string;
            keystore?: string;
            json?: boolean;
          },
        ) => {
          const address = checkedAddress(member, '<address>');
          const file = deploymentPath(opts);
          const deployment = readDeployment(file);
          const rpc = opts.rpc ?? deployment.rpcUrl;
          if (!rpc) throw new Error(`${file} names no RPC URL: give --rpc`);
          const key = await deployerKey(opts);
          const { provider } = await connectRpc(rpc);
          try {
            const client = SettlementClient.fromDeployment(deployment, new Wallet(key, provider));
            const receipt = await client[action](address);
            const info = await client.authInfo(address);
            const out = {
              member: address,
              action,
              tx: receipt.hash,
              block: receipt.blockNumber,
              status: info.status,
              statusName: STATUS_NAMES[Number(info.status)] ?? String(info.status),
            };
            process.stdout.write(
              `${opts.json ? JSON.stringify(out) : `${address}: ${out.statusName} (${action} in block ${receipt.blockNumber})`}\n`,
            );
          } finally {
            provider.destroy();
          }
        },
      );
  }
}
