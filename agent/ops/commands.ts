/**
 * The operator's subcommands for an installed device: `doctor`, `status` and
 * `sessions export --ocmf`.
 */
import { writeFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { readDeployment } from '../../contracts/deploy.js';
import { loadConfig } from '../core/config.js';
import { formatChecks, runDoctor } from './doctor.js';
import { Journal } from '../core/journal.js';
import { openKeystore, readPassword } from '../core/keys.js';
import { exportOcmf } from './ocmf.js';
import { VERSION } from './telemetry.js';
import type { SessionRecord } from '../core/session.js';
import { readControlToken } from '../core/http.js';
import { controlEndpoint, fetchStatus, formatStatus, postControl } from './status.js';

/** A usage mistake: the CLI exits 2 for it (agent/cli.ts). */
class UsageError extends Error {
  override readonly name = 'UsageError';
}

function parseNonNegative(flag: string) {
  return (v: string) => {
    if (!/^[0-9]+$/.test(v))
      throw new InvalidArgumentError(`${flag} must be a whole number, not ${JSON.stringify(v)}`);
    return v;
  };
}

export function registerOpsCommands(program: Command): void {
  program
    .command('doctor')
    .description(
      'Check an installed device end to end (config, keystore, meter, charger, broker, chain, registration, disk, clock) and say what to fix',
    )
    .option('-c, --config <file>', 'the agent config', 'agent.config.json')
    .option('--timeout <ms>', 'how long to wait for each peer', (v) => Number(v), 5000)
    .option('--json', 'print JSON')
    .option(
      '--active',
      'also switch the charger on and off once (the agent must be stopped; no car should draw)',
    )
    .action(async (opts: { config: string; timeout: number; json?: boolean; active?: boolean }) => {
      if (!Number.isInteger(opts.timeout) || opts.timeout < 100)
        throw new UsageError('--timeout must be a whole number of ms, at least 100');
      const checks = await runDoctor({
        configPath: opts.config,
        timeoutMs: opts.timeout,
        ...(opts.active ? { active: true } : {}),
      });
      const failed = checks.some((c) => c.status === 'fail');
      process.stdout.write(
        opts.json ? `${JSON.stringify({ ok: !failed, checks })}\n` : `${formatChecks(checks)}\n`,
      );
      if (failed) process.exitCode = 1;
    });

  program
    .command('status')
    .description('What the running agent is doing, from its local control port (GET /status)')
    .option('-c, --config <file>', 'the agent config (its control.port)', 'agent.config.json')
    .option('-p, --port <n>', 'the control port, instead of reading the config', (v) => Number(v))
    .option('--host <host>', "the control host (default: the config's, or 127.0.0.1)")
    .option('--json', 'print the JSON the agent returned')
    .option('--wait <seconds>', 'wait this long for the agent to answer (one that is just starting)', (v) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('a number of seconds');
      return n;
    })
    .action(async (opts: { config: string; port?: number; host?: string; json?: boolean; wait?: number }) => {
      const endpoint = controlEndpoint(opts);
      const deadline = Date.now() + (opts.wait ?? 0) * 1000;
      let status: Record<string, unknown>;
      for (;;) {
        try {
          status = await fetchStatus(endpoint);
          break;
        } catch (err) {
          if (Date.now() >= deadline) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      process.stdout.write(opts.json ? `${JSON.stringify(status)}\n` : `${formatStatus(status)}\n`);
    });

  program
    .command('control <action> [json]')
    .description(
      'A control action on the running agent (POST /<action>, e.g. charge \'{"targetWh":2000}\' or stop), with the token from <dataDir>/control.token',
    )
    .option('-c, --config <file>', 'the agent config (its control.port and dataDir)', 'agent.config.json')
    .action(async (action: string, json: string | undefined, opts: { config: string }) => {
      let body: Record<string, unknown> = {};
      if (json) {
        try {
          body = JSON.parse(json) as Record<string, unknown>;
        } catch (err) {
          throw new Error(`the body is not JSON (${(err as Error).message}): e.g. '{"targetWh":2000}'`);
        }
      }
      const cfg = loadConfig(opts.config);
      const answer = await postControl(controlEndpoint(opts), readControlToken(cfg.dataDir), action, body);
      process.stdout.write(`${JSON.stringify(answer)}\n`);
    });

  const sessions = program.command('sessions').description("This device's sessions, from its journal");
  sessions
    .command('export')
    .description(
      'Export the charge point\'s signed sessions as OCMF (one "OCMF|…|…" line each), with their bills in --json',
    )
    .option('-c, --config <file>', 'the agent config', 'agent.config.json')
    .option('--ocmf', 'Open Charge Metering Format (the only format so far)')
    .option('--from-seq <n>', 'start at this session number', parseNonNegative('--from-seq'))
    .option('--settled', 'only sessions settled on chain')
    .option('--json', 'print JSON: public key, sessions with their OCMF and bill, gaps in the numbering')
    .option('-o, --out <file>', 'write to a file instead of stdout')
    .option('--password-env <name>', 'environment variable holding the keystore password')
    .option('--password-file <file>', 'file holding the keystore password')
    .action(
      async (opts: {
        config: string;
        ocmf?: boolean;
        fromSeq?: string;
        settled?: boolean;
        json?: boolean;
        out?: string;
        passwordEnv?: string;
        passwordFile?: string;
      }) => {
        if (!opts.ocmf) throw new UsageError('say which format: p2pev sessions export --ocmf');
        const cfg = loadConfig(opts.config);
        if (cfg.role !== 'hcs')
          throw new Error(
            `OCMF data sets are signed by the charge point; ${opts.config} is a${cfg.role === 'ev' ? 'n ev' : 'n edge'} (run this on the HCS)`,
          );
        const deployment = readDeployment(cfg.chain.deploymentFile);
        const pwSource =
          opts.passwordEnv || opts.passwordFile
            ? {
                ...(opts.passwordEnv ? { passwordEnv: opts.passwordEnv } : {}),
                ...(opts.passwordFile ? { passwordFile: opts.passwordFile } : {}),
              }
            : cfg.keystore;
        const key = await openKeystore(cfg.keystore.path, readPassword(pwSource));
        // Read-only: the running agent keeps the journal open for writing.
        const entries = Journal.read(cfg.dataDir);
        const records = [...entries].filter(([k]) => k.startsWith('s:')).map(([, v]) => v as SessionRecord);
        const counter = BigInt(String(entries.get('seq') ?? '0').replace(/n$/, ''));
        const result = exportOcmf({
          records,
          counter,
          domain: {
            chainId: BigInt(deployment.chainId),
            verifyingContract: deployment.address.toLowerCase(),
          },
          address: key.address,
          privateKey: key.privateKey,
          version: VERSION,
          ...(opts.fromSeq ? { fromSeq: BigInt(opts.fromSeq) } : {}),
          ...(opts.settled ? { settledOnly: true } : {}),
        });
        const text = opts.json
          ? `${JSON.stringify(result, null, 2)}\n`
          : result.sessions.map((s) => `${s.ocmf}\n`).join('');
        if (opts.out) writeFileSync(opts.out, text);
        else process.stdout.write(text);
        if (!opts.json) {
          process.stderr.write(
            `${result.sessions.length} session(s), ${result.signatureAlgorithm}, address ${result.address}; public key (DER SubjectPublicKeyInfo, hex):\n${result.publicKey}\n${result.publicKeyPem}` +
              'signed by this device, not by a certified meter: not Eichrecht-conformant (docs/INSTALL.md)\n',
          );
          for (const g of result.gaps) process.stderr.write(`no data set for T${g.seq}: ${g.reason}\n`);
        }
      },
    );
}
