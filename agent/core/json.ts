/**
 * The agent's one bigint JSON codec. JSON has no bigint, and a wei amount or a sequence number does
 * not fit a double, so a bigint travels as a decimal string:
 * - on the HTTP APIs (control port, members' page) as a plain decimal string ("1234"), the form
 *   the page's BigInt() and a curl user read;
 * - in the journal with an `n` suffix ("1234n"), so a stored value says it was a bigint.
 * `big()` reads back either form (and numbers), so every reader uses the same function.
 */

/** JSON.stringify replacer for the HTTP APIs: bigint → decimal string. */
export function bigintToDecimal(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** JSON.stringify replacer for the journal: bigint → "123n". */
export function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `${value}n` : value;
}

/** A value as the HTTP APIs send it (bigints as decimal strings). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, bigintToDecimal);
}

/** Reads back a bigint stored by either replacer (or given as a number or a bigint). */
export function big(value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'string') return BigInt(value.endsWith('n') ? value.slice(0, -1) : value);
  if (typeof value === 'number') return BigInt(value);
  throw new Error(`not a bigint: ${String(value)}`);
}
