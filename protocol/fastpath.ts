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
import { HEX_CHARS as hexChars_, NIBBLES as nibbles_ } from './hex.js';
import { type Field, MESSAGES, type MessageName, type MessageSchema, TYPE_BITS } from './schema.js';

type Values = Record<string, unknown>;

// Module-local bindings: a transpiler's CommonJS interop (tsx) turns every use of an imported
// binding into a getter call, which in these loops cost more than the lookups themselves.
const HEX_CHARS = hexChars_;
const NIBBLES = nibbles_;

// ---------------------------------------------------------------- writers
// `at` is a bit offset. The target is zeroed beyond the field being written, so a field that
// shares its first byte with the previous one is ORed in.

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

/** Validates `0x` + 2n hex digits and writes them; false if `hex` is anything else. */
function putHex(buf: Uint8Array, at: number, hex: unknown, n: number): boolean {
  if (
    typeof hex !== 'string' ||
    hex.length !== 2 + 2 * n ||
    hex.charCodeAt(0) !== 48 ||
    (hex.charCodeAt(1) | 32) !== 120
  ) {
    return false;
  }
  const s = at & 7;
  let o = at >> 3;
  let bad = 0;
  const end = hex.length;
  if (s === 0) {
    for (let i = 2; i < end; i += 2) {
      const hi = NIBBLES[hex.charCodeAt(i)]!;
      const lo = NIBBLES[hex.charCodeAt(i + 1)]!;
      bad |= hi | lo;
      buf[o++] = (hi << 4) | lo;
    }
  } else if (s === 4) {
    // Every digit is one nibble of the output: no shifting across bytes.
    for (let i = 2; i < end; i += 2) {
      const hi = NIBBLES[hex.charCodeAt(i)]!;
      const lo = NIBBLES[hex.charCodeAt(i + 1)]!;
      bad |= hi | lo;
      buf[o++]! |= hi;
      buf[o] = lo << 4;
    }
  } else {
    for (let i = 2; i < end; i += 2) {
      const hi = NIBBLES[hex.charCodeAt(i)]!;
      const lo = NIBBLES[hex.charCodeAt(i + 1)]!;
      bad |= hi | lo;
      const byte = (hi << 4) | lo;
      buf[o++]! |= byte >> s;
      buf[o] = byte << (8 - s);
    }
  }
  return bad >= 0;
}

const scratch = new DataView(new ArrayBuffer(8));
const U64_MAX = (1n << 64n) - 1n;

/** Writes `x` (already range-checked: 0 ≤ x < 2^(8n)) as n big-endian bytes. */
function putBig(buf: Uint8Array, at: number, x: bigint, n: number): void {
  if (x <= U64_MAX) {
    scratch.setBigUint64(0, x);
    // The leading bytes are zero already; x < 2^(8n) when n < 8, so its top bytes are zero too.
    for (let i = n < 8 ? 8 - n : 0, p = at + (n - 8 + i) * 8; i < 8; i++, p += 8) {
      putByte(buf, p, scratch.getUint8(i));
    }
    return;
  }
  const hex = x.toString(16);
  // Right to left, two digits a byte; a missing leading digit is 0.
  for (let j = 0, k = hex.length - 1; k >= 0; j++, k -= 2) {
    const lo = NIBBLES[hex.charCodeAt(k)]!;
    const hi = k > 0 ? NIBBLES[hex.charCodeAt(k - 1)]! : 0;
    putByte(buf, at + (n - 1 - j) * 8, (hi << 4) | lo);
  }
}

function putF64(buf: Uint8Array, at: number, x: number): void {
  scratch.setFloat64(0, x);
  for (let i = 0; i < 8; i++) putByte(buf, at + i * 8, scratch.getUint8(i));
}

/** ASCII text without NULs, zero-padded to `size` bytes; false for anything else (the reference handles UTF-8). */
function putText(buf: Uint8Array, at: number, text: unknown, size: number): boolean {
  if (typeof text !== 'string' || text.length > size) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0 || c > 0x7f) return false;
    putByte(buf, at + i * 8, c);
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

/** Hex text is written as Latin-1 char codes here, then made a string in one native call. */
const chars = Buffer.alloc(4096);
const bigChars = Buffer.alloc(2 + 2 * 4096);

/** Writes `0x` and the 2n hex digits of n bytes at bit `at` into `out` from `pos`. */
function hexInto(bytes: Uint8Array, at: number, n: number, out: Uint8Array, pos: number): void {
  out[pos++] = 48;
  out[pos++] = 120;
  const s = at & 7;
  let o = at >> 3;
  if (s === 0) {
    for (const end = o + n; o < end; o++) {
      const b = bytes[o]! << 1;
      out[pos++] = HEX_CHARS[b]!;
      out[pos++] = HEX_CHARS[b + 1]!;
    }
  } else if (s === 4) {
    for (const end = o + n; o < end; o++) {
      out[pos++] = HEX_CHARS[((bytes[o]! & 0x0f) << 1) + 1]!;
      out[pos++] = HEX_CHARS[((bytes[o + 1]! >> 4) << 1) + 1]!;
    }
  } else {
    for (let i = 0; i < n; i++, at += 8) {
      const b = getByte(bytes, at) << 1;
      out[pos++] = HEX_CHARS[b]!;
      out[pos++] = HEX_CHARS[b + 1]!;
    }
  }
}

function getHex(bytes: Uint8Array, at: number, n: number): string {
  hexInto(bytes, at, n, chars, 0);
  return chars.toString('latin1', 0, 2 + 2 * n);
}

function getBig(bytes: Uint8Array, at: number, n: number): bigint {
  const lead = n > 8 ? n - 8 : 0;
  for (let i = 0; i < lead; i++) {
    if (getByte(bytes, at + i * 8) !== 0) {
      hexInto(bytes, at, n, bigChars, 0);
      return BigInt(bigChars.toString('latin1', 0, 2 + 2 * n));
    }
  }
  scratch.setBigUint64(0, 0n);
  for (let i = lead, j = 8 - (n - lead); i < n; i++, j++) scratch.setUint8(j, getByte(bytes, at + i * 8));
  return scratch.getBigUint64(0);
}

function getF64(bytes: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) scratch.setUint8(i, getByte(bytes, at + i * 8));
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
  return textChars.toString('latin1', 0, end);
}

const H = { putBits, putHex, putBig, putF64, putText, getBits, getHex, getBig, getF64, getText, hexInto };

// ---------------------------------------------------------------- the compiler

/** Bits a field takes, with `pad` taking what is left of its byte at bit `pos`. */
function widthAt(f: Field, pos: number): number {
  switch (f.kind) {
    case 'uint':
      return f.bits;
    case 'addr':
      return 160;
    case 'bytes32':
      return 256;
    case 'f64':
      return 64;
    case 'text':
      return f.bytes * 8;
    case 'pad':
      return (8 - (pos & 7)) & 7;
    case 'list':
      return f.countBits; // and count × item, at run time
  }
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
    if (f.kind === 'uint' && f.bits > 32 && f.bits % 8 !== 0) return false;
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
function encoderSource(fields: readonly Field[], start: number, presets: Record<string, number>, k: Consts) {
  const lines = ['let d = at, x;'];
  let pos = start;
  for (const f of fields) {
    const p = `d + ${pos}`;
    switch (f.kind) {
      case 'pad':
        break;
      case 'uint': {
        const get = `x = v[${q(f.name)}]${presets[f.name] !== undefined ? ` ?? ${presets[f.name]}` : ''};`;
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
          `if (!H.putHex(buf, ${p}, v[${q(f.name)}], ${f.kind === 'addr' ? 20 : 32})) return false;`,
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
        const item = compileEncoder(f.item, 0, {});
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

function compileEncoder(fields: readonly Field[], start: number, presets: Record<string, number>): Encoder {
  const k = new Consts();
  const body = encoderSource(fields, start, presets, k);
  return new Function('H', 'K', `return function encodeFields(v, buf, at) {\n${body}\n};`)(H, k.list);
}

/**
 * Decoder source; `top` decoders batch their hex fields into one string conversion and report
 * where the fixed part ends in `E[0]` (in bits). `typeExpr` is the source of the `type` value.
 */
function compileDecoder(
  fields: readonly Field[],
  start: number,
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
          lines.push(`H.hexInto(bytes, ${p}, ${n}, C, ${hexPos});`);
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
        const item = compileDecoder(f.item, 0, undefined);
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
    lines.push(`${hexFields[0]!.local} = C.toString('latin1', 0, ${hexPos});`);
  } else if (hexFields.length > 1) {
    lines.push(`const hex = C.toString('latin1', 0, ${hexPos});`);
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
  return new Function('H', 'K', 'C', 'E', src)(H, k.list, hexChars, end);
}

const hexChars = Buffer.alloc(4096);
/** Where the last fast decode's fixed part ended, in bits. */
const end = new Int32Array(1);

// ---------------------------------------------------------------- messages

export interface FastEncoder {
  keys: Set<string>;
  /** The encoder of the fixed part; `at` is 0. */
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
  const typeCode = schema.code;
  const fields = compileEncoder(schema.fields, TYPE_BITS, presets);
  const encodeAll: Encoder = (v, buf, at) => {
    putBits(buf, at, typeCode, TYPE_BITS);
    return fields(v, buf, at);
  };
  const size = (v: Values): number => {
    let n = minBytes;
    for (const l of lists) {
      const x = v[l.name];
      if (!Array.isArray(x) || x.length > l.maxItems) return -1;
      n += (x.length * l.itemBits) / 8;
    }
    return n;
  };
  const keys = new Set([
    'type',
    'optional',
    ...schema.fields.flatMap((f) => (f.kind === 'pad' ? [] : [f.name])),
  ]);
  return { keys, fields: encodeAll, size };
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
    fields: compileDecoder(first.fields, TYPE_BITS, { typeOf, k }),
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

/** A zeroed region of n bytes; `commit` keeps it, otherwise the next call hands it out again. */
export function takeBytes(n: number): Uint8Array {
  if (n > SLAB_BYTES / 4) return new Uint8Array(n);
  if (slabUsed + n > slab.byteLength) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabUsed = 0;
  }
  return new Uint8Array(slab, slabUsed, n);
}

export function commitBytes(region: Uint8Array): void {
  if (region.buffer === slab) slabUsed += region.length;
}
