/**
 * agent.config.json: read, checked against the published JSON Schema (agent/config.schema.json,
 * which editors use to complete it), defaults filled in, relative paths made absolute. A bad
 * config stops the agent at start with the key path and what is wrong, never later.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import type { MeterConfig } from '../../drivers/index.js';

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
  meter?: MeterConfig & { pollMs: number; charger: 'none' | 'sim-control' };
  hcs?: {
    priceWeiPerKWh: string;
    powerKw: number;
    maxSessionWh: number;
    latitude: number;
    longitude: number;
    serviceHours: string;
    settlementWindowS: number;
  };
  ev?: {
    latitude?: number;
    longitude?: number;
    searchRadiusM: number;
    maxPriceWeiPerKWh?: string;
    depositWei?: string;
  };
  edge: { batchSize: number; batchMaxWaitMs: number; suggestions: number };
  timeouts: { replyMs: number; reportMs: number; chargeIdleMs: number; settleFallbackMs: number };
  control: { host: string; port?: number };
  metrics: { host: string; port?: number };
  log: { level: string };
  /** The members' page on its own port (agent/web/, docs/WEB.md); absent = control port only. */
  web?: { host: string; port?: number };
  /** Home Assistant MQTT discovery (agent/ops/homeassistant.ts); absent = off. */
  homeassistant?: import('../ops/homeassistant.js').HomeAssistantConfig;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export const SCHEMA_PATH = new URL('../config.schema.json', import.meta.url);
const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8'));
const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });
const validate = ajv.compile(schema);

/** Objects whose defaults apply even when the whole section is left out. */
const SECTIONS_WITH_DEFAULTS = ['edge', 'timeouts', 'control', 'metrics', 'log'] as const;

function describe(e: ErrorObject): string {
  const at = e.instancePath || '/';
  if (e.keyword === 'additionalProperties') {
    const key = (e.params as { additionalProperty: string }).additionalProperty;
    const known = Object.keys((e.parentSchema as { properties?: object })?.properties ?? {});
    const near = known.find((k) => k.toLowerCase().startsWith(key.toLowerCase().slice(0, 3)));
    return `${at}: unknown key "${key}"${near ? ` (did you mean "${near}"?)` : ''}`;
  }
  if (e.keyword === 'enum')
    return `${at}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  if (e.keyword === 'required')
    return `${at === '/' ? '' : at}/${(e.params as { missingProperty: string }).missingProperty}: is required`;
  return `${at}: ${e.message}`;
}

/** Checks a parsed config object; `baseDir` anchors relative paths. */
export function parseConfig(raw: unknown, baseDir: string, source = 'config'): AgentConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    throw new ConfigError(`${source}: must be a JSON object`);
  const obj = structuredClone(raw) as Record<string, unknown>;
  for (const s of SECTIONS_WITH_DEFAULTS) obj[s] ??= {};
  if (!validate(obj)) {
    const errors = (validate.errors ?? []).filter((e) => e.keyword !== 'if');
    throw new ConfigError(`${source} is invalid:\n  ${errors.map(describe).join('\n  ')}`);
  }
  const cfg = obj as unknown as AgentConfig;
  cfg.name ??= cfg.role;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  cfg.dataDir = abs(cfg.dataDir);
  cfg.keystore.path = abs(cfg.keystore.path);
  if (cfg.keystore.passwordFile) cfg.keystore.passwordFile = abs(cfg.keystore.passwordFile);
  cfg.chain.deploymentFile = abs(cfg.chain.deploymentFile);
  for (const k of ['caFile', 'certFile', 'keyFile', 'passwordFile'] as const)
    if (cfg.mqtt[k]) cfg.mqtt[k] = abs(cfg.mqtt[k]!);
  if (cfg.server) cfg.server = cfg.server.toLowerCase();
  if (cfg.meter) {
    cfg.meter.unitId ??= 1;
    cfg.meter.pollMs ??= 1000;
    cfg.meter.charger ??= 'none';
  }
  return cfg;
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
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(raw, dirname(resolve(path)), path);
}
