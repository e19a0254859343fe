/**
 * Optional data (SPEC.md): whatever follows a message's fixed part is one CBOR map (RFC 8949),
 * deterministically encoded, at most MAX_OPTIONAL_BYTES long.
 *
 * Before cbor-x sees untrusted bytes, `checkWellFormed` walks the item heads: only definite
 * lengths, no tags, bounded depth, and every declared length no larger than the bytes left, so
 * a 5-byte input can never make the decoder reserve room for four billion items. After decoding,
 * the map is re-encoded and must give back the same bytes: that is the deterministic-encoding
 * check (sorted keys, shortest integer heads), and it catches duplicate keys too.
 */
import { Decoder, Encoder } from 'cbor-x';
import { DecodeError, EncodeError } from './errors.js';
import { MAX_OPTIONAL_BYTES, type OptionalData } from './schema.js';

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });
const MAX_DEPTH = 8;

/** Deterministic order for map keys (RFC 8949 §4.2.1: shorter encoded key first, then bytewise). */
function canonical(value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new EncodeError(`nested deeper than ${MAX_DEPTH} levels`, 'optional');
  if (Array.isArray(value)) return value.map((v) => canonical(v, depth + 1));
  if (value instanceof Uint8Array || value === null || typeof value !== 'object') return value;
  const keys = Object.keys(value).sort((a, b) => {
    const la = Buffer.byteLength(a);
    const lb = Buffer.byteLength(b);
    return la !== lb ? la - lb : Buffer.compare(Buffer.from(a), Buffer.from(b));
  });
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = canonical((value as Record<string, unknown>)[k], depth + 1);
  return out;
}

export function encodeOptional(data: OptionalData): Uint8Array {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new EncodeError('must be a map (a plain object)', 'optional');
  }
  for (const v of Object.values(data)) {
    if (typeof v === 'number' && !Number.isFinite(v))
      throw new EncodeError('NaN/Infinity not allowed', 'optional');
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') {
      throw new EncodeError('values must be CBOR data (no undefined, functions, symbols)', 'optional');
    }
  }
  const bytes = new Uint8Array(encoder.encode(canonical(data)));
  if (bytes.length > MAX_OPTIONAL_BYTES) {
    throw new EncodeError(
      `${bytes.length} bytes, more than the ${MAX_OPTIONAL_BYTES}-byte limit`,
      'optional',
    );
  }
  return bytes;
}

/** Decodes the optional tail; `bitBase` is its bit offset in the message, for error positions. */
export function decodeOptional(bytes: Uint8Array, bitBase: number): OptionalData {
  if (bytes.length > MAX_OPTIONAL_BYTES) {
    throw new DecodeError(
      `${bytes.length} bytes, more than the ${MAX_OPTIONAL_BYTES}-byte limit`,
      bitBase,
      'optional',
    );
  }
  const end = checkWellFormed(bytes, 0, 0, bitBase);
  if (end !== bytes.length) {
    throw new DecodeError(
      `${bytes.length - end} trailing bytes after the CBOR map`,
      bitBase + end * 8,
      'optional',
    );
  }
  if ((bytes[0] ?? 0) >> 5 !== 5) throw new DecodeError('CBOR item is not a map', bitBase, 'optional');
  let value: unknown;
  try {
    value = decoder.decode(bytes);
  } catch (err) {
    throw new DecodeError(`invalid CBOR (${(err as Error).message})`, bitBase, 'optional');
  }
  let again: Uint8Array;
  try {
    again = encoder.encode(canonical(value));
  } catch {
    throw new DecodeError('CBOR map cannot be re-encoded', bitBase, 'optional');
  }
  if (Buffer.compare(again, bytes) !== 0) {
    throw new DecodeError('CBOR map is not deterministically encoded (RFC 8949 §4.2)', bitBase, 'optional');
  }
  return value as OptionalData;
}

/** Walks one CBOR item from `at`; returns where it ends. Throws DecodeError on anything unsafe. */
function checkWellFormed(b: Uint8Array, at: number, depth: number, bitBase: number): number {
  const fail = (msg: string, pos: number): never => {
    throw new DecodeError(msg, bitBase + pos * 8, 'optional');
  };
  if (depth > MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`, at);
  if (at >= b.length) fail('truncated CBOR item', at);
  const head = b[at] ?? 0; // in range: checked above
  const major = head >> 5;
  const info = head & 0x1f;
  let pos = at + 1;
  let arg = 0;
  if (info < 24) arg = info;
  else if (info <= 27) {
    const n = 1 << (info - 24);
    if (pos + n > b.length) fail('truncated CBOR length', at);
    // Lengths beyond 2^32 can never fit in a 1 KiB message; only their size matters here.
    for (let i = 0; i < n; i++) arg = arg * 256 + (b[pos + i] ?? 0);
    pos += n;
  } else if (info === 31) fail('indefinite-length CBOR is not deterministic', at);
  else fail(`reserved CBOR additional info ${info}`, at);
  const left = b.length - pos;
  switch (major) {
    case 0:
    case 1:
      return pos;
    case 2:
    case 3:
      if (arg > left) fail(`CBOR string of ${arg} bytes, only ${left} left`, at);
      return pos + arg;
    case 4:
    case 5: {
      const items = major === 5 ? arg * 2 : arg;
      if (items > left)
        fail(`CBOR ${major === 5 ? 'map' : 'array'} of ${arg} entries, only ${left} bytes left`, at);
      for (let i = 0; i < items; i++) pos = checkWellFormed(b, pos, depth + 1, bitBase);
      return pos;
    }
    case 6:
      return fail('CBOR tags are not accepted in optional data', at);
    default:
      // major 7: simple values and floats; info 24..27 already consumed their bytes.
      if (info === 24 && arg < 32) fail('non-canonical CBOR simple value', at);
      return pos;
  }
}
