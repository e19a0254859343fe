/**
 * The generated fast path (protocol/fastpath.ts) against the reference interpreter of the schema
 * table: on valid messages, on mangled bytes and on bad values, `encode`/`decode` give exactly what
 * `encodeReference`/`decodeReference` give (the same bytes, the same fields in the same order, the
 * same error, field and offset). A fast path that accepted what the table refuses would be a hole.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decode, decodeReference, encode, encodeReference } from '../protocol/codec.js';
import type { MessageInput } from '../protocol/index.js';
import { anyMessage } from './helpers/arbitraries.js';

type Outcome = { ok: true; value: unknown } | { ok: false; error: string };

function outcome(fn: () => unknown): Outcome {
  try {
    const value = fn();
    // Bytes compared as hex; messages with their key order (JSON keeps it).
    return {
      ok: true,
      value:
        value instanceof Uint8Array
          ? Buffer.from(value).toString('hex')
          : JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)),
    };
  } catch (err) {
    const e = err as Error & { field?: string; bitOffset?: number; offset?: number };
    return {
      ok: false,
      error: `${e.constructor.name}: ${e.message} ${e.field ?? ''} ${e.bitOffset ?? e.offset ?? ''}`,
    };
  }
}

const sameDecode = (bytes: Uint8Array) =>
  expect(outcome(() => decode(bytes))).toEqual(outcome(() => decodeReference(bytes)));
const sameEncode = (msg: Record<string, unknown>) =>
  expect(outcome(() => encode(msg as unknown as MessageInput))).toEqual(
    outcome(() => encodeReference(msg as unknown as MessageInput)),
  );

const encoded = anyMessage.map((m) => encodeReference(m as unknown as MessageInput));

describe('the fast path agrees with the reference interpreter', () => {
  it('on valid messages, both ways', () => {
    fc.assert(
      fc.property(anyMessage, (m) => {
        sameEncode(m);
        sameDecode(encodeReference(m as unknown as MessageInput));
      }),
      { numRuns: 3000 },
    );
  });

  it('on bit-flipped, truncated and extended bytes', () => {
    fc.assert(
      fc.property(
        encoded,
        fc.array(fc.nat(), { maxLength: 4 }),
        fc.nat(),
        fc.uint8Array({ maxLength: 16 }),
        (bytes, flips, cut, extra) => {
          const flipped = bytes.slice();
          for (const f of flips) flipped[Math.floor(f / 8) % flipped.length]! ^= 1 << (f % 8);
          sameDecode(flipped);
          sameDecode(bytes.subarray(0, cut % (bytes.length + 1)));
          sameDecode(Uint8Array.of(...bytes, ...extra));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('on bad values: a field replaced by something out of range, of the wrong type or malformed', () => {
    const bad = fc.constantFrom<unknown>(
      -1,
      2 ** 53,
      1.5,
      Number.NaN,
      '0x',
      `0x${'zz'.repeat(20)}`,
      `0x${'ab'.repeat(21)}`,
      `0X${'AB'.repeat(20)}`,
      `0x${'é'.repeat(40)}`,
      'x'.repeat(300),
      -1n,
      2n ** 300n,
      null,
      undefined,
      {},
      [],
    );
    fc.assert(
      fc.property(anyMessage, fc.nat(), bad, (m, which, value) => {
        const keys = Object.keys(m).filter((k) => k !== 'type');
        if (keys.length === 0) return;
        sameEncode({ ...m, [keys[which % keys.length]!]: value });
      }),
      { numRuns: 3000 },
    );
  });
});
