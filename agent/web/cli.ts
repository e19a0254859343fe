/**
 * `p2pev web`: the members' page on its own, against a chain and a deployment (the sim, an
 * operator's laptop), optionally showing the live state of agents through their control ports.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_DEPLOYMENT_FILE, deploymentPath } from '../../contracts/cli.js';
import { readDeployment } from '../../contracts/deploy.js';
import { connectRpc } from '../../contracts/rpc.js';
import { fetchDeviceState, PowerEstimator } from './device.js';
import { ChainIndexer } from './indexer.js';
import { createWebApp, portOf, serveWeb } from './server.js';

interface WebOpts {
  deployment?: string;
  config?: string;
  rpc?: string;
  port: number;
  host: string;
  confirmations: number;
  device: string[];
  tiles?: string;
  dataDir?: string;
}

export function registerWebCommands(program: Command): void {
  program
    .command('web')
    .description("Serve the members' page (stations, sessions, statements, ratings) for a deployment")
    .option(
      '--deployment <file>',
      `the deployment file (default: ${DEFAULT_DEPLOYMENT_FILE}, else the one agent.config.json names)`,
    )
    .option('-c, --config <file>', 'an agent config: use the deployment file it names (chain.deploymentFile)')
    .option('--rpc <url>', "the chain's JSON-RPC (default: the deployment's)")
    .option('--port <n>', 'HTTP port (0 = any free port)', (v) => Number(v), 8080)
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--confirmations <n>', 'index a block once it has this many confirmations', (v) => Number(v), 1)
    .option(
      '--data-dir <dir>',
      'where the index keeps its rows, to resume from them next time (default: a temporary directory, removed at exit)',
    )
    .option('--tiles <url>', "the map's tile URL ({z}/{x}/{y}), or none (default OpenStreetMap's)")
    .option(
      '--device <url>',
      "an agent's control port (http://127.0.0.1:PORT) to show live; repeatable",
      (v: string, all: string[]) => [...all, v],
      [],
    )
    .action(async (opts: WebOpts) => {
      const file = deploymentPath(opts);
      const deployment = readDeployment(file);
      const rpcUrl = opts.rpc ?? deployment.rpcUrl;
      if (!rpcUrl) throw new Error(`${file} names no RPC URL: pass --rpc URL`);
      const { provider, chainId } = await connectRpc(rpcUrl);
      if (chainId !== BigInt(deployment.chainId))
        throw new Error(`${rpcUrl} is chain ${chainId}, but ${file} is for chain ${deployment.chainId}`);
      // Two pages must not share a directory: without --data-dir, one of its own.
      const dir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'p2pev-web-'));
      const indexer = new ChainIndexer({
        provider,
        deployment,
        confirmations: opts.confirmations,
        dir,
        onError: (err) => process.stderr.write(`p2pev web: ${err.message}\n`),
      });
      await indexer.start();
      const power = new PowerEstimator();
      const web = createWebApp({
        indexer,
        ...(opts.tiles ? { tiles: opts.tiles } : {}),
        ...(opts.device.length
          ? { devices: () => Promise.all(opts.device.map((url) => fetchDeviceState(url, power))) }
          : {}),
      });
      const server = await serveWeb(web.handle, opts.host, opts.port);
      process.stdout.write(
        `members' page on http://${opts.host}:${portOf(server)}/ (indexed to block ${indexer.tip?.number})\n`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      server.close();
      web.close();
      provider.destroy();
      if (!opts.dataDir) rmSync(dir, { recursive: true, force: true });
    });
}
