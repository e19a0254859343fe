/**
 * The operator's subcommands for an installed device: `doctor`, `status` and
 * `sessions export --ocmf`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { readDeployment } from '../../contracts/deploy.js';
import { loadConfig } from '../core/config.js';
import { formatChecks, runDoctor } from './doctor.js';
import { Journal } from '../core/journal.js';
import { openKeystore, readPassword } from '../core/keys.js';
import { exportOcmf } from './ocmf.js';
import { VERSION } from './telemetry.js';
import type { SessionRecord } from '../core/session.js';
import { controlEndpoint, fetchStatus, formatStatus } from './status.js';

function parseNonNegative(flag: string) {
  return (v: string) => {
    if (!/^[0-9]+$/.test(v)) throw new Error(`${flag} must be a whole number, not ${JSON.stringify(v)}`);
    return v;
  };
}

export function registerOpsCommands(program: Command): void {
  const broker = program.command('broker').description("The network's MQTT broker (mosquitto)");
  broker
    .command('config')
    .description(
      "Write mosquitto's configuration, password file and ACL for the network's members: only members connect, each reads only its own inbox and publishes only as itself",
    )
    .requiredOption(
      '--members <file>',
      'JSON: [{ "address": "0x…", "role": "ev"|"hcs"|"edge", "name"?: "…" }]',
    )
    .requiredOption('--out <dir>', 'where to write mosquitto.conf, passwd, acl and passwords/<address>')
    .option('--cafile <file>', "TLS: the operator's CA certificate (PEM)")
    .option('--certfile <file>', "TLS: the broker's certificate (PEM), signed by the CA")
    .option('--keyfile <file>', "TLS: the broker's private key (PEM)")
    .option(
      '--require-certificate',
      'refuse clients without a certificate from the CA (its CN = the address)',
    )
    .option('--port <n>', 'listener port (default 8883 with TLS, 1883 without)', (v) => Number(v))
    .option('--host <addr>', 'bind address (default 0.0.0.0 with TLS, 127.0.0.1 without)')
    .option('--topic-prefix <prefix>', "the agents' mqtt.topicPrefix", 'p2pev/v1')
    .option('--persistence-dir <dir>', "mosquitto's persistence directory (default <out>/data)")
    .action(
      async (opts: {
        members: string;
        out: string;
        cafile?: string;
        certfile?: string;
        keyfile?: string;
        requireCertificate?: boolean;
        port?: number;
        host?: string;
        topicPrefix: string;
        persistenceDir?: string;
      }) => {
        const { parseMembers, writeBrokerConfig } = await import('./broker.js');
        let raw: unknown;
        try {
          raw = JSON.parse(readFileSync(opts.members, 'utf8'));
        } catch (err) {
          throw new Error(`--members ${opts.members}: ${(err as Error).message}`);
        }
        if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port > 0 && opts.port < 65536))
          throw new Error('--port must be a TCP port number');
        const result = writeBrokerConfig({
          members: parseMembers(raw, opts.members),
          out: opts.out,
          topicPrefix: opts.topicPrefix,
          ...(opts.cafile ? { caFile: opts.cafile } : {}),
          ...(opts.certfile ? { certFile: opts.certfile } : {}),
          ...(opts.keyfile ? { keyFile: opts.keyfile } : {}),
          ...(opts.requireCertificate ? { requireCertificate: true } : {}),
          ...(opts.port !== undefined ? { port: opts.port } : {}),
          ...(opts.host ? { host: opts.host } : {}),
          ...(opts.persistenceDir ? { persistenceDir: opts.persistenceDir } : {}),
        });
        process.stdout.write(
          `wrote ${result.conf}, ${result.passwd}, ${result.acl}\n` +
            `${result.newPasswords.length} new member password(s) in ${opts.out}/passwords/ (mode 0600): ` +
            'give each device its file as mqtt.passwordFile, with mqtt.username its address\n' +
            `start: mosquitto -c ${result.conf}  (reload after a change: kill -HUP <pid>)\n`,
        );
      },
    );

  program
    .command('doctor')
    .description(
      'Check an installed device end to end (config, keystore, meter, broker, chain, registration, disk, clock) and say what to fix',
    )
    .option('-c, --config <file>', 'the agent config', 'agent.config.json')
    .option('--timeout <ms>', 'how long to wait for each peer', (v) => Number(v), 5000)
    .option('--json', 'print JSON')
    .action(async (opts: { config: string; timeout: number; json?: boolean }) => {
      if (!Number.isInteger(opts.timeout) || opts.timeout < 100)
        throw new Error('--timeout must be a whole number of ms, at least 100');
      const checks = await runDoctor({ configPath: opts.config, timeoutMs: opts.timeout });
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
    .action(async (opts: { config: string; port?: number; host?: string; json?: boolean }) => {
      const status = await fetchStatus(controlEndpoint(opts));
      process.stdout.write(opts.json ? `${JSON.stringify(status)}\n` : `${formatStatus(status)}\n`);
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
        if (!opts.ocmf) throw new Error('say which format: p2pev sessions export --ocmf');
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
            `${result.sessions.length} session(s); public key ${result.publicKey} (${result.signatureAlgorithm}, address ${result.address})\n`,
          );
          for (const g of result.gaps) process.stderr.write(`no data set for T${g.seq}: ${g.reason}\n`);
        }
      },
    );
}
