/**
 * The agent's own subcommands: `run`, `keys new|show|import`, `register`.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { keccak256, toUtf8Bytes, Wallet } from 'ethers';
import { MemberRole } from '../contracts/client.js';
import { Chain } from './core/chain.js';
import { loadConfig } from './core/config.js';
import { createKeystore, keystoreAddress, openKeystore, readPassword } from './core/keys.js';
import { createLogger } from './core/log.js';
import { Agent } from './core/runtime.js';

interface PasswordOpts {
  passwordEnv?: string;
  passwordFile?: string;
}

const passwordOptions = (cmd: Command) =>
  cmd
    .option(
      '--password-env <name>',
      'environment variable holding the keystore password',
      'P2PEV_KEY_PASSWORD',
    )
    .option('--password-file <file>', 'file holding the keystore password');

function print(json: boolean, data: Record<string, unknown>, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(data)}\n` : `${text}\n`);
}

export function registerAgentCommands(program: Command): void {
  program
    .command('run')
    .description('Run one agent (ev, hcs or edge) from its config, until SIGINT/SIGTERM')
    .option('-c, --config <file>', 'the agent config', 'agent.config.json')
    .action(async (opts: { config: string }) => {
      const cfg = loadConfig(opts.config);
      let agent: Agent | undefined;
      // ethers' HTTP layer can leave a refused connection's promise unawaited while the node is
      // away; Node would end the process for it. A device runs for years: log it and carry on.
      process.on('unhandledRejection', (reason) => {
        const err = reason instanceof Error ? reason.message : String(reason);
        if (agent) agent.log.warn({ err }, 'unhandled rejection; carrying on');
        else process.stderr.write(`p2pev: unhandled rejection: ${err}\n`);
      });
      try {
        agent = await Agent.start(cfg);
      } catch (err) {
        // A start that failed half-way (its control port taken, say) has left the broker
        // connection and the meter open: the process would live on doing nothing, and systemd
        // (Restart=always) would never restart it. Say why and end (issue 15's chaos run: an EV
        // restarted onto a port taken meanwhile stayed so for the rest of the run).
        process.stderr.write(`p2pev: ${(err as Error).message}\n`);
        process.exit(1);
      }
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await agent?.stop();
    });

  const keys = program.command('keys').description('Device keys in an encrypted keystore (mode 0600)');
  passwordOptions(
    keys
      .command('new')
      .description('Create a new key; prints its address')
      .requiredOption('-k, --keystore <file>', 'where to write the keystore')
      .option('--scrypt-n <n>', 'scrypt cost (default 131072; lower only for tests)', (v) => Number(v))
      .option('--json', 'print JSON'),
  ).action(async (opts: PasswordOpts & { keystore: string; scryptN?: number; json?: boolean }) => {
    const address = await createKeystore(
      opts.keystore,
      readPassword(opts),
      opts.scryptN ? { scryptN: opts.scryptN } : {},
    );
    print(!!opts.json, { address, keystore: opts.keystore }, address);
  });
  keys
    .command('show')
    .description('The address in a keystore (no password needed)')
    .requiredOption('-k, --keystore <file>', 'the keystore')
    .option('--json', 'print JSON')
    .action((opts: { keystore: string; json?: boolean }) => {
      const address = keystoreAddress(opts.keystore);
      print(!!opts.json, { address, keystore: opts.keystore }, address);
    });
  passwordOptions(
    keys
      .command('import')
      .description('Encrypt an existing private key (read from a file, never from the command line)')
      .requiredOption('-k, --keystore <file>', 'where to write the keystore')
      .requiredOption('--private-key-file <file>', 'file holding the 0x private key')
      .option('--scrypt-n <n>', 'scrypt cost', (v) => Number(v))
      .option('--json', 'print JSON'),
  ).action(
    async (
      opts: PasswordOpts & { keystore: string; privateKeyFile: string; scryptN?: number; json?: boolean },
    ) => {
      const privateKey = readFileSync(opts.privateKeyFile, 'utf8').trim();
      try {
        new Wallet(privateKey);
      } catch {
        throw new Error(`${opts.privateKeyFile} does not hold a 0x-prefixed 32-byte private key`);
      }
      const address = await createKeystore(opts.keystore, readPassword(opts), {
        privateKey,
        ...(opts.scryptN ? { scryptN: opts.scryptN } : {}),
      });
      print(!!opts.json, { address, keystore: opts.keystore }, address);
    },
  );

  program
    .command('register')
    .description(
      "Register this device on the chain with its role and profile (an operator's check then verifies it)",
    )
    .option('-c, --config <file>', 'the agent config', 'agent.config.json')
    .option('--identity <text>', 'identity documents to commit to (only their hash goes on chain)', '')
    .option('--json', 'print JSON')
    .action(async (opts: { config: string; identity: string; json?: boolean }) => {
      const cfg = loadConfig(opts.config);
      if (cfg.role === 'edge') throw new Error('an edge is not a member; it needs no registration');
      const key = await openKeystore(cfg.keystore.path, readPassword(cfg.keystore));
      const log = createLogger({ level: 'warn' });
      const chain = await Chain.connect({ ...cfg.chain, privateKey: key.privateKey, log });
      try {
        const info = await chain.client.authInfo(key.address);
        if (info.role !== MemberRole.None) {
          print(
            !!opts.json,
            { address: key.address, role: info.role, status: info.status, already: true },
            `${key.address} is registered already (status ${info.status})`,
          );
          return;
        }
        const commitment = keccak256(toUtf8Bytes(`${key.address}:${opts.identity}`));
        const station = cfg.hcs;
        if (cfg.role === 'hcs' && !station) throw new Error("a station's config needs its hcs section");
        const receipt =
          cfg.role === 'ev' || !station
            ? await chain.send('register', (c) => c.register('ev', commitment))
            : await chain.send('register', (c) =>
                c.register('hcs', {
                  identityCommitment: commitment,
                  latMicroDeg: Math.round(station.latitude * 1e6),
                  lonMicroDeg: Math.round(station.longitude * 1e6),
                  priceWeiPerKWh: BigInt(station.priceWeiPerKWh),
                  powerW: Math.round(station.powerKw * 1000),
                  profileHash: keccak256(
                    toUtf8Bytes(JSON.stringify({ name: cfg.name, hours: station.serviceHours })),
                  ),
                }),
              );
        print(
          !!opts.json,
          { address: key.address, role: cfg.role, tx: receipt.hash, block: receipt.blockNumber },
          `${key.address} registered as ${cfg.role} in block ${receipt.blockNumber} (awaiting the operator's verification)`,
        );
      } finally {
        chain.close();
      }
    });
}
