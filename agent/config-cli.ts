/**
 * `p2pev config init|check`: a complete, valid start configuration for a role, every key
 * explained by a comment taken from agent/config.schema.json (the one manual), and the check
 * `p2pev run` makes, with every problem listed.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import stripJsonComments from 'strip-json-comments';
import { loadConfig, parseConfig, SCHEMA_PATH } from './core/config.js';

type Role = 'ev' | 'hcs' | 'edge';
type Json = string | number | boolean | { [k: string]: Json };
interface SchemaNode {
  description?: string;
  properties?: Record<string, SchemaNode>;
}

export interface InitOptions {
  role: Role;
  name?: string;
  /** A developer's bench (README): local anvil, mosquitto and a `p2pev sim meter`. */
  bench?: boolean;
  meterPort?: number;
  controlPort?: number;
}

/** The start configuration of a role, as values (comments are added when it is written). */
export function startConfig(o: InitOptions): Record<string, Json> {
  const name = o.name ?? (o.bench ? `bench-${o.role}` : o.role);
  const data = o.bench ? `./.data/${name}` : '/var/lib/p2pev';
  const etc = o.bench ? `./.data/${name}` : '/etc/p2pev';
  const cfg: Record<string, Json> = {
    $schema: o.bench ? './agent/config.schema.json' : '/usr/lib/p2pev/agent/config.schema.json',
    role: o.role,
    name,
    dataDir: data,
    keystore: o.bench
      ? { path: `${etc}/key.json`, passwordEnv: 'P2PEV_KEY_PASSWORD' }
      : { path: `${etc}/key.json`, passwordFile: `${etc}/key.password` },
    chain: {
      rpcUrl: 'http://127.0.0.1:8545',
      deploymentFile: o.bench ? './.data/deployment.json' : '/etc/p2pev/deployment.json',
      confirmations: 1,
    },
    mqtt: { url: 'mqtt://127.0.0.1:1883', topicPrefix: 'p2pev/v1' },
  };
  if (o.role !== 'edge') {
    cfg.meter = {
      profile: 'sdm630',
      unitId: 1,
      transport: o.bench
        ? { kind: 'tcp', host: '127.0.0.1', port: o.meterPort ?? (o.role === 'ev' ? 5021 : 5020) }
        : { kind: 'rtu', port: '/dev/p2pev-meter', baudRate: 9600, parity: 'none' },
      pollMs: 1000,
    };
    // A bench meter counts only while its control register is on; an installed HCS names its
    // wallbox or relay here (docs/CHARGERS.md).
    cfg.charger = { kind: o.bench ? 'sim-control' : 'none' };
  }
  if (o.role === 'hcs')
    cfg.hcs = {
      priceWeiPerKWh: '300000000000000',
      powerKw: 11,
      latitude: 52.52,
      longitude: 13.405,
      serviceHours: '00:00-24:00',
    };
  if (o.role === 'ev')
    cfg.ev = { latitude: 52.52, longitude: 13.405, searchRadiusM: 10000, depositWei: '10000000000000000' };
  if (o.role === 'edge') cfg.edge = { batchSize: 20, batchMaxWaitMs: 2000, suggestions: 5 };
  const defaultPort = { hcs: 8911, ev: 8912, edge: 8913 }[o.role];
  cfg.control = { host: '127.0.0.1', port: o.controlPort ?? defaultPort };
  cfg.log = { level: 'info' };
  return cfg;
}

/** Lines of at most `width` characters, each behind `// `. */
function comment(text: string, indent: string, width = 100): string[] {
  const words = text.split(/\s+/);
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && indent.length + 3 + line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines.map((l) => `${indent}// ${l}`);
}

/** The config as JSON with a comment above every key: its description from the schema. */
export function renderWithComments(value: Record<string, Json>, schema: SchemaNode, indent = ''): string {
  const inner = `${indent}  `;
  const entries = Object.entries(value);
  const lines = ['{'];
  entries.forEach(([key, v], i) => {
    const node = schema.properties?.[key];
    if (node?.description && key !== '$schema') lines.push(...comment(node.description, inner));
    const rendered =
      typeof v === 'object' && v !== null
        ? renderWithComments(v as Record<string, Json>, node ?? {}, inner)
        : JSON.stringify(v);
    lines.push(`${inner}${JSON.stringify(key)}: ${rendered}${i < entries.length - 1 ? ',' : ''}`);
  });
  lines.push(`${indent}}`);
  return lines.join('\n');
}

function role(v: string): Role {
  if (v !== 'ev' && v !== 'hcs' && v !== 'edge') throw new InvalidArgumentError('use ev, hcs or edge');
  return v;
}

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is 0..65535');
  return n;
}

export function registerConfigCommands(program: Command): void {
  const config = program
    .command('config')
    .description('Write a complete, commented start configuration for a role, or check one');
  config
    .command('init')
    .description('Write a complete, valid start config for a role, every key explained by a comment')
    .requiredOption('--role <role>', 'ev, hcs or edge', role)
    .option('-o, --out <file>', 'where to write it (- for stdout)', 'agent.config.json')
    .option('--name <name>', 'the device name (logs, status page)')
    .option('--bench', "a developer's bench: local anvil, mosquitto and `p2pev sim meter` (README)")
    .option('--meter-port <n>', "with --bench: the sim meter's TCP port (default 5020 hcs, 5021 ev)", port)
    .option('--control-port <n>', 'the control port (default 8911 hcs, 8912 ev, 8913 edge)', port)
    .option('--force', 'overwrite an existing file')
    .action(
      (o: {
        role: Role;
        out: string;
        name?: string;
        bench?: boolean;
        meterPort?: number;
        controlPort?: number;
        force?: boolean;
      }) => {
        const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as SchemaNode;
        const value = startConfig({
          role: o.role,
          ...(o.name ? { name: o.name } : {}),
          ...(o.bench ? { bench: true } : {}),
          ...(o.meterPort !== undefined ? { meterPort: o.meterPort } : {}),
          ...(o.controlPort !== undefined ? { controlPort: o.controlPort } : {}),
        });
        const text = `// p2pev ${o.role} configuration (p2pev config init). Every key is described in
// agent/config.schema.json; \`p2pev config check --config FILE\` lists every problem.
${renderWithComments(value, schema)}
`;
        // What is written must pass the check `p2pev run` makes.
        const base = o.out === '-' ? process.cwd() : dirname(resolve(o.out));
        parseConfig(JSON.parse(stripJsonComments(text)), base, 'the generated config');
        if (o.out === '-') {
          process.stdout.write(text);
          return;
        }
        if (existsSync(o.out) && !o.force)
          throw Object.assign(
            new Error(`${o.out} exists: give --force to overwrite it, or --out another file`),
            {
              name: 'UsageError',
            },
          );
        mkdirSync(dirname(resolve(o.out)), { recursive: true });
        writeFileSync(o.out, text, { mode: 0o640 });
        process.stdout.write(
          `wrote ${o.out} (${o.role} "${value.name}"); check it with p2pev config check --config ${o.out}\n`,
        );
      },
    );
  config
    .command('check')
    .description('Check a config as `p2pev run` reads it; lists every problem (exit 1 if any)')
    .option('-c, --config <file>', 'the agent config', 'agent.config.json')
    .action((opts: { config: string }) => {
      const cfg = loadConfig(opts.config);
      process.stdout.write(`${opts.config}: valid (${cfg.role} "${cfg.name}")\n`);
    });
}
