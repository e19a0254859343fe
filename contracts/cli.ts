/**
 * `p2pev chain deploy|status`: deploy the settlement contract and write the deployment file the
 * agents read; show what a deployment file points at. Keys are never printed.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { getAddress, Wallet } from 'ethers';
import { SettlementClient } from './client.js';
import { DEFAULT_PARAMS, type Deployment, deploySettlement, readDeployment } from './deploy.js';
import { connectRpc } from './rpc.js';

export const DEFAULT_DEPLOYMENT_FILE = 'deployment.json';
/** getLogs ranges, so that public nodes with range limits still answer. */
const LOG_CHUNK_BLOCKS = 10_000;

export interface DeployCliOptions {
  rpc: string;
  key?: string;
  keystore?: string;
  out: string;
  window: string;
  absToleranceWh: string;
  relToleranceBps: string;
  admin?: string;
  json?: boolean;
}

export interface StatusCliOptions {
  deployment: string;
  rpc?: string;
  json?: boolean;
}

function positiveInteger(value: string, flag: string): bigint {
  if (!/^\d+$/.test(value)) throw new Error(`${flag} ${value} is not a non-negative integer`);
  return BigInt(value);
}

/** The deployer key: --key, else $P2PEV_DEPLOYER_KEY, else an encrypted keystore. */
async function deployerKey(opts: Pick<DeployCliOptions, 'key' | 'keystore'>): Promise<string> {
  if (opts.key && opts.keystore) throw new Error('give --key or --keystore, not both');
  const key = opts.key ?? (opts.keystore ? undefined : process.env.P2PEV_DEPLOYER_KEY);
  if (key) {
    const hex = key.startsWith('0x') ? key : `0x${key}`;
    if (!/^0x[0-9a-fA-F]{64}$/.test(hex))
      throw new Error('the deploy key must be 64 hex digits (it is not shown here)');
    return hex;
  }
  if (!opts.keystore) {
    throw new Error('no deploy key: give --key HEX, --keystore FILE, or set P2PEV_DEPLOYER_KEY');
  }
  const password = process.env.P2PEV_KEYSTORE_PASSWORD;
  if (password === undefined) throw new Error('set P2PEV_KEYSTORE_PASSWORD to unlock the --keystore file');
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

/** `chain deploy`: deploys, writes the file, returns what to print. */
export async function runDeploy(opts: DeployCliOptions): Promise<string> {
  const params = {
    settlementWindowSec: positiveInteger(opts.window, '--window'),
    absToleranceWh: positiveInteger(opts.absToleranceWh, '--abs-tolerance-wh'),
    relToleranceBps: positiveInteger(opts.relToleranceBps, '--rel-tolerance-bps'),
    ...(opts.admin ? { admin: checkedAddress(opts.admin, '--admin') } : {}),
  };
  const key = await deployerKey(opts);
  const d = await deploySettlement({ rpcUrl: opts.rpc, signer: key, params, out: opts.out });
  if (opts.json) {
    const { abi: _abi, ...summary } = d;
    return JSON.stringify({ ...summary, file: opts.out });
  }
  return (
    `deployed Settlement at ${d.address} on chain ${d.chainId} (block ${d.block}, tx ${d.txHash}); ` +
    `admin ${d.params.admin}; wrote ${opts.out}`
  );
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
  sessions?: { settled: number; disputed: number; expired: number; rated: number; skipped: number };
  problems: string[];
}

/** `chain status`: what the deployment file points at, as seen by the node now. */
export async function chainStatus(opts: StatusCliOptions): Promise<ChainStatus> {
  const d: Deployment = readDeployment(opts.deployment);
  const rpcUrl = opts.rpc ?? d.rpcUrl;
  if (!rpcUrl) throw new Error(`${opts.deployment} names no RPC URL: give --rpc URL`);
  const { provider, chainId } = await connectRpc(rpcUrl);
  try {
    const [latestBlock, code] = await Promise.all([provider.getBlockNumber(), provider.getCode(d.address)]);
    const status: ChainStatus = {
      file: opts.deployment,
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
    const counts = { settled: 0, disputed: 0, expired: 0, rated: 0, skipped: 0 };
    const topics = ['Settled', 'SettledDisputed', 'SessionExpired', 'Rated', 'SettlementSkipped'].map(
      (name) => c.interface.getEvent(name)?.topicHash ?? name,
    );
    for (let from = d.block; from <= latestBlock; from += LOG_CHUNK_BLOCKS) {
      const to = Math.min(latestBlock, from + LOG_CHUNK_BLOCKS - 1);
      const logs = await provider.getLogs({
        address: d.address,
        fromBlock: from,
        toBlock: to,
        topics: [topics],
      });
      for (const log of logs) {
        const i = topics.indexOf(log.topics[0] ?? '');
        if (i === 0) counts.settled++;
        else if (i === 1) {
          counts.settled++;
          counts.disputed++;
        } else if (i === 2) counts.expired++;
        else if (i === 3) counts.rated++;
        else if (i === 4) counts.skipped++;
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
      `sessions    ${x.settled} settled (${x.disputed} disputed), ${x.expired} expired, ${x.rated} rated, ` +
        `${x.skipped} batch entries skipped`,
    );
  }
  for (const p of s.problems) lines.push(`problem     ${p}`);
  return lines.join('\n');
}

/** Registers `p2pev chain …`. */
export function registerChainCommands(program: Command): void {
  const chain = program.command('chain').description('Deploy the settlement contract and show a deployment');
  chain
    .command('deploy')
    .description('Deploy Settlement (compiling it if needed) and write the deployment file agents read')
    .requiredOption('--rpc <url>', 'JSON-RPC URL of the node, e.g. http://127.0.0.1:8545')
    .option(
      '--key <hex>',
      'deployer private key (or set P2PEV_DEPLOYER_KEY, which stays out of shell history)',
    )
    .option('--keystore <file>', 'encrypted JSON keystore; password from P2PEV_KEYSTORE_PASSWORD')
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
    .option('--admin <address>', 'admin and first operator (default: the deployer)')
    .option('--json', 'print the deployment (without its ABI) as one JSON line')
    .action(async (opts: DeployCliOptions) => {
      process.stdout.write(`${await runDeploy(opts)}\n`);
    });
  chain
    .command('status')
    .description('Show the chain, code, block, members and session counts of a deployment')
    .option('--deployment <file>', 'deployment file', DEFAULT_DEPLOYMENT_FILE)
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
    chain
      .command(action)
      .description(`${what}; needs the operator key`)
      .argument('<address>', 'the member')
      .option('--deployment <file>', 'deployment file', DEFAULT_DEPLOYMENT_FILE)
      .option('--rpc <url>', 'JSON-RPC URL (default: the one in the deployment file)')
      .option('--key <hex>', 'operator private key (or set P2PEV_DEPLOYER_KEY)')
      .option('--keystore <file>', 'encrypted JSON keystore; password from P2PEV_KEYSTORE_PASSWORD')
      .option('--json', 'print as one JSON line')
      .action(
        async (
          member: string,
          opts: { deployment: string; rpc?: string; key?: string; keystore?: string; json?: boolean },
        ) => {
          const address = checkedAddress(member, '<address>');
          const deployment = readDeployment(opts.deployment);
          const rpc = opts.rpc ?? deployment.rpcUrl;
          if (!rpc) throw new Error(`${opts.deployment} names no RPC URL: give --rpc`);
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
            };
            process.stdout.write(
              `${opts.json ? JSON.stringify(out) : `${address}: ${action} in block ${receipt.blockNumber} (status ${info.status})`}\n`,
            );
          } finally {
            provider.destroy();
          }
        },
      );
  }
}
