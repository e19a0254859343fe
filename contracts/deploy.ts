/**
 * Deploys the Settlement contract and reads/writes the deployment file the agents use
 * (chain id, address, block, ABI, parameters).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ContractFactory, type Signer, Wallet } from 'ethers';
import { loadArtifact } from './build.js';
import { connectRpc } from './rpc.js';

/** Deploy-time constants of the contract (immutables). */
export interface SettlementParams {
  /** Gets the admin role (grants operators; handed over only after `adminDelaySec`); the deployer if omitted. */
  admin?: string;
  /** Gets the operator role (verifies, suspends, revokes members); the admin if omitted. */
  operator?: string;
  /** Seconds an admin transfer waits before the new admin can accept it. */
  adminDelaySec: bigint;
  /** Withdrawal notice = longest settlement window, seconds. */
  settlementWindowSec: bigint;
  /** Absolute reconciliation tolerance, Wh. */
  absToleranceWh: bigint;
  /** Relative reconciliation tolerance, basis points of the larger report. */
  relToleranceBps: bigint;
}

export const DEFAULT_PARAMS: SettlementParams = {
  adminDelaySec: 259_200n,
  settlementWindowSec: 86_400n,
  absToleranceWh: 50n,
  relToleranceBps: 200n,
};

/** The deployment file (JSON): everything an agent needs to talk to the contract. */
export interface Deployment {
  contract: 'Settlement';
  address: string;
  chainId: number;
  /** Block of the deployment: where an indexer starts reading events. */
  block: number;
  txHash: string;
  deployer: string;
  /** The RPC used to deploy; agents may use another one for the same chain. */
  rpcUrl?: string;
  params: {
    admin: string;
    operator?: string;
    adminDelaySec?: string;
    settlementWindowSec: string;
    absToleranceWh: string;
    relToleranceBps: string;
  };
  compiler: string;
  sourceHash: string;
  deployedAt: string;
  // biome-ignore lint/suspicious/noExplicitAny: a JSON ABI, handed to ethers as is
  abi: any[];
}

export interface DeployOptions {
  /** Needed when `signer` is a private key; otherwise the signer's provider is used. */
  rpcUrl?: string;
  /** A connected ethers signer, or a 0x private key. */
  signer: Signer | string;
  params?: Partial<SettlementParams>;
  /** Also write the deployment file here. */
  out?: string;
}

async function resolveSigner(signer: Signer | string, rpcUrl?: string): Promise<Signer> {
  if (typeof signer !== 'string') {
    if (!signer.provider)
      throw new Error('the deploy signer has no provider: connect it or pass rpcUrl and a key');
    return signer;
  }
  if (!rpcUrl) throw new Error('rpcUrl is needed to deploy with a private key');
  const { provider } = await connectRpc(rpcUrl);
  try {
    return new Wallet(signer, provider);
  } catch {
    // Never echo the key itself.
    throw new Error('the deploy key is not a valid secp256k1 private key (expected 0x and 64 hex digits)');
  }
}

/** Deploys Settlement (compiling first if needed) and waits for it to be mined. */
export async function deploySettlement(options: DeployOptions): Promise<Deployment> {
  const signer = await resolveSigner(options.signer, options.rpcUrl);
  const provider = signer.provider;
  if (!provider) throw new Error('the deployer signer has no provider: give it one connected to the chain');
  const deployer = await signer.getAddress();
  const params = { ...DEFAULT_PARAMS, ...options.params };
  const admin = params.admin ?? deployer;
  const operator = params.operator ?? admin;
  const artifact = await loadArtifact('Settlement');
  const factory = new ContractFactory(artifact.abi, artifact.bytecode, signer);
  const contract = await factory.deploy(
    admin,
    operator,
    params.adminDelaySec,
    params.settlementWindowSec,
    params.absToleranceWh,
    params.relToleranceBps,
  );
  const tx = contract.deploymentTransaction();
  if (!tx) throw new Error('the deployment sent no transaction');
  const receipt = await tx.wait();
  if (receipt?.status !== 1) throw new Error(`deployment transaction ${tx.hash} failed`);
  const { chainId } = await provider.getNetwork();
  const deployment: Deployment = {
    contract: 'Settlement',
    address: await contract.getAddress(),
    chainId: Number(chainId),
    block: receipt.blockNumber,
    txHash: tx.hash,
    deployer,
    rpcUrl: options.rpcUrl,
    params: {
      admin,
      operator,
      adminDelaySec: String(params.adminDelaySec),
      settlementWindowSec: String(params.settlementWindowSec),
      absToleranceWh: String(params.absToleranceWh),
      relToleranceBps: String(params.relToleranceBps),
    },
    compiler: artifact.compiler.version,
    sourceHash: artifact.sourceHash,
    deployedAt: new Date().toISOString(),
    abi: artifact.abi,
  };
  if (options.out) writeDeployment(options.out, deployment);
  return deployment;
}

export function writeDeployment(path: string, deployment: Deployment): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(deployment, null, 2)}\n`);
}

/** Reads a deployment file, with an error that names the file and what is wrong with it. */
export function readDeployment(path: string): Deployment {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new Error(
      `no deployment file at ${path}: give --deployment FILE or --config agent.config.json (its chain.deploymentFile), or create it with \`p2pev chain deploy --rpc URL --out ${path}\``,
    );
  }
  let d: Partial<Deployment>;
  try {
    d = JSON.parse(text);
  } catch {
    throw new Error(`deployment file ${path} is not JSON`);
  }
  if (typeof d.address !== 'string' || typeof d.chainId !== 'number' || !Array.isArray(d.abi)) {
    throw new Error(`deployment file ${path} lacks address, chainId or abi`);
  }
  return d as Deployment;
}
