/**
 * The WebAssembly keccak (protocol/keccak.ts) against `@noble/hashes`' and a published vector: the
 * same 32 bytes for every input length across the sponge's 136-byte blocks, for inputs that are
 * views into larger buffers (an envelope's payload is a subarray), and for repeated calls on the one
 * shared instance. It must be the WebAssembly one that runs here: a test fails rather than the
 * comparison quietly running noble against itself.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { keccak_256, keccakBackend, nobleKeccak } from '../protocol/keccak.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('keccak-256', () => {
  it('runs the WebAssembly keccak here', () => {
    expect(keccakBackend).toBe('wasm');
  });

  it('gives the published digests', () => {
    expect(hex(keccak_256(new Uint8Array()))).toBe(
      'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470',
    );
    expect(hex(keccak_256(new TextEncoder().encode('Message(bytes payload)')))).toBe(
      hex(nobleKeccak(new TextEncoder().encode('Message(bytes payload)'))),
    );
  });

  it('equals noble on every length around the block size', () => {
    for (let n = 0; n <= 3 * 136 + 1; n++) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff);
      expect(hex(keccak_256(data)), `length ${n}`).toBe(hex(nobleKeccak(data)));
    }
  });

  it('equals noble on random views of random buffers', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.nat(), fc.nat(), (buf, a, b) => {
        const start = buf.length === 0 ? 0 : a % buf.length;
        const end = start + (buf.length - start === 0 ? 0 : b % (buf.length - start + 1));
        const view = buf.subarray(start, end);
        expect(hex(keccak_256(view))).toBe(hex(nobleKeccak(view)));
        // The shared instance is reset between calls: the same input, the same digest again.
        expect(hex(keccak_256(view))).toBe(hex(nobleKeccak(view)));
      }),
      { numRuns: 500 },
    );
  });
});
