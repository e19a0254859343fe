/** fast-check arbitraries for every message, derived from the schema table like the codec. */
import fc from 'fast-check';
import {
  type Field,
  MESSAGE_NAMES,
  MESSAGES,
  type MessageName,
  type MessageSchema,
  type ScalarField,
} from '../../protocol/schema.js';

const hexBytes = (n: number) =>
  fc.uint8Array({ minLength: n, maxLength: n }).map((b) => `0x${Buffer.from(b).toString('hex')}`);

function scalar(f: ScalarField): fc.Arbitrary<unknown> {
  switch (f.kind) {
    case 'uint':
      if (f.bits <= 32) return fc.integer({ min: f.min ?? 0, max: f.max ?? 2 ** f.bits - 1 });
      return fc.bigInt({
        min: BigInt(f.min ?? 0),
        max: f.max === undefined ? (1n << BigInt(f.bits)) - 1n : BigInt(f.max),
      });
    case 'addr':
      return hexBytes(20);
    case 'bytes32':
      return hexBytes(32);
    case 'f64':
      return fc
        .double({ min: f.min, max: f.max, noNaN: true, noDefaultInfinity: true })
        .map((v) => (Object.is(v, -0) ? 0 : v));
    case 'text':
      return fc
        .string({ unit: 'grapheme', maxLength: f.bytes })
        .filter((s) => !s.includes('\0') && Buffer.byteLength(s) <= f.bytes);
  }
}

function record(fields: readonly Field[]): fc.Arbitrary<Record<string, unknown>> {
  const shape: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of fields) {
    if (f.kind === 'pad') continue;
    shape[f.name] = f.kind === 'list' ? fc.array(record(f.item), { maxLength: 6 }) : scalar(f);
  }
  return fc.record(shape);
}

const optional = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 6 }).filter((k) => k !== '__proto__'),
  fc.oneof(fc.integer(), fc.string({ maxLength: 12 }), fc.boolean(), fc.uint8Array({ maxLength: 8 })),
  { maxKeys: 5 },
);

export function messageArbitrary(name: MessageName): fc.Arbitrary<Record<string, unknown>> {
  const schema = MESSAGES[name] as MessageSchema;
  return fc.tuple(record(schema.fields), fc.option(optional, { nil: undefined })).chain(([fields, opt]) => {
    const sel = schema.select;
    const withSel = sel
      ? fc.constantFrom(...sel.values).map((v) => ({ ...fields, [sel.field]: v }))
      : fc.constant(fields);
    return withSel.map((f) => ({
      type: name,
      ...f,
      ...(opt && Object.keys(opt).length ? { optional: opt } : {}),
    }));
  });
}

export const anyMessage = fc.constantFrom(...MESSAGE_NAMES).chain(messageArbitrary);
