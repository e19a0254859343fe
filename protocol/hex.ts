/** Hex ⇄ bytes with lookup tables: addresses and IDs are converted on every message. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const NIBBLE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  NIBBLE['0123456789abcdef'.charCodeAt(i)] = i;
  NIBBLE['0123456789ABCDEF'.charCodeAt(i)] = i;
}

export function toHex(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let s = '0x';
  for (let i = start; i < end; i++) s += HEX[bytes[i] ?? 0];
  return s;
}

/** Value (0..15) of a hex digit's char code, or -1. */
export function nibble(charCode: number): number {
  return NIBBLE[charCode] ?? -1;
}

/** Whether `hex` is `0x` followed by exactly 2 × `length` hex digits. */
export function isHexOfLength(hex: unknown, length: number): hex is string {
  if (
    typeof hex !== 'string' ||
    hex.length !== 2 + 2 * length ||
    hex[0] !== '0' ||
    (hex[1] !== 'x' && hex[1] !== 'X')
  ) {
    return false;
  }
  for (let i = 2; i < hex.length; i++) if ((NIBBLE[hex.charCodeAt(i)] ?? -1) < 0) return false;
  return true;
}

/** Parses `0x…` (or bare) hex of exactly `length` bytes when given; returns undefined if malformed. */
export function fromHex(hex: string, length?: number): Uint8Array | undefined {
  const start = hex.startsWith('0x') || hex.startsWith('0X') ? 2 : 0;
  const digits = hex.length - start;
  if (digits % 2 !== 0 || (length !== undefined && digits !== length * 2)) return undefined;
  const out = new Uint8Array(digits / 2);
  for (let i = 0; i < out.length; i++) {
    const hi = NIBBLE[hex.charCodeAt(start + 2 * i)] ?? -1;
    const lo = NIBBLE[hex.charCodeAt(start + 2 * i + 1)] ?? -1;
    if (hi < 0 || lo < 0) return undefined;
    out[i] = (hi << 4) | lo;
  }
  return out;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
