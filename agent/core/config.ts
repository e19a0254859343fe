/**
 * agent.config.json: read (JSON with comments), checked against the published JSON Schema
 * (agent/config.schema.json, which editors use to complete it), defaults filled in, relative paths
 * made absolute. A bad config stops the agent at start with every problem, each with the key path
 * and what is wrong, never later.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { ErrorObject } from 'ajv';
import leven from 'leven';
import stripJsonComments from 'strip-json-comments';
import type { ChargerConfig } from '../../drivers/chargers/types.js';
import type { MeterConfig } from '../../drivers/index.js';
import { validate as compiledValidate } from './generated/config-validator.js';

export interface AgentConfig {
  role: 'ev' | 'hcs' | 'edge';
  name: string;
  dataDir: string;
  keystore: { path: string; passwordEnv: string; passwordFile?: string };
  chain: { rpcUrl: string; deploymentFile: string; confirmations: number; retryMaxMs: number };
  mqtt: {
    url: string;
    username?: string;
    passwordEnv?: string;
    passwordFile?: string;
    caFile?: string;
    certFile?: string;
    keyFile?: string;
    topicPrefix: string;
    keepaliveS: number;
  };
  server?: string;
  meter?: MeterConfig & { pollMs: number };
  /** What switches the power (docs/CHARGERS.md); kind "none" when left out. */
  charger: ChargerConfig;
  hcs?: {
    priceWeiPerKWh: string;
    powerKw: number;
    maxSessionWh: number;
    latitude: number;
    longitude: number;
    serviceHours: string;
    settlementWindowS: number;
    settleMarginS: number;
  };
  receipts: { wh: number; intervalMs: number; graceMs: number };
  ev?: {
    latitude?: number;
    longitude?: number;
    searchRadiusM: number;
    maxPriceWeiPerKWh?: string;
    depositWei?: string;
  };
  edge: { batchSize: number; batchMaxWaitMs: number; suggestions: number };
  timeouts: { replyMs: number; reportMs: number; chargeIdleMs: number; settleFallbackMs: number };
  control: { host: string; port?: number; allowedHosts?: string[] };
  metrics: { host: string; port?: number };
  log: { level: string };
  /** The members' page on its own port (agent/web/, docs/WEB.md); absent = control port only. */
  web?: { host: string; port?: number; tiles?: string; tileAttribution?: string };
  /** Home Assistant MQTT discovery (agent/ops/homeassistant.ts); absent = off. */
  homeassistant?: import('../ops/homeassistant.js').HomeAssistantConfig;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export const SCHEMA_PATH = new URL('../config.schema.json', import.meta.url);
// The schema compiled ahead of time by ajv (config-validator.build.ts; every error, defaults filled
// in, each error with its schema for "did you mean"): an agent does not load ajv to start. The
// schema is the type's source of truth for what a valid config holds; the guard says so.
const validate = compiledValidate as ((data: unknown) => data is AgentConfig) & {
  errors?: ErrorObject[] | null;
};

/** Objects whose defaults apply even when the whole section is left out. */
const SECTIONS_WITH_DEFAULTS = ['edge', 'timeouts', 'receipts', 'control', 'metrics', 'log'] as const;

/** The closest of `known` to a misspelt `word`, if it is close enough to be what was meant. */
export function nearest(word: string, known: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = leven(w, k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function describe(e: ErrorObject): string {
  const at = e.instancePath || '/';
  const parent = e.parentSchema as { description?: string; properties?: object } | undefined;
  if (e.keyword === 'additionalProperties') {
    const key = (e.params as { additionalProperty: string }).additionalProperty;
    const near = nearest(key, Object.keys(parent?.properties ?? {}));
    return `${at}: unknown key "${key}"${near ? ` (did you mean "${near}"?)` : ''}`;
  }
  if (e.keyword === 'enum') {
    const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
    const near = typeof e.data === 'string' ? nearest(e.data, allowed.map(String)) : undefined;
    return `${at}: ${JSON.stringify(e.data)} is not one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}${near ? ` (did you mean "${near}"?)` : ''}`;
  }
  if (e.keyword === 'required')
    return `${at === '/' ? '' : at}/${(e.params as { missingProperty: string }).missingProperty}: is required`;
  // A key the other settings rule out (a serial setting on a TCP meter): the schema says why.
  if (e.keyword === 'not') return `${at}: not allowed here: ${parent?.description ?? 'remove it'}`;
  if (e.keyword === 'type' || e.keyword === 'pattern' || e.keyword === 'const')
    return `${at}: ${e.message} (got ${JSON.stringify(e.data)})${parent?.description ? `: ${parent.description}` : ''}`;
  return `${at}: ${e.message} (got ${JSON.stringify(e.data)})`;
}

/** Every problem, once each, in the order of the file (an `if` failing is only the cause of others). */
export function describeErrors(errors: readonly ErrorObject[]): string[] {
  const lines = errors.filter((e) => e.keyword !== 'if').map(describe);
  return [...new Set(lines)];
}

/** A JSON.parse error as line and column, with the line and a caret under the place. */
export function jsonSyntaxError(path: string, text: string, err: Error): string {
  const message = err.message.replace(/ in JSON at position \d+.*$| \(line \d+ column \d+\)$/s, '');
  let offset: number | undefined;
  const pos = /position (\d+)/.exec(err.message);
  const lc = /line (\d+) column (\d+)/.exec(err.message);
  if (pos) offset = Number(pos[1]);
  let line: number;
  let column: number;
  if (offset !== undefined) {
    const before = text.slice(0, offset).split('\n');
    line = before.length;
    column = (before.at(-1) ?? '').length + 1;
  } else if (lc) {
    line = Number(lc[1]);
    column = Number(lc[2]);
  } else {
    // Unexpected end of the text: the place is its end.
    const lines = text.split('\n');
    line = lines.length;
    column = (lines.at(-1) ?? '').length + 1;
  }
  const source = text.split('\n')[line - 1] ?? '';
  return `${path}:${line}:${column}: not valid JSON: ${message}\n  ${source}\n  ${' '.repeat(Math.max(0, column - 1))}^`;
}

/** Checks a parsed config object; `baseDir` anchors relative paths. */
export function parseConfig(raw: unknown, baseDir: string, source = 'config'): AgentConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    throw new ConfigError(`${source}: must be a JSON object`);
  const obj = structuredClone(raw) as Record<string, unknown>;
  movedChargerKey(obj, source);
  for (const s of SECTIONS_WITH_DEFAULTS) obj[s] ??= {};
  if (!validate(obj)) {
    const lines = describeErrors(validate.errors ?? []);
    throw new ConfigError(
      `${source} is invalid (${lines.length} problem${lines.length === 1 ? '' : 's'}; the keys are described in agent/config.schema.json):\n  ${lines.join('\n  ')}`,
    );
  }
  const cfg: AgentConfig = obj;
  cfg.name ??= cfg.role;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  cfg.dataDir = abs(cfg.dataDir);
  cfg.keystore.path = abs(cfg.keystore.path);
  if (cfg.keystore.passwordFile) cfg.keystore.passwordFile = abs(cfg.keystore.passwordFile);
  cfg.chain.deploymentFile = abs(cfg.chain.deploymentFile);
  for (const k of ['caFile', 'certFile', 'keyFile', 'passwordFile'] as const) {
    const path = cfg.mqtt[k];
    if (path) cfg.mqtt[k] = abs(path);
  }
  if (cfg.server) cfg.server = cfg.server.toLowerCase();
  // meter.unitId and meter.pollMs have their defaults in the schema (ajv's useDefaults fills them
  // in above): one place for each. The charger's section is "none" when left out.
  cfg.charger ??= { kind: 'none' };
  if (cfg.charger.kind === 'ocpp' && cfg.charger.passwordFile)
    cfg.charger.passwordFile = abs(cfg.charger.passwordFile);
  return cfg;
}

/**
 * `meter.charger` was where the sim's switch lived; the charger is its own section now. An old
 * config stops with what to write instead, rather than running a station that switches nothing.
 */
function movedChargerKey(obj: Record<string, unknown>, source: string): void {
  const meter = obj.meter as Record<string, unknown> | undefined;
  if (!meter || !('charger' in meter)) return;
  const old = JSON.stringify(meter.charger);
  const instead =
    meter.charger === 'sim-control'
      ? '"charger": { "kind": "sim-control" }'
      : '"charger": { "kind": "none" }';
  throw new ConfigError(
    `${source}: /meter/charger (${old}) has moved to its own section: remove it from "meter" and write ${instead} at the top level ` +
      '(or { "kind": "ocpp" | "modbus" | "gpio", … } for a real charger, docs/CHARGERS.md)',
  );
}

export function loadConfig(path: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  let raw: unknown;
  try {
    // `//` and `/* */` comments are allowed (`p2pev config init` writes them); they become
    // spaces, so a syntax error's line and column still point into the file as written.
    raw = JSON.parse(stripJsonComments(text, { trailingCommas: false }));
  } catch (err) {
    throw new ConfigError(jsonSyntaxError(path, text, err as Error));
  }
  return parseConfig(raw, dirname(resolve(path)), path);
}
