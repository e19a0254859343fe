/**
 * What an installer sees for a bad agent.config.json: every problem (not the first line), JSON
 * syntax errors as line and column, "did you mean" for misspelt keys and values, per-transport
 * rules for the meter, and a schema that documents every key (the configuration manual).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import stripJsonComments from 'strip-json-comments';
import { renderWithComments, startConfig } from '../agent/config-cli.js';
import { ConfigError, loadConfig, nearest, parseConfig, SCHEMA_PATH } from '../agent/core/config.js';

const run = promisify(execFile);
const BIN = new URL('../bin/p2pev.mjs', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'p2pev-config-'));

const good = () => ({
  role: 'hcs',
  dataDir: './data',
  keystore: { path: './key.json' },
  chain: { rpcUrl: 'http://127.0.0.1:8545', deploymentFile: './deployment.json' },
  mqtt: { url: 'mqtt://127.0.0.1:1883' },
  meter: { profile: 'sdm630', unitId: 1, transport: { kind: 'rtu', port: '/dev/ttyUSB0', baudRate: 9600 } },
  hcs: { priceWeiPerKWh: '300000000000000', latitude: 52.5, longitude: 13.4 },
});

function problems(raw: unknown): string {
  try {
    parseConfig(raw, dir, 'agent.config.json');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('the config was accepted');
}

describe('config errors', () => {
  it('accepts a good config, with plausibility settings, and fills the defaults', () => {
    const raw = good() as ReturnType<typeof good> & { meter: Record<string, unknown> };
    raw.meter.plausibility = { maxPowerW: 11500, confirmReads: 3 };
    const cfg = parseConfig(raw, dir);
    expect(cfg.meter!.plausibility).toEqual({ maxPowerW: 11500, confirmReads: 3 });
    expect(cfg.meter!.pollMs).toBe(1000);
    expect(cfg.timeouts.replyMs).toBe(10000);
  });

  it('lists every problem, each with its place and a "did you mean" where one is near', () => {
    const raw = good() as unknown as Record<string, Record<string, unknown>>;
    raw.meter!.unitid = 3;
    raw.meter!.transport = { kind: 'rtu', port: '/dev/ttyUSB0', baudrate: 19200 };
    raw.mqtt!.keepalive = 30;
    raw.meter!.profile = 'sdm360';
    raw.meter!.plausibility = { maxPowerKw: 11 };
    const text = problems(raw);
    expect(text).toContain('5 problems');
    expect(text).toContain('/meter: unknown key "unitid" (did you mean "unitId"?)');
    expect(text).toContain('/meter/transport: unknown key "baudrate" (did you mean "baudRate"?)');
    expect(text).toContain('/mqtt: unknown key "keepalive" (did you mean "keepaliveS"?)');
    expect(text).toMatch(/\/meter\/profile: "sdm360" is not one of .* \(did you mean "sdm630"\?\)/);
    expect(text).toContain('/meter/plausibility: unknown key "maxPowerKw" (did you mean "maxPowerW"?)');
  });

  it('gives no "did you mean" for a key nothing resembles', () => {
    const raw = good() as unknown as Record<string, unknown>;
    raw.flux = 1;
    expect(problems(raw)).toMatch(/\/: unknown key "flux"\n?$/);
  });

  it('checks the meter transport by kind: rtu needs a device path, tcp a host and a port number', () => {
    const raw = good() as unknown as { meter: { transport: unknown } };
    raw.meter.transport = { kind: 'rtu', port: 502 };
    expect(problems(raw)).toContain('/meter/transport/port: must be string (got 502)');
    raw.meter.transport = { kind: 'rtu' };
    expect(problems(raw)).toContain('/meter/transport/port: is required');
    raw.meter.transport = { kind: 'tcp', port: 502 };
    expect(problems(raw)).toContain('/meter/transport/host: is required');
    raw.meter.transport = { kind: 'tcp', host: '10.0.0.5', port: '/dev/ttyUSB0' };
    expect(problems(raw)).toContain('/meter/transport/port: must be integer (got "/dev/ttyUSB0")');
    raw.meter.transport = { kind: 'tcp', host: '10.0.0.5', port: 502, baudRate: 9600 };
    expect(problems(raw)).toContain('/meter/transport/baudRate: not allowed here: only for a serial line');
    raw.meter.transport = { kind: 'rtu-over-tcp', host: '10.0.0.5', port: 8899 };
    expect(() => parseConfig(raw, dir)).not.toThrow();
  });

  it('a generic meter needs its register map', () => {
    const raw = good() as unknown as { meter: { profile: string } };
    raw.meter.profile = 'generic';
    expect(problems(raw)).toContain('/meter/generic: is required');
  });

  it('Home Assistant needs its own broker URL', () => {
    const raw = good() as unknown as Record<string, unknown>;
    raw.homeassistant = { intervalS: 30 };
    expect(problems(raw)).toContain('/homeassistant/url: is required');
  });

  it('a JSON syntax error gives line and column and shows the place', () => {
    const file = join(dir, 'syntax.json');
    const text = JSON.stringify(good(), null, 2).replace('"chain": {', '"chain": {,');
    writeFileSync(file, text);
    const lineNo = text.split('\n').findIndex((l) => l.includes('"chain": {,')) + 1;
    const column = text.split('\n')[lineNo - 1]!.indexOf(',') + 1;
    expect(() => loadConfig(file)).toThrow(`${file}:${lineNo}:${column}: not valid JSON`);
    expect(() => loadConfig(file)).toThrow(/\n {2} {2}"chain": \{,\n {2} {12}\^$/);
  });

  it('the nearest known word is only offered when it is near', () => {
    expect(nearest('baudrate', ['baudRate', 'parity'])).toBe('baudRate');
    expect(nearest('unitid', ['unitId', 'profile'])).toBe('unitId');
    expect(nearest('zzzzzz', ['unitId', 'profile'])).toBeUndefined();
  });

  it('p2pev run and config check print every problem, not just the first line (exit 1)', async () => {
    const raw = good() as unknown as Record<string, Record<string, unknown>>;
    raw.meter!.unitid = 3;
    raw.mqtt!.keepalive = 30;
    const file = join(dir, 'two.json');
    writeFileSync(file, JSON.stringify(raw));
    for (const cmd of ['run', 'config check']) {
      const err = await run(process.execPath, [BIN, ...cmd.split(' '), '--config', file]).catch((e) => e);
      expect(err.code).toBe(1);
      expect(err.stderr).toContain(`p2pev: ${file} is invalid (2 problems`);
      expect(err.stderr).toContain('unknown key "unitid" (did you mean "unitId"?)');
      expect(err.stderr).toContain('unknown key "keepalive" (did you mean "keepaliveS"?)');
    }
  }, 30_000);
});

describe('the schema is the configuration manual', () => {
  it('every property has a description and an example', () => {
    const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8'));
    const missing: string[] = [];
    const walk = (node: { properties?: Record<string, Record<string, unknown>> }, path: string) => {
      for (const [key, prop] of Object.entries(node.properties ?? {})) {
        const at = `${path}/${key}`;
        if (typeof prop.description !== 'string' || prop.description.length < 10)
          missing.push(`${at}: description`);
        if (!Array.isArray(prop.examples) || prop.examples.length === 0) missing.push(`${at}: examples`);
        walk(prop as typeof node, at);
      }
    };
    walk(schema, '');
    expect(missing).toEqual([]);
  });
});

describe('p2pev config init', () => {
  it('writes a complete, valid, commented start for every role, bench and installed', () => {
    const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8'));
    for (const role of ['ev', 'hcs', 'edge'] as const)
      for (const bench of [true, false]) {
        const text = renderWithComments(startConfig({ role, bench }), schema);
        const cfg = parseConfig(JSON.parse(stripJsonComments(text)), dir, `${role}${bench ? ' bench' : ''}`);
        expect(cfg.role).toBe(role);
        expect(!!cfg.meter).toBe(role !== 'edge');
        // A comment above each key: its description in the schema.
        expect(text).toContain('  // Broker URL (mqtt, mqtts, ws, wss). Required.\n    "url"'.slice(2));
        if (role === 'hcs') expect(cfg.hcs!.priceWeiPerKWh).toMatch(/^\d+$/);
        if (role === 'ev') expect(cfg.ev).toBeDefined();
      }
  });

  it('the CLI writes a file p2pev config check accepts, and will not overwrite one without --force', async () => {
    const file = join(dir, 'init', 'ev.json');
    const first = await run(process.execPath, [
      BIN,
      'config',
      'init',
      '--role',
      'ev',
      '--bench',
      '--out',
      file,
    ]);
    expect(first.stdout).toContain(`wrote ${file} (ev "bench-ev")`);
    expect((await run(process.execPath, [BIN, 'config', 'check', '--config', file])).stdout).toContain(
      'valid (ev "bench-ev")',
    );
    const again = await run(process.execPath, [BIN, 'config', 'init', '--role', 'ev', '--out', file]).catch(
      (e) => e,
    );
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('exists: give --force');
    const bad = await run(process.execPath, [BIN, 'config', 'init', '--role', 'car']).catch((e) => e);
    expect(bad.code).toBe(2);
  }, 30_000);

  it('reads comments in a config, and still gives the right line and column of a syntax error', () => {
    const file = join(dir, 'commented.json');
    const text = `// a comment\n${JSON.stringify(good(), null, 2).replace('"chain": {', '/* here */ "chain": {,')}`;
    writeFileSync(file, text);
    const lineNo = text.split('\n').findIndex((l) => l.includes('"chain": {,')) + 1;
    const column = text.split('\n')[lineNo - 1]!.indexOf('{,') + 2;
    expect(() => loadConfig(file)).toThrow(`${file}:${lineNo}:${column}: not valid JSON`);
    writeFileSync(file, `// a comment\n${JSON.stringify(good(), null, 2)}`);
    expect(loadConfig(file).role).toBe('hcs');
  });
});
