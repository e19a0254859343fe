/**
 * Register codec: words on the wire <-> numbers in SI units. Shared by the drivers (decode) and
 * the simulated meter (encode), so both ends agree on every data type and word order.
 */
import type { DataType, RegisterSpec, Unit, WordOrder } from './types.js';

const WORDS: Record<Exclude<DataType, 'ascii'>, number> = {
  int16: 1,
  uint16: 1,
  int32: 2,
  uint32: 2,
  float32: 2,
  int64: 4,
  uint64: 4,
  float64: 4,
};

export function wordCount(spec: Pick<RegisterSpec, 'type' | 'words'>): number {
  return spec.type === 'ascii' ? (spec.words ?? 1) : WORDS[spec.type];
}

/** Big-endian bytes of the value, whatever the device's word order. */
function toBytes(words: readonly number[], order: WordOrder = 'high-first'): Buffer {
  const ordered = order === 'low-first' ? [...words].reverse() : words;
  const buf = Buffer.alloc(ordered.length * 2);
  ordered.forEach((w, i) => {
    buf.writeUInt16BE(w & 0xffff, i * 2);
  });
  return buf;
}

function fromBytes(buf: Buffer, order: WordOrder = 'high-first'): number[] {
  const words: number[] = [];
  for (let i = 0; i < buf.length; i += 2) words.push(buf.readUInt16BE(i));
  return order === 'low-first' ? words.reverse() : words;
}

/**
 * Whether the words are a "not available" marker rather than a value: all ones (an unset or
 * failed register on most meters, 0xFFFF… on ABB's unsigned types) or the largest signed value
 * (ABB's marker for signed types).
 */
export function isNotAvailable(
  words: readonly number[],
  spec: Pick<RegisterSpec, 'type' | 'wordOrder'>,
): boolean {
  if (spec.type === 'ascii') return false;
  if (words.every((w) => w === 0xffff)) return true;
  if (spec.type === 'int16' || spec.type === 'int32' || spec.type === 'int64') {
    const msbFirst = spec.wordOrder === 'low-first' ? [...words].reverse() : words;
    return msbFirst[0] === 0x7fff && msbFirst.slice(1).every((w) => w === 0xffff);
  }
  return false;
}

/** Raw number as stored (before scale), in the register's own type. Assumes `isNotAvailable` was checked. */
export function decodeRaw(words: readonly number[], spec: Pick<RegisterSpec, 'type' | 'wordOrder'>): number {
  const b = toBytes(words, spec.wordOrder);
  switch (spec.type) {
    case 'int16':
      return b.readInt16BE(0);
    case 'uint16':
      return b.readUInt16BE(0);
    case 'int32':
      return b.readInt32BE(0);
    case 'uint32':
      return b.readUInt32BE(0);
    case 'float32':
      return b.readFloatBE(0);
    case 'float64':
      return b.readDoubleBE(0);
    // 64-bit counters exceed 2^53 only after 90 TWh at 0.01 kWh resolution: Number is exact here.
    case 'int64':
      return Number(b.readBigInt64BE(0));
    case 'uint64':
      return Number(b.readBigUInt64BE(0));
    case 'ascii':
      throw new Error('decodeRaw: ascii is text, use decodeText');
  }
}

export function decodeText(words: readonly number[]): string {
  return toBytes(words)
    .toString('latin1')
    .replace(/[\0\s]+$/g, '')
    .trim();
}

export function encodeText(text: string, words: number): number[] {
  const buf = Buffer.alloc(words * 2);
  buf.write(text.slice(0, words * 2), 'latin1');
  return fromBytes(buf);
}

/** Words of a raw number in the register's type and word order (the simulated meter's side). */
export function encodeRaw(raw: number, spec: Pick<RegisterSpec, 'type' | 'wordOrder'>): number[] {
  const size = spec.type === 'ascii' ? 0 : WORDS[spec.type] * 2;
  const b = Buffer.alloc(size);
  switch (spec.type) {
    case 'int16':
      b.writeInt16BE(Math.round(raw), 0);
      break;
    case 'uint16':
      b.writeUInt16BE(Math.round(raw) & 0xffff, 0);
      break;
    case 'int32':
      b.writeInt32BE(Math.round(raw) | 0, 0);
      break;
    case 'uint32':
      b.writeUInt32BE(Math.round(raw) >>> 0, 0);
      break;
    case 'float32':
      b.writeFloatBE(raw, 0);
      break;
    case 'float64':
      b.writeDoubleBE(raw, 0);
      break;
    case 'int64':
      b.writeBigInt64BE(BigInt(Math.round(raw)), 0);
      break;
    case 'uint64':
      b.writeBigUInt64BE(BigInt(Math.max(0, Math.round(raw))), 0);
      break;
    case 'ascii':
      throw new Error('encodeRaw: ascii is text, use encodeText');
  }
  return fromBytes(b, spec.wordOrder);
}

/** Factor from a unit to the SI base the agent uses (Wh, W, V, A, Hz). */
export const UNIT_FACTOR: Record<Unit, number> = {
  Wh: 1,
  kWh: 1_000,
  MWh: 1_000_000,
  W: 1,
  kW: 1_000,
  V: 1,
  A: 1,
  mA: 0.001,
  Hz: 1,
};

/** Base SI unit of a unit: what the decoded value is expressed in. */
export function baseUnit(unit: Unit): 'Wh' | 'W' | 'V' | 'A' | 'Hz' {
  if (unit === 'kWh' || unit === 'MWh') return 'Wh';
  if (unit === 'kW') return 'W';
  if (unit === 'mA') return 'A';
  return unit;
}

/** Value in the base unit from the raw number and (optional) vendor exponent. */
export function scaleToBase(raw: number, spec: RegisterSpec, exponent = 0): number {
  return raw * (spec.scale ?? 1) * 10 ** exponent * UNIT_FACTOR[spec.unit];
}

/** Raw number to store so that a reader gets `base` (the simulated meter's side). */
export function rawFromBase(base: number, spec: RegisterSpec): number {
  const raw = base / UNIT_FACTOR[spec.unit] / (spec.scale ?? 1);
  // Integer registers hold whole counts: energy counters truncate (a meter never rounds up what it billed).
  return spec.type === 'float32' || spec.type === 'float64' ? raw : Math.floor(raw + 1e-9);
}
