/**
 * Most-significant-bit-first bit writer and reader (SPEC.md: fields back to back, no padding
 * between them, multi-byte integers big-endian). Byte-aligned runs take a fast path, because
 * almost every field in the paper's layouts lands on a byte boundary after the 4-bit type.
 */
import { DecodeError } from './errors.js';
import { nibble, toHex } from './hex.js';

export class BitWriter {
  private buf: Uint8Array;
  private bit = 0;

  constructor(capacityBytes = 128) {
    this.buf = new Uint8Array(capacityBytes);
  }

  /** Starts over, keeping the buffer: one writer serves every encode (encoding is synchronous). */
  reset(): this {
    this.buf.fill(0, 0, Math.ceil(this.bit / 8));
    this.bit = 0;
    return this;
  }

  get bitLength(): number {
    return this.bit;
  }

  private ensure(extraBits: number): void {
    const need = Math.ceil((this.bit + extraBits) / 8);
    if (need <= this.buf.length) return;
    const next = new Uint8Array(Math.max(need, this.buf.length * 2));
    next.set(this.buf);
    this.buf = next;
  }

  /** Writes the low `width` bits of `value` (width ≤ 32), most significant first. */
  writeSmall(value: number, width: number): void {
    this.ensure(width);
    let left = width;
    while (left > 0) {
      // As many bits as fit in the current byte, in one step.
      const room = 8 - (this.bit & 7);
      const n = Math.min(left, room);
      const chunk = (value >>> (left - n)) & ((1 << n) - 1);
      const at = this.bit >> 3;
      this.buf[at] = (this.buf[at] ?? 0) | (chunk << (room - n));
      this.bit += n;
      left -= n;
    }
  }

  /** Writes `bytes` as a run of bits; aligned writes are a plain copy. */
  writeBytes(bytes: Uint8Array): void {
    this.ensure(bytes.length * 8);
    if ((this.bit & 7) === 0) {
      this.buf.set(bytes, this.bit >> 3);
      this.bit += bytes.length * 8;
      return;
    }
    for (const b of bytes) this.writeSmall(b, 8);
  }

  /** Writes the bytes spelled by a validated `0x` hex string, without an intermediate array. */
  writeHex(hex: string): void {
    const n = (hex.length - 2) / 2;
    this.ensure(n * 8);
    const aligned = (this.bit & 7) === 0;
    for (let i = 0; i < n; i++) {
      const byte = (nibble(hex.charCodeAt(2 + 2 * i)) << 4) | nibble(hex.charCodeAt(3 + 2 * i));
      if (aligned) this.buf[(this.bit >> 3) + i] = byte;
      else this.writeSmall(byte, 8);
    }
    if (aligned) this.bit += n * 8;
  }

  /** Writes an unsigned bigint (< 2^width, width a multiple of 8), big-endian. */
  writeBig(value: bigint, width: number): void {
    // Through hex: one native conversion instead of a BigInt shift per byte.
    this.writeHex(`0x${value.toString(16).padStart(width / 4, '0')}`);
  }

  /** Zero bits up to the next byte boundary. */
  padToByte(): void {
    const rest = (8 - (this.bit & 7)) & 7;
    this.ensure(rest);
    this.bit += rest;
  }

  /** A copy of what was written. (A plain loop: `slice` costs more than the copy on small messages.) */
  finish(): Uint8Array {
    const n = Math.ceil(this.bit / 8);
    const out = new Uint8Array(n);
    const buf = this.buf;
    out.set(buf.subarray(0, n));
    return out;
  }
}

export class BitReader {
  private bit = 0;

  constructor(private readonly bytes: Uint8Array) {}

  get bitOffset(): number {
    return this.bit;
  }

  get bitsLeft(): number {
    return this.bytes.length * 8 - this.bit;
  }

  private need(width: number, field: string): void {
    if (this.bitsLeft < width) {
      throw new DecodeError(`truncated: needs ${width} bits, ${this.bitsLeft} left`, this.bit, field);
    }
  }

  readSmall(width: number, field: string): number {
    this.need(width, field);
    let v = 0;
    let left = width;
    while (left > 0) {
      const room = 8 - (this.bit & 7);
      const n = Math.min(left, room);
      const chunk = ((this.bytes[this.bit >> 3] ?? 0) >> (room - n)) & ((1 << n) - 1);
      // Multiply rather than shift so 32-bit values stay unsigned.
      v = v * (1 << n) + chunk;
      this.bit += n;
      left -= n;
    }
    return v;
  }

  readBytes(n: number, field: string): Uint8Array {
    this.need(n * 8, field);
    if ((this.bit & 7) === 0) {
      const start = this.bit >> 3;
      this.bit += n * 8;
      return this.bytes.slice(start, start + n);
    }
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.readSmall(8, field);
    return out;
  }

  /** Reads `n` bytes as `0x` hex, straight from the input when aligned. */
  readHex(n: number, field: string): string {
    this.need(n * 8, field);
    if ((this.bit & 7) === 0) {
      const start = this.bit >> 3;
      this.bit += n * 8;
      return toHex(this.bytes, start, start + n);
    }
    return toHex(this.readBytes(n, field));
  }

  /** Reads an unsigned bigint of `width` bits (a multiple of 8), big-endian. */
  readBig(width: number, field: string): bigint {
    return BigInt(this.readHex(width / 8, field));
  }

  /** Skips to the byte boundary; the skipped bits must be zero (SPEC.md). */
  padToByte(field = 'padding'): void {
    const rest = (8 - (this.bit & 7)) & 7;
    if (rest && this.readSmall(rest, field) !== 0) {
      throw new DecodeError('non-zero padding bits', this.bit - rest, field);
    }
  }

  /** The remaining whole bytes (the reader is byte-aligned here). */
  rest(): Uint8Array {
    const start = Math.ceil(this.bit / 8);
    this.bit = this.bytes.length * 8;
    return this.bytes.subarray(start);
  }
}
