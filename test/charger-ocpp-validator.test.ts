/**
 * The station's OCPP 1.6 validators, precompiled from ocpp-rpc's schemas
 * (drivers/chargers/ocpp-validator.ts), against ocpp-rpc's own ajv-backed validator built from
 * the same schemas: for every OCPP 1.6 message, valid instances and mutated ones, both accept and
 * refuse alike, with the same CallError code. And both generated validators (OCPP, config) are
 * what their builders write now. Pure logic, no socket.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { createValidator } from 'ocpp-rpc';
import { describe, expect, it } from 'vitest';
import { CONFIG_VALIDATOR_PATH, configValidatorText } from '../agent/core/config-validator.build.js';
import { ocpp16Validator } from '../drivers/chargers/ocpp-validator.js';
import { OCPP16_VALIDATORS_PATH, ocpp16ValidatorsText } from '../drivers/chargers/ocpp-validators.build.js';

// biome-ignore lint/suspicious/noExplicitAny: JSON schemas and payloads as they come
type Json = any;
const require = createRequire(import.meta.url);
const schemas: Json[] = require('ocpp-rpc/lib/schemas/ocpp1_6.json');
const reference = createValidator('ocpp1.6', schemas);

/** What a validator makes of a payload: valid, or the CallError code and text it throws. */
function outcome(v: { validate(id: string, p: unknown): unknown }, id: string, payload: unknown): string {
  try {
    v.validate(id, payload);
    return 'valid';
  } catch (err) {
    const e = err as { rpcErrorCode?: string; message: string };
    return `${e.rpcErrorCode}: ${e.message}`;
  }
}

const junk = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant('2026-12-01T20:00:00Z'),
  fc.constant('2026-13-01T25:00:00Z'),
  fc.constant('not a date'),
  fc.constant('http://example.org/x'),
  fc.constant('x'.repeat(600)),
  fc.constant(13.3),
  fc.constant(13.35),
  fc.constant(-1.797693134862316e307),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
);

/** An arbitrary of valid instances of `node` (a schema inside `root`). */
function valid(node: Json, root: Json): fc.Arbitrary<Json> {
  if (node.$ref) return valid(root.definitions[node.$ref.replace('#/definitions/', '')], root);
  if (node.enum) return fc.constantFrom(...node.enum);
  switch (node.type) {
    case 'object': {
      const props = node.properties ?? {};
      const keys = Object.keys(props);
      return fc.record(Object.fromEntries(keys.map((k) => [k, valid(props[k], root)])), {
        requiredKeys: (node.required ?? []).filter((k: string) => keys.includes(k)),
      });
    }
    case 'array':
      return fc.array(valid(node.items ?? {}, root), { minLength: node.minItems ?? 0, maxLength: 3 });
    case 'string':
      if (node.format === 'date-time')
        return fc
          .date({ noInvalidDate: true, min: new Date(0), max: new Date('9999-12-31T23:59:59Z') })
          .map((d) => d.toISOString());
      if (node.format === 'uri') return fc.webUrl();
      return fc.string({ maxLength: node.maxLength ?? 40 });
    case 'integer':
      return fc.integer();
    case 'number':
      return node.multipleOf
        ? fc.integer({ min: -1e6, max: 1e6 }).map((n) => Math.round(n * node.multipleOf * 1e6) / 1e6)
        : fc.double({ noNaN: true, noDefaultInfinity: true });
    case 'boolean':
      return fc.boolean();
    default:
      return junk;
  }
}

/** Replaces one value somewhere in `value` (or adds a stray key, or drops one). */
function mutate(value: Json, pick: number, replacement: Json, action: number): Json {
  const paths: (string | number)[][] = [];
  const walk = (v: Json, path: (string | number)[]) => {
    paths.push(path);
    if (v && typeof v === 'object')
      for (const k of Object.keys(v)) walk(v[k], [...path, Array.isArray(v) ? Number(k) : k]);
  };
  walk(value, []);
  const path = paths[pick % paths.length]!;
  if (path.length === 0) return action % 3 === 0 ? replacement : { ...value, stray: replacement };
  const copy = structuredClone(value);
  let parent = copy;
  for (const k of path.slice(0, -1)) parent = parent[k];
  const last = path[path.length - 1]!;
  if (action % 3 === 0 && !Array.isArray(parent)) delete parent[last];
  else if (
    action % 3 === 1 &&
    parent[last] &&
    typeof parent[last] === 'object' &&
    !Array.isArray(parent[last])
  )
    parent[last] = { ...parent[last], stray: replacement };
  else parent[last] = replacement;
  return copy;
}

describe('OCPP 1.6 validators, precompiled', () => {
  it('cover every OCPP 1.6 message', () => {
    expect(schemas.length).toBe(78);
    for (const s of schemas) expect(outcome(ocpp16Validator, s.$id, {}), s.$id).not.toMatch(/ProtocolError/);
    expect(outcome(ocpp16Validator, 'urn:NoSuchAction.req', {})).toMatch(/^ProtocolError/);
  });

  it.each(schemas.map((s) => [s.$id, s]))(
    '%s: valid and mutated payloads judged as ocpp-rpc judges them',
    (id, schema) => {
      const payload = valid(schema, schema);
      fc.assert(
        fc.property(payload, (p) => {
          expect(outcome(ocpp16Validator, id, p)).toBe('valid');
          expect(outcome(reference, id, p)).toBe('valid');
        }),
        { numRuns: 40 },
      );
      fc.assert(
        fc.property(payload, fc.nat(), junk, fc.nat(), (p, pick, replacement, action) => {
          const bad = mutate(p, pick, replacement, action);
          expect(outcome(ocpp16Validator, id, bad)).toBe(outcome(reference, id, bad));
        }),
        { numRuns: 150 },
      );
    },
  );

  it('a refusal carries the CallError code, the reason and the offending data', () => {
    let error: Json;
    try {
      ocpp16Validator.validate('urn:Authorize.req', { idTag: 'x'.repeat(21) });
    } catch (err) {
      error = err;
    }
    expect(error.rpcErrorCode).toBe('FormatViolation');
    expect(error.message).toBe('data/idTag must NOT have more than 20 characters');
    expect(error.details.data).toEqual({ idTag: 'x'.repeat(21) });
  });
});

describe('generated validators', () => {
  it('drivers/chargers/generated/ocpp16-validators.ts is what its builder writes now (run `npm run build:validators`)', () => {
    expect(readFileSync(OCPP16_VALIDATORS_PATH, 'utf8')).toBe(ocpp16ValidatorsText());
  });

  it('agent/core/generated/config-validator.ts is what its builder writes now (run `npm run build:validators`)', () => {
    expect(readFileSync(CONFIG_VALIDATOR_PATH, 'utf8')).toBe(configValidatorText());
  });
});
