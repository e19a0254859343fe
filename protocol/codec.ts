/**
 * The codec: one encoder and one decoder for every message, driven by the table in `schema.ts`.
 * Each field kind has one writer and one reader; a message is its 4-bit type code, its fields in
 * order, zero padding to the byte boundary, then the optional CBOR map.
 *
 * The table is compiled once, at load, into a list of small closures per message over a bit
 * writer and reader, with every field's range and error path worked out in advance; every
 * EncodeError and DecodeError (message, field, bit offset) comes from these closures. (A generated
 * straight-line codec once stood beside it; it won round trips the system never needed, since
 * signer recovery bounds every receiver near 750 messages/s, and was removed.)
 */
import { BitReader, BitWriter } from './bits.js';
import { DecodeError, EncodeError } from './errors.js';
import { isHexOfLength } from './hex.js';
import { decodeOptional, encodeOptional } from './optional.js';
import {
  type Field,
  MESSAGES,
  type Message,
  type MessageInput,
  type MessageName,
  type MessageSchema,
  type ScalarField,
  scalarBits,
  TYPE_BITS,
} from './schema.js';

type Values = Record<string, unknown>;

interface FieldOp {
  write(w: BitWriter, values: Values): void;
  read(r: BitReader, out: Values): void;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function compileScalar(f: ScalarField, path: string, preset?: number): FieldOp {
  const name = f.name;
  const missing = () => new EncodeError('is missing', path);
  switch (f.kind) {
    case 'uint': {
      const min = f.min ?? 0;
      const bits = f.bits;
      if (bits <= 32) {
        const max = f.max ?? 2 ** bits - 1;
        return {
          write(w, values) {
            const v = values[name] ?? preset;
            if (typeof v !== 'number' || !Number.isInteger(v)) {
              throw v === undefined ? missing() : new EncodeError('must be an integer', path);
            }
            if (v < min || v > max) throw new EncodeError(`${v} is out of range ${min}..${max}`, path);
            w.writeSmall(v, bits);
          },
          read(r, out) {
            const at = r.bitOffset;
            const v = r.readSmall(bits, path);
            if (v < min || v > max) throw new DecodeError(`${v} is out of range ${min}..${max}`, at, path);
            out[name] = v;
          },
        };
      }
      if (bits % 8 !== 0) throw new Error(`schema: ${path} is wider than 32 bits but not whole bytes`);
      const bmin = BigInt(min);
      const bmax = f.max === undefined ? (1n << BigInt(bits)) - 1n : BigInt(f.max);
      return {
        write(w, values) {
          const v = values[name];
          if (typeof v !== 'bigint')
            throw v === undefined ? missing() : new EncodeError('must be a bigint', path);
          if (v < bmin || v > bmax) throw new EncodeError(`${v} is out of range ${bmin}..2^${bits}-1`, path);
          w.writeBig(v, bits);
        },
        read(r, out) {
          const at = r.bitOffset;
          const v = r.readBig(bits, path);
          if (v < bmin || v > bmax) throw new DecodeError(`${v} is out of range`, at, path);
          out[name] = v;
        },
      };
    }
    case 'addr':
    case 'bytes32': {
      const n = f.kind === 'addr' ? 20 : 32;
      return {
        write(w, values) {
          const v = values[name];
          if (!isHexOfLength(v, n))
            throw v === undefined ? missing() : new EncodeError(`must be 0x and ${n * 2} hex digits`, path);
          w.writeHex(v);
        },
        read(r, out) {
          out[name] = r.readHex(n, path);
        },
      };
    }
    case 'f64': {
      const { min, max } = f;
      const scratch = new DataView(new ArrayBuffer(8));
      const scratchBytes = new Uint8Array(scratch.buffer);
      return {
        write(w, values) {
          const v = values[name];
          if (typeof v !== 'number' || !Number.isFinite(v)) {
            throw v === undefined ? missing() : new EncodeError('must be a finite number', path);
          }
          if (v < min || v > max) throw new EncodeError(`${v} is out of range ${min}..${max}`, path);
          scratch.setFloat64(0, v);
          w.writeBytes(scratchBytes);
        },
        read(r, out) {
          const at = r.bitOffset;
          const b = r.readBytes(8, path);
          const v = new DataView(b.buffer, b.byteOffset, 8).getFloat64(0);
          if (!Number.isFinite(v)) throw new DecodeError(`${v} is not a finite number`, at, path);
          if (v < min || v > max) throw new DecodeError(`${v} is out of range ${min}..${max}`, at, path);
          out[name] = v;
        },
      };
    }
    case 'text': {
      const size = f.bytes;
      return {
        write(w, values) {
          const v = values[name];
          if (typeof v !== 'string')
            throw v === undefined ? missing() : new EncodeError('must be a string', path);
          const bytes = utf8.encode(v);
          if (bytes.length > size)
            throw new EncodeError(`${bytes.length} UTF-8 bytes, at most ${size}`, path);
          if (bytes.includes(0)) throw new EncodeError('must not contain NUL characters', path);
          const padded = new Uint8Array(size);
          padded.set(bytes);
          w.writeBytes(padded);
        },
        read(r, out) {
          const at = r.bitOffset;
          const b = r.readBytes(size, path);
          let end = b.indexOf(0);
          if (end < 0) end = size;
          for (let i = end; i < size; i++) {
            if (b[i] !== 0) throw new DecodeError('text has bytes after its NUL padding', at, path);
          }
          try {
            out[name] = utf8Strict.decode(b.subarray(0, end));
          } catch {
            throw new DecodeError('text is not valid UTF-8', at, path);
          }
        },
      };
    }
  }
}

/** `presets`: values a field takes when left out (the one value that names a variant). */
function compileFields(
  fields: readonly Field[],
  prefix: string,
  presets: Record<string, number> = {},
): FieldOp[] {
  return fields.map((f): FieldOp => {
    if (f.kind === 'pad') {
      const path = prefix ? `${prefix}.padding` : 'padding';
      return { write: (w) => w.padToByte(), read: (r) => r.padToByte(path) };
    }
    const path = prefix ? `${prefix}.${f.name}` : f.name;
    if (f.kind !== 'list') return compileScalar(f, path, presets[f.name]);
    const { name, countBits, maxItems } = f;
    const itemBits = f.item.reduce((n, i) => n + scalarBits(i), 0);
    const itemOps = compileFields(f.item, `${path}[]`);
    return {
      write(w, values) {
        const v = values[name];
        if (!Array.isArray(v))
          throw new EncodeError(v === undefined ? 'is missing' : 'must be an array', path);
        if (v.length > maxItems) throw new EncodeError(`${v.length} entries, at most ${maxItems}`, path);
        w.writeSmall(v.length, countBits);
        for (let i = 0; i < v.length; i++) {
          const item = v[i];
          if (item === null || typeof item !== 'object')
            throw new EncodeError('must be an object', `${path}[${i}]`);
          for (const op of itemOps) op.write(w, item as Values);
        }
      },
      read(r, out) {
        const start = r.bitOffset;
        const count = r.readSmall(countBits, path);
        // Check the input can hold every entry before building any (no allocation the bytes don't justify).
        if (count > maxItems || count * itemBits > r.bitsLeft) {
          throw new DecodeError(`${count} entries do not fit in the ${r.bitsLeft} bits left`, start, path);
        }
        const items: Values[] = new Array(count);
        for (let i = 0; i < count; i++) {
          const item: Values = {};
          for (const op of itemOps) op.read(r, item);
          items[i] = item;
        }
        out[name] = items;
      },
    };
  });
}

interface Compiled {
  name: MessageName;
  code: number;
  ops: FieldOp[];
  select?: { field: string; values: readonly number[] };
  keys: Set<string>;
}

const compiled = new Map<MessageName, Compiled>();
/** Names that share each type code, for the decoder (request/response …). */
const byCode: (Compiled[] | undefined)[] = new Array(16);
for (const [name, schema] of Object.entries(MESSAGES as Record<MessageName, MessageSchema>) as [
  MessageName,
  MessageSchema,
][]) {
  const keys = new Set([
    'type',
    'optional',
    ...schema.fields.flatMap((f) => (f.kind === 'pad' ? [] : [f.name])),
  ]);
  const sel = schema.select;
  const only = sel?.values.length === 1 ? sel.values[0] : undefined;
  const presets = sel && only !== undefined ? { [sel.field]: only } : {};
  const c: Compiled = { name, code: schema.code, ops: compileFields(schema.fields, '', presets), keys };
  if (schema.select) c.select = schema.select;
  compiled.set(name, c);
  byCode[schema.code] = [...(byCode[schema.code] ?? []), c];
}

// ---------------------------------------------------------------- encode

const writer = new BitWriter(256);

/** Packs a message into fresh bytes. Throws EncodeError, naming the field, for anything out of range. */
export function encode(msg: MessageInput): Uint8Array {
  const values: Values = msg;
  const c = compiled.get(values.type as MessageName);
  if (!c) throw new EncodeError(`unknown message type ${JSON.stringify(values.type)}`, 'type');
  for (const key in values) {
    if (!c.keys.has(key) && values[key] !== undefined)
      throw new EncodeError(`is not a field of ${c.name}`, key);
  }
  if (c.select) {
    const { field, values: allowed } = c.select;
    const given = values[field];
    if (!(given === undefined && allowed.length === 1) && !allowed.includes(given as number)) {
      throw new EncodeError(`must be one of ${allowed.join(', ')} for ${c.name}`, field);
    }
  }
  const w = writer.reset();
  w.writeSmall(c.code, TYPE_BITS);
  for (const op of c.ops) op.write(w, values);
  w.padToByte();
  if (values.optional === undefined) return w.finish();
  w.writeBytes(encodeOptional(values.optional as Values));
  return w.finish();
}

// ---------------------------------------------------------------- decode

/** Unpacks a message. Throws DecodeError, and nothing else, for any input bytes. */
export function decode(bytes: Uint8Array): Message {
  try {
    return decodeUnchecked(bytes);
  } catch (err) {
    if (err instanceof DecodeError) throw err;
    // A bug, not bad input, but the promise to callers holds: only DecodeError escapes.
    throw new DecodeError(`internal decoder error: ${(err as Error)?.message ?? err}`, 0);
  }
}

function decodeUnchecked(bytes: Uint8Array): Message {
  if (!(bytes instanceof Uint8Array)) throw new DecodeError('input is not bytes', 0);
  if (bytes.length === 0) throw new DecodeError('empty message', 0, 'type');
  const r = new BitReader(bytes);
  const code = r.readSmall(TYPE_BITS, 'type');
  const candidates = byCode[code];
  const first = candidates?.[0];
  if (!candidates || !first)
    throw new DecodeError(`unknown message type code 0x${code.toString(16)}`, 0, 'type');
  // `type` first, so it also comes first when the message is printed.
  const out: Values = { type: first.name };
  for (const op of first.ops) op.read(r, out);
  r.padToByte();
  if (candidates.length > 1) {
    const match = candidates.find((c) => c.select?.values.includes(out[c.select.field] as number));
    if (!match) throw new DecodeError('no message of this type has these field values', 0, 'type');
    out.type = match.name;
  }
  if (r.bitsLeft > 0) {
    const at = r.bitOffset;
    out.optional = decodeOptional(r.rest(), at);
  }
  return out as Message;
}

/** Size in bytes of a message's fixed part, or undefined where it varies (suggestion). */
export function fixedSize(name: MessageName): number | undefined {
  let bits = TYPE_BITS;
  for (const f of (MESSAGES as Record<MessageName, MessageSchema>)[name].fields) {
    if (f.kind === 'list') return undefined;
    bits = f.kind === 'pad' ? Math.ceil(bits / 8) * 8 : bits + scalarBits(f);
  }
  return Math.ceil(bits / 8);
}
