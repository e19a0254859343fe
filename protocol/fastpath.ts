/**
 * The fast path of the codec: at load, every message of the table in `schema.ts` is compiled into
 * one straight-line encoder and one decoder (JavaScript source built from the table, then
 * `new Function`), with every field's bit position, width and range folded in as constants. The
 * decoder builds its result as one object literal, so every decoded message of a name has the same
 * shape.
 *
 * The fast path never reports errors: on anything it does not accept (a bad value, a short input,
 * non-ASCII text, non-zero padding…) it returns `undefined`, and `codec.ts` runs the reference
 * interpreter, which accepts or throws exactly as before. So the fast path may be stricter than
 * the reference, never looser, and every error keeps its message and offset.
 */
import { HEX_PAIRS as hexPairs_, NIBBLE_HI as nibbleHi_, NIBBLE_LO as nibbleLo_ } from './hex.js';
import {
  type Field,
  MESSAGES,
  type MessageName,
  type MessageSchema,
  scalarBits,
  TYPE_BITS,
} from './schema.js';

type Values = Record<string, unknown>;

// Module-local bindings: a transpiler's CommonJS interop (tsx) turns every use of an imported
// binding into a getter call, which in these loops cost more than the lookups themselves.
const HEX_PAIRS = hexPairs_;
const NIBBLE_HI = nibbleHi_;
const NIBBLE_LO = nibbleLo_;

// ---------------------------------------------------------------- writers
// `at` is a bit offset. The target is zeroed beyond the field being written, so a field that
// shares its first byte with the previous one is ORed in. Helpers come in variants by where the
// field starts in its byte, known when the message is compiled: A(ligned), N(ibble: 4 bits in,
// where every hex digit is one nibble of the output) and U(naligned, any other offset).

function putBits(buf: Uint8Array, at: number, value: number, width: number): void {
  let left = width;
  while (left > 0) {
    const room = 8 - (at & 7);
    const n = left < room ? left : room;
    const chunk = (value >>> (left - n)) & ((1 << n) - 1);
    buf[at >> 3]! |= chunk << (room - n);
    at += n;
    left -= n;
  }
}

function putByte(buf: Uint8Array, at: number, byte: number): void {
  const o = at >> 3;
  const s = at & 7;
  if (s === 0) buf[o] = byte;
  else {
    buf[o]! |= byte >> s;
    buf[o + 1]! |= byte << (8 - s);
  }
}

/** Whether `hex` is a string of `0x` (or `0X`) and 2n more characters; the digits are checked as they are written. */
function hexShape(hex: unknown, n: number): hex is string {
  return (
    typeof hex === 'string' &&
    hex.length === 2 + 2 * n &&
    hex.charCodeAt(0) === 48 &&
    (hex.charCodeAt(1) | 32) === 120
  );
}

/**
 * Validates `0x` + 2n hex digits and writes them; false if `hex` is anything else. A digit's
 * table entry is negative when it is not a digit, and `wide` collects the char codes, so one
 * test at the end catches both.
 */
function putHexA(buf: Uint8Array, at: number, hex: unknown, n: number): boolean {
  if (!hexShape(hex, n)) return false;
  let bad = 0;
  let wide = 0;
  for (let i = 2, o = at >> 3; i < hex.length; i += 2, o++) {
    const c1 = hex.charCodeAt(i);
    const c2 = hex.charCodeAt(i + 1);
    const b = NIBBLE_HI[c1 & 0x7f]! | NIBBLE_LO[c2 & 0x7f]!;
    wide |= c1 | c2;
    bad |= b;
    buf[o] = b;
  }
  return bad >= 0 && wide < 0x80;
}

function putHexN(buf: Uint8Array, at: number, hex: unknown, n: number): boolean {
  if (!hexShape(hex, n)) return false;
  let bad = 0;
  let wide = 0;
  let o = at >> 3;
  let carry = buf[o]!;
  for (let i = 2; i < hex.length; i += 2) {
    const c1 = hex.charCodeAt(i);
    const c2 = hex.charCodeAt(i + 1);
    const hi = NIBBLE_LO[c1 & 0x7f]!;
    const lo = NIBBLE_HI[c2 & 0x7f]!;
    wide |= c1 | c2;
    bad |= hi | lo;
    buf[o++] = carry | hi;
    carry = lo;
  }
  buf[o] = carry;
  return bad >= 0 && wide < 0x80;
}

function putHexU(buf: Uint8Array, at: number, hex: unknown, n: number): boolean {
  if (!hexShape(hex, n)) return false;
  let bad = 0;
  let wide = 0;
  for (let i = 2; i < hex.length; i += 2, at += 8) {
    const c1 = hex.charCodeAt(i);
    const c2 = hex.charCodeAt(i + 1);
    const b = NIBBLE_HI[c1 & 0x7f]! | NIBBLE_LO[c2 & 0x7f]!;
    wide |= c1 | c2;
    bad |= b;
    putByte(buf, at, b & 0xff);
  }
  return bad >= 0 && wide < 0x80;
}

const scratch = new DataView(new ArrayBuffer(8));
const scratchBytes = new Uint8Array(scratch.buffer);
const U64_MAX = (1n << 64n) - 1n;

/** Writes `x` (already range-checked: 0 ≤ x < 2^(8n)) as n big-endian bytes. */
function putBig(buf: Uint8Array, at: number, x: bigint, n: number): void {
  if (x <= U64_MAX) {
    scratch.setBigUint64(0, x);
    // The leading bytes are zero already; x < 2^(8n) when n < 8, so its top bytes are zero too.
    const first = n < 8 ? 8 - n : 0;
    const p = at + (n - 8) * 8;
    if ((at & 7) === 0) for (let i = first, o = p >> 3; i < 8; i++) buf[o + i] = scratchBytes[i]!;
    else for (let i = first; i < 8; i++) putByte(buf, p + i * 8, scratchBytes[i]!);
    return;
  }
  const hex = x.toString(16);
  // Right to left, two digits a byte; a missing leading digit is 0.
  for (let j = 0, k = hex.length - 1; k >= 0; j++, k -= 2) {
    const lo = NIBBLE_LO[hex.charCodeAt(k)]!;
    const hi = k > 0 ? NIBBLE_HI[hex.charCodeAt(k - 1)]! : 0;
    putByte(buf, at + (n - 1 - j) * 8, hi | lo);
  }
}

function putF64(buf: Uint8Array, at: number, x: number): void {
  scratch.setFloat64(0, x);
  for (let i = 0; i < 8; i++) putByte(buf, at + i * 8, scratchBytes[i]!);
}

/** ASCII text without NULs, zero-padded to `size` bytes; false for anything else (the reference handles UTF-8). */
function putText(buf: Uint8Array, at: number, text: unknown, size: number): boolean {
  if (typeof text !== 'string' || text.length > size) return false;
  const aligned = (at & 7) === 0;
  for (let i = 0, o = at >> 3; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0 || c > 0x7f) return false;
    if (aligned) buf[o + i] = c;
    else putByte(buf, at + i * 8, c);
  }
  return true;
}

// ---------------------------------------------------------------- readers

function getBits(bytes: Uint8Array, at: number, width: number): number {
  let v = 0;
  let left = width;
  while (left > 0) {
    const room = 8 - (at & 7);
    const n = left < room ? left : room;
    const chunk = (bytes[at >> 3]! >> (room - n)) & ((1 << n) - 1);
    // Multiply rather than shift so 32-bit values stay unsigned.
    v = v * (1 << n) + chunk;
    at += n;
    left -= n;
  }
  return v;
}

function getByte(bytes: Uint8Array, at: number): number {
  const o = at >> 3;
  const s = at & 7;
  return s === 0 ? bytes[o]! : ((bytes[o]! << s) | (bytes[o + 1]! >> (8 - s))) & 0xff;
}

/**
 * Hex text is written as Latin-1 char codes, two at a time through a 16-bit view, then made a
 * string in one native call.
 */
const chars = Buffer.from(new ArrayBuffer(4096)); // its own ArrayBuffer: offset 0, fit for 16-bit views
const chars16 = new Uint16Array(chars.buffer, chars.byteOffset, chars.length / 2);
/** `Buffer#latin1Slice` (what `toString('latin1')` calls, without its argument handling) where there is one. */
const latin1: (b: Buffer, end: number) => string =
  typeof (Buffer.prototype as { latin1Slice?: unknown }).latin1Slice === 'function'
    ? (b, end) => (b as unknown as { latin1Slice(start: number, end: number): string }).latin1Slice(0, end)
    : (b, end) => b.toString('latin1', 0, end);
/** `0x` in memory order. */
const PREFIX = new Uint16Array(new Uint8Array([48, 120]).buffer)[0]!;

/** Writes `0x` and the 2n hex digits of n bytes at bit `at` into `out` from pair `pos` (char 2 × pos). */
function hexIntoA(bytes: Uint8Array, at: number, n: number, out: Uint16Array, pos: number): void {
  out[pos++] = PREFIX;
  for (let o = at >> 3, end = o + n; o < end; o++) out[pos++] = HEX_PAIRS[bytes[o]!]!;
}

function hexIntoN(bytes: Uint8Array, at: number, n: number, out: Uint16Array, pos: number): void {
  out[pos++] = PREFIX;
  for (let o = at >> 3, end = o + n; o < end; o++) {
    out[pos++] = HEX_PAIRS[((bytes[o]! << 4) | (bytes[o + 1]! >> 4)) & 0xff]!;
  }
}

function hexIntoU(bytes: Uint8Array, at: number, n: number, out: Uint16Array, pos: number): void {
  out[pos++] = PREFIX;
  for (let i = 0; i < n; i++, at += 8) out[pos++] = HEX_PAIRS[getByte(bytes, at)]!;
}

function getHex(bytes: Uint8Array, at: number, n: number): string {
  const s = at & 7;
  (s === 0 ? hexIntoA : s === 4 ? hexIntoN : hexIntoU)(bytes, at, n, chars16, 0);
  return latin1(chars, 2 + 2 * n);
}

/** An unsigned big-endian integer of n bytes; one DataView read when it fits 64 bits. */
function getBig(bytes: Uint8Array, at: number, n: number): bigint {
  const lead = n > 8 ? n - 8 : 0;
  let nonZero = 0;
  if ((at & 7) === 0) {
    for (let o = at >> 3, end = o + lead; o < end; o++) nonZero |= bytes[o]!;
  } else {
    for (let i = 0; i < lead; i++) nonZero |= getByte(bytes, at + i * 8);
  }
  if (nonZero !== 0) {
    return BigInt(getHex(bytes, at, n));
  }
  scratch.setBigUint64(0, 0n);
  for (let i = lead, j = 8 - (n - lead); i < n; i++, j++) scratchBytes[j] = getByte(bytes, at + i * 8);
  return scratch.getBigUint64(0);
}

function getF64(bytes: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) scratchBytes[i] = getByte(bytes, at + i * 8);
  return scratch.getFloat64(0);
}

const TEXT_MAX = 4096;
const textChars = Buffer.alloc(TEXT_MAX);
/** ASCII text up to its NUL padding; undefined for non-ASCII or bytes after the padding. */
function getText(bytes: Uint8Array, at: number, size: number): string | undefined {
  let end = size;
  for (let i = 0; i < size; i++) {
    const c = getByte(bytes, at + i * 8);
    if (end === size) {
      if (c === 0) end = i;
      else if (c > 0x7f) return undefined;
      else textChars[i] = c;
    } else if (c !== 0) return undefined;
  }
  return latin1(textChars, end);
}

const H = {
  putBits,
  putHexA,
  putHexN,
  putHexU,
  putBig,
  putF64,
  putText,
  getBits,
  getHex,
  getBig,
  getF64,
  getText,
  hexIntoA,
  hexIntoN,
  hexIntoU,
};
/** The variant of helper `name` for a field at bit offset `shift` in its byte. */
const variant = (name: 'putHex' | 'hexInto', shift: number) =>
  `H.${name}${shift === 0 ? 'A' : shift === 4 ? 'N' : 'U'}`;

// ---------------------------------------------------------------- the compiler

/** Bits a field takes, with `pad` taking what is left of its byte at bit `pos`. */
function widthAt(f: Field, pos: number): number {
  if (f.kind === 'pad') return (8 - (pos & 7)) & 7;
  if (f.kind === 'list') return f.countBits; // and count × item, at run time
  return scalarBits(f);
}

const q = (s: string) => JSON.stringify(s);

/** Literals that go through the constants array rather than the source text. */
class Consts {
  readonly list: unknown[] = [];
  ref(value: unknown): string {
    if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
    this.list.push(value);
    return `K[${this.list.length - 1}]`;
  }
}

interface Layout {
  /** Bits of the fixed part with no list entries, padding included, from the first field on. */
  minBits: number;
  lists: { name: string; maxItems: number; itemBits: number }[];
}

/** Whether a field list can be compiled: whole-byte list items, names safe as literal keys. */
function compilable(fields: readonly Field[], top: boolean): boolean {
  for (const f of fields) {
    if (f.kind === 'pad') continue;
    if (f.name === '__proto__' || (top && (f.name === 'type' || f.name === 'optional'))) return false;
    if (f.kind === 'list') {
      const itemBits = f.item.reduce((n, i) => n + widthAt(i, 0), 0);
      if (itemBits % 8 !== 0 || !compilable(f.item, false)) return false;
    }
    if (f.kind === 'uint' && f.bits > 32 && (f.bits % 8 !== 0 || 2 + f.bits / 4 > chars.length)) return false;
    if (f.kind === 'text' && f.bytes > TEXT_MAX) return false;
  }
  return true;
}

function layout(fields: readonly Field[], start: number): Layout {
  let pos = start;
  const lists: Layout['lists'] = [];
  for (const f of fields) {
    if (f.kind === 'list') {
      lists.push({
        name: f.name,
        maxItems: f.maxItems,
        itemBits: f.item.reduce((n, i) => n + widthAt(i, 0), 0),
      });
    }
    pos += widthAt(f, pos);
  }
  return { minBits: pos + ((8 - (pos & 7)) & 7) - start, lists };
}

type Encoder = (v: Values, buf: Uint8Array, at: number) => boolean;
type Decoder = (bytes: Uint8Array, at: number) => Values | undefined;

/**
 * Encoder source for `fields` starting at bit `at` (+ a compile-time `start` within the byte):
 * `d` is the bit position where the fields after the last list start.
 */
function encoderSource(
  fields: readonly Field[],
  start: number,
  shift: number,
  presets: Record<string, number>,
  k: Consts,
  prelude: string[] = [],
) {
  const lines = ['let d = at, x;', ...prelude];
  let pos = start;
  for (const f of fields) {
    const p = `d + ${pos}`;
    switch (f.kind) {
      case 'pad':
        break;
      case 'uint': {
        const get = `x = v[${q(f.name)}]${presets[f.name] !== undefined ? ` ?? ${k.ref(presets[f.name])}` : ''};`;
        if (f.bits <= 32) {
          const min = f.min ?? 0;
          const max = f.max ?? 2 ** f.bits - 1;
          lines.push(
            get,
            `if (typeof x !== 'number' || !Number.isInteger(x) || x < ${k.ref(min)} || x > ${k.ref(max)}) return false;`,
            `H.putBits(buf, ${p}, x, ${f.bits});`,
          );
        } else {
          const min = BigInt(f.min ?? 0);
          const max = f.max === undefined ? (1n << BigInt(f.bits)) - 1n : BigInt(f.max);
          lines.push(
            get,
            `if (typeof x !== 'bigint' || x < ${k.ref(min)} || x > ${k.ref(max)}) return false;`,
            `H.putBig(buf, ${p}, x, ${f.bits / 8});`,
          );
        }
        break;
      }
      case 'addr':
      case 'bytes32':
        lines.push(
          `if (!${variant('putHex', (shift + pos) & 7)}(buf, ${p}, v[${q(f.name)}], ${f.kind === 'addr' ? 20 : 32})) return false;`,
        );
        break;
      case 'f64':
        lines.push(
          `x = v[${q(f.name)}];`,
          `if (typeof x !== 'number' || !Number.isFinite(x) || x < ${k.ref(f.min)} || x > ${k.ref(f.max)}) return false;`,
          `H.putF64(buf, ${p}, x);`,
        );
        break;
      case 'text':
        lines.push(`if (!H.putText(buf, ${p}, v[${q(f.name)}], ${f.bytes})) return false;`);
        break;
      case 'list': {
        const item = compileEncoder(f.item, 0, (shift + pos + f.countBits) & 7, {});
        const itemBits = layout(f.item, 0).minBits;
        const first = `${p} + ${f.countBits}`;
        lines.push(
          `x = v[${q(f.name)}];`,
          `if (!Array.isArray(x) || x.length > ${f.maxItems}) return false;`,
          `H.putBits(buf, ${p}, x.length, ${f.countBits});`,
          'for (let i = 0; i < x.length; i++) {',
          '  const it = x[i];',
          `  if (it === null || typeof it !== 'object' || !${k.ref(item)}(it, buf, ${first} + i * ${itemBits})) return false;`,
          '}',
          `d += x.length * ${itemBits};`,
        );
        break;
      }
    }
    pos += widthAt(f, pos);
  }
  lines.push('return true;');
  return lines.join('\n');
}

function compileEncoder(
  fields: readonly Field[],
  start: number,
  shift: number,
  presets: Record<string, number>,
  prelude: (k: Consts) => string[] = () => [],
): Encoder {
  const k = new Consts();
  const body = encoderSource(fields, start, shift, presets, k, prelude(k));
  return new Function('H', 'K', `return function encodeFields(v, buf, at) {\n${body}\n};`)(H, k.list);
}

/**
 * Decoder source; `top` decoders batch their hex fields into one string conversion and report
 * where the fixed part ends in `E[0]` (in bits); `top.typeOf` gives the source of the `type` value.
 */
function compileDecoder(
  fields: readonly Field[],
  start: number,
  shift: number,
  top: { typeOf: (local: (name: string) => string | undefined) => string; k: Consts } | undefined,
): Decoder {
  const k = top?.k ?? new Consts();
  const lines = ['let d = at;'];
  const props: string[] = [];
  const locals = new Map<string, string>();
  const hexFields: { local: string; from: number; to: number }[] = [];
  let hexPos = 0;
  const { minBits } = layout(fields, start);
  let pos = start;
  fields.forEach((f, i) => {
    const p = `d + ${pos}`;
    const v = `f${i}`;
    const check = (cond: string) => lines.push(`if (${cond}) return undefined;`);
    switch (f.kind) {
      case 'pad': {
        const rest = widthAt(f, pos);
        if (rest) check(`H.getBits(bytes, ${p}, ${rest}) !== 0`);
        break;
      }
      case 'uint': {
        if (f.bits <= 32) {
          lines.push(`const ${v} = H.getBits(bytes, ${p}, ${f.bits});`);
          const min = f.min ?? 0;
          const max = f.max ?? 2 ** f.bits - 1;
          if (min > 0 || max < 2 ** f.bits - 1) check(`${v} < ${k.ref(min)} || ${v} > ${k.ref(max)}`);
        } else {
          lines.push(`const ${v} = H.getBig(bytes, ${p}, ${f.bits / 8});`);
          if (f.min || f.max !== undefined) {
            const max = f.max === undefined ? (1n << BigInt(f.bits)) - 1n : BigInt(f.max);
            check(`${v} < ${k.ref(BigInt(f.min ?? 0))} || ${v} > ${k.ref(max)}`);
          }
        }
        break;
      }
      case 'addr':
      case 'bytes32': {
        const n = f.kind === 'addr' ? 20 : 32;
        if (top) {
          // Positions in the shared character buffer are fixed: lists only move the input side.
          lines.push(`${variant('hexInto', (shift + pos) & 7)}(bytes, ${p}, ${n}, C16, ${hexPos / 2});`);
          hexFields.push({ local: v, from: hexPos, to: hexPos + 2 + 2 * n });
          hexPos += 2 + 2 * n;
          lines.push(`let ${v};`);
        } else lines.push(`const ${v} = H.getHex(bytes, ${p}, ${n});`);
        break;
      }
      case 'f64':
        lines.push(`const ${v} = H.getF64(bytes, ${p});`);
        check(`!Number.isFinite(${v}) || ${v} < ${k.ref(f.min)} || ${v} > ${k.ref(f.max)}`);
        break;
      case 'text':
        lines.push(`const ${v} = H.getText(bytes, ${p}, ${f.bytes});`);
        check(`${v} === undefined`);
        break;
      case 'list': {
        const itemBits = layout(f.item, 0).minBits;
        const item = compileDecoder(f.item, 0, (shift + pos + f.countBits) & 7, undefined);
        const first = `${p} + ${f.countBits}`;
        lines.push(`const n${i} = H.getBits(bytes, ${p}, ${f.countBits});`);
        // The whole fixed part, with this many entries, must be in the input.
        check(
          `n${i} > ${f.maxItems} || d - at + ${start + minBits} + n${i} * ${itemBits} > bytes.length * 8`,
        );
        lines.push(
          `const ${v} = new Array(n${i});`,
          `for (let i = 0; i < n${i}; i++) {`,
          `  const it = ${k.ref(item)}(bytes, ${first} + i * ${itemBits});`,
          '  if (it === undefined) return undefined;',
          `  ${v}[i] = it;`,
          '}',
          `d += n${i} * ${itemBits};`,
        );
        break;
      }
    }
    if (f.kind !== 'pad') {
      props.push(`${q(f.name)}: ${v}`);
      locals.set(f.name, v);
    }
    pos += widthAt(f, pos);
  });
  const rest = (8 - (pos & 7)) & 7;
  if (top && rest) lines.push(`if (H.getBits(bytes, d + ${pos}, ${rest}) !== 0) return undefined;`);
  if (hexPos > hexChars.length) throw new Error('schema: too many hex fields in one message');
  if (hexFields.length === 1) {
    lines.push(`${hexFields[0]!.local} = L(C, ${hexPos});`);
  } else if (hexFields.length > 1) {
    lines.push(`const hex = L(C, ${hexPos});`);
    for (const h of hexFields) lines.push(`${h.local} = hex.slice(${h.from}, ${h.to});`);
  }
  if (top) {
    lines.push(
      `const type = ${top.typeOf((name) => locals.get(name))};`,
      'if (type === undefined) return undefined;',
    );
    props.unshift('type');
    lines.push(`E[0] = d + ${pos + rest};`);
  }
  lines.push(`return { ${props.join(', ')} };`);
  const src = `return function decodeFields(bytes, at) {\n${lines.join('\n')}\n};`;
  return new Function('H', 'K', 'C', 'C16', 'E', 'L', src)(H, k.list, hexChars, hexChars16, end, latin1);
}

const hexChars = Buffer.from(new ArrayBuffer(4096));
const hexChars16 = new Uint16Array(hexChars.buffer, hexChars.byteOffset, hexChars.length / 2);
/** Where the last fast decode's fixed part ended, in bits. */
const end = new Int32Array(1);

// ---------------------------------------------------------------- messages

export interface FastEncoder {
  /** The encoder of the whole fixed part, type code and checks included; `at` is 0. */
  fields: Encoder;
  /** Size of the fixed part in bytes, or -1 if the value can't be encoded (a list is wrong). */
  size: (v: Values) => number;
}

/** Decodes a whole fixed part (the type code is known); undefined where the reference must run. */
export interface FastDecoder {
  minBytes: number;
  fields: Decoder;
  end: Int32Array;
}

function compileMessage(schema: MessageSchema, presets: Record<string, number>): FastEncoder | undefined {
  if (!compilable(schema.fields, true)) return undefined;
  const { minBits, lists } = layout(schema.fields, TYPE_BITS);
  const minBytes = (minBits + TYPE_BITS) / 8;
  const keys = ['type', 'optional', ...schema.fields.flatMap((f) => (f.kind === 'pad' ? [] : [f.name]))];
  // What `encode` checks before any field, as the reference does: no unknown keys, and the field
  // that names the variant (if given) has one of its values. Then the type code.
  const prelude = (k: Consts): string[] => {
    const lines = [
      'for (const key in v) {',
      `  switch (key) { ${keys.map((n) => `case ${q(n)}:`).join(' ')} break;`,
      '    default: if (v[key] !== undefined) return false;',
      '  }',
      '}',
    ];
    const sel = schema.select;
    if (sel) {
      lines.push(`x = v[${q(sel.field)}];`);
      if (sel.values.length === 1)
        lines.push(`if (x !== undefined && x !== ${k.ref(sel.values[0])}) return false;`);
      else lines.push(`if (!${k.ref(sel.values)}.includes(x)) return false;`);
    }
    lines.push(`H.putBits(buf, at, ${schema.code}, ${TYPE_BITS});`);
    return lines;
  };
  const fields = compileEncoder(schema.fields, TYPE_BITS, 0, presets, prelude);
  const size = (v: Values): number => {
    let n = minBytes;
    for (const l of lists) {
      const x = v[l.name];
      if (!Array.isArray(x) || x.length > l.maxItems) return -1;
      n += (x.length * l.itemBits) / 8;
    }
    return n;
  };
  return { fields, size };
}

const messages = MESSAGES as Record<MessageName, MessageSchema>;

export const fastEncoders = new Map<string, FastEncoder>();
for (const [name, schema] of Object.entries(messages) as [MessageName, MessageSchema][]) {
  const sel = schema.select;
  const presets = sel?.values.length === 1 ? { [sel.field]: sel.values[0]! } : {};
  const enc = compileMessage(schema, presets);
  if (enc) fastEncoders.set(name, enc);
}

/** By type code: the decoder of the names that share it (their fields are the same). */
export const fastDecoders: (FastDecoder | undefined)[] = new Array(16);
for (let code = 0; code < 16; code++) {
  const names = (Object.keys(messages) as MessageName[]).filter((n) => messages[n].code === code);
  const first = names[0] && messages[names[0]];
  if (!first || !compilable(first.fields, true)) continue;
  const k = new Consts();
  const typeOf = (local: (name: string) => string | undefined): string => {
    if (names.length === 1) return q(names[0]!);
    // The first name whose select values hold its field's value, as the reference picks it.
    let expr = 'undefined';
    for (const n of [...names].reverse()) {
      const sel = messages[n].select!;
      const v = local(sel.field);
      if (v !== undefined) expr = `(${k.ref(sel.values)}.includes(${v}) ? ${q(n)} : ${expr})`;
    }
    return expr;
  };
  const { minBits } = layout(first.fields, TYPE_BITS);
  fastDecoders[code] = {
    minBytes: (minBits + TYPE_BITS) / 8,
    fields: compileDecoder(first.fields, TYPE_BITS, 0, { typeOf, k }),
    end,
  };
}

// ---------------------------------------------------------------- output buffers

/**
 * Encoded messages are carved out of a shared slab, as Node's Buffer pool does: a typed array of
 * more than 64 bytes otherwise costs an off-heap allocation, several times the whole encode.
 * A slab region is handed out once and never reused; a slab is dropped when full.
 */
const SLAB_BYTES = 8192;
let slab = new ArrayBuffer(SLAB_BYTES);
let slabUsed = 0;

/**
 * A zeroed region of n bytes, handed out for good at once (a getter that encodes while a message is
 * being written gets a region of its own); `releaseBytes` gives back one that was not used.
 */
export function takeBytes(n: number): Uint8Array {
  if (n > SLAB_BYTES / 4) return new Uint8Array(n);
  // (A slab whose ArrayBuffer someone transferred away has byteLength 0: it is replaced too.)
  if (slabUsed + n > slab.byteLength) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabUsed = 0;
  }
  const region = new Uint8Array(slab, slabUsed, n);
  slabUsed += n;
  return region;
}

/** Zeroes a region `encode` did not use; the slab takes it back if nothing was handed out since. */
export function releaseBytes(region: Uint8Array): void {
  region.fill(0);
  if (region.buffer === slab && region.byteOffset + region.length === slabUsed) slabUsed = region.byteOffset;
}
