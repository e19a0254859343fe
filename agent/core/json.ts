/**
 * Bigints in JSON, in one place. Two spellings, each for one reader:
 * - the journal writes a bigint as a decimal string with an `n` suffix (`"123n"`), so it is told
 *   apart from a string field and reads back as a bigint (`big`);
 * - HTTP answers (the control port, the members' page) write a plain decimal string (`"123"`),
 *   which a browser's `BigInt()` and every JSON tool take as is.
 */

/** JSON.stringify replacer for the journal: bigint → `"123n"`. */
export function journalReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `${value}n` : value;
}

/** JSON.stringify replacer for HTTP answers: bigint → `"123"`. */
export function httpReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** A value as JSON text for an HTTP answer (bigints as decimal strings). */
export function toHttpJson(value: unknown): string {
  return JSON.stringify(value, httpReplacer);
}

/** Reads back a bigint from either spelling (or a number, or a bigint already). */
export function big(value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'string') return BigInt(value.endsWith('n') ? value.slice(0, -1) : value);
  if (typeof value === 'number') return BigInt(value);
  throw new Error(`not a bigint: ${String(value)}`);
}
