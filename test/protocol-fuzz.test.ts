/**
 * Bad input: random, truncated, extended and bit-flipped bytes. The decoder's only failure is
 * DecodeError: never another exception, never a hang, never an allocation the input can't justify.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DecodeError,
  decode,
  encode,
  type MessageInput,
  openEnvelope,
  signEnvelope,
} from '../protocol/index.js';
import { VECTOR_DOMAIN } from '../protocol/vectors.js';
import { anyMessage } from './helpers/arbitraries.js';

/** Decodes, and fails the property on anything but success or DecodeError. */
function decodeOrDecodeError(bytes: Uint8Array): void {
  try {
    decode(bytes);
  } catch (err) {
    if (!(err instanceof DecodeError))
      throw new Error(`decoder threw ${String(err)} on ${Buffer.from(bytes).toString('hex')}`);
  }
}

const encoded = anyMessage.map((m) => encode(m as unknown as MessageInput));

describe('decoder fuzz', () => {
  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), decodeOrDecodeError), { numRuns: 5000 });
  });

  it('random bytes behind every valid type nibble', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 15 }), fc.uint8Array({ maxLength: 200 }), (type, rest) => {
        decodeOrDecodeError(Uint8Array.of((type << 4) | ((rest[0] ?? 0) & 0x0f), ...rest));
      }),
      { numRuns: 5000 },
    );
  });

  it('truncated valid messages', () => {
    fc.assert(
      fc.property(encoded, fc.nat(), (bytes, cut) => {
        const n = cut % bytes.length;
        const full = decode(bytes);
        const fixedLength = encode({ ...full, optional: undefined } as MessageInput).length;
        // Cutting exactly where the optional data starts leaves a valid message; anywhere else fails.
        if (n === fixedLength) expect(decode(bytes.subarray(0, n)).optional).toBeUndefined();
        else expect(() => decode(bytes.subarray(0, n))).toThrow(DecodeError);
      }),
      { numRuns: 2000 },
    );
  });

  it('extended valid messages', () => {
    fc.assert(
      fc.property(encoded, fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes, extra) => {
        decodeOrDecodeError(Uint8Array.of(...bytes, ...extra));
      }),
      { numRuns: 2000 },
    );
  });

  it('bit-flipped valid messages', () => {
    fc.assert(
      fc.property(encoded, fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), (bytes, flips) => {
        const copy = bytes.slice();
        for (const f of flips) copy[Math.floor(f / 8) % copy.length]! ^= 1 << (f % 8);
        decodeOrDecodeError(copy);
      }),
      { numRuns: 3000 },
    );
  });

  it('envelopes: random and mangled bytes give DecodeError or some signer, nothing else', () => {
    const good = signEnvelope(
      encode({
        type: 'completion',
        ev: `0x${'11'.repeat(20)}`,
        hcs: `0x${'22'.repeat(20)}`,
        txid: `0x${'33'.repeat(32)}`,
      }),
      `0x${'01'.repeat(32)}`,
      VECTOR_DOMAIN,
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (junk, flip) => {
        for (const input of [
          junk,
          good.map((b, i) => (i === flip % good.length ? b ^ (1 << (flip % 8)) : b)),
        ]) {
          try {
            openEnvelope(input, VECTOR_DOMAIN);
          } catch (err) {
            if (!(err instanceof DecodeError)) throw err;
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('a suggestion that claims 255 stations in a few bytes is refused before any is built', () => {
    const bytes = new Uint8Array(50);
    bytes[0] = 0x50;
    bytes[40] = 0x0f; // the count straddles bytes 40/41 after the 4-bit type and two addresses
    bytes[41] = 0xf0;
    expect(() => decode(bytes)).toThrow(/255 entries do not fit/);
  });

  it('CBOR that claims huge strings, arrays or maps is refused before cbor-x sees it', () => {
    const fixed = encode({
      type: 'completion',
      ev: `0x${'11'.repeat(20)}`,
      hcs: `0x${'22'.repeat(20)}`,
      txid: `0x${'33'.repeat(32)}`,
    });
    const claims = [
      [0xa1, 0x61, 0x61, 0x5a, 0xff, 0xff, 0xff, 0xff], // byte string of 4 GiB
      [0xa1, 0x61, 0x61, 0x9a, 0xff, 0xff, 0xff, 0xff], // array of 4 billion items
      [0xbb, 0, 0, 0, 1, 0, 0, 0, 0], // map of 2^32 entries
    ];
    for (const c of claims)
      expect(() => decode(Uint8Array.of(...fixed, ...c))).toThrow(/only \d+ (bytes )?left/);
  });
});
