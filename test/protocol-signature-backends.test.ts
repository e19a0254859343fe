/**
 * Differential test of the signature backends (protocol/signature.ts): native libsecp256k1 and
 * @noble/curves must accept and refuse exactly the same signatures, with the same signer or the
 * same error, on many random cases: valid ones, high-s twins, flipped recovery ids, malformed ones
 * (bad v, r or s out of range, r not on the curve, wrong length, random bytes, single bit flips)
 * and signatures made for another chain or another contract. The native binding must load here
 * (linux-x64 ships it prebuilt): a test fails rather than the comparison quietly running one side.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addressOf,
  DecodeError,
  type Domain,
  loadNativeBackend,
  messageDigest,
  loadNobleBackend,
  recoverAddress,
  type SignatureBackend,
  signatureBackendInfo,
  signPayload,
} from '../protocol/index.js';
import { checkSignatureBackend } from '../agent/ops/doctor.js';
import { VECTOR_DOMAIN } from '../protocol/vectors.js';

const nobleBackend = await loadNobleBackend();

const native = loadNativeBackend();
const N = secp256k1.Point.CURVE().n;

function nativeBackend(): SignatureBackend {
  if (native instanceof Error) throw native;
  return native;
}

type Outcome = { signer: string } | { error: string; offset: number };

function outcome(backend: SignatureBackend, signature: Uint8Array, digest: Uint8Array): Outcome {
  try {
    return { signer: recoverAddress(signature, digest, 0, backend) };
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    return { error: err.message, offset: err.bitOffset };
  }
}

/** Both backends give the same outcome; returns it. */
function same(signature: Uint8Array, digest: Uint8Array): Outcome {
  const a = outcome(nativeBackend(), signature, digest);
  const b = outcome(nobleBackend, signature, digest);
  expect(a).toEqual(b);
  return a;
}

function word(n: bigint): Uint8Array {
  return Uint8Array.from(Buffer.from(n.toString(16).padStart(64, '0'), 'hex'));
}

function withRS(sig: Uint8Array, r: bigint, s: bigint, v = sig[64]!): Uint8Array {
  const out = new Uint8Array(65);
  out.set(word(r), 0);
  out.set(word(s), 32);
  out[64] = v;
  return out;
}

const key = fc.uint8Array({ minLength: 32, maxLength: 32 }).filter((k) => {
  const n = BigInt(`0x${Buffer.from(k).toString('hex')}`);
  return n > 0n && n < N;
});
const payload = fc.uint8Array({ minLength: 1, maxLength: 200 });
const otherDomain: fc.Arbitrary<Domain> = fc.oneof(
  fc.bigInt({ min: 1n, max: 2n ** 64n }).map((chainId) => ({ ...VECTOR_DOMAIN, chainId })),
  fc
    .uint8Array({ minLength: 20, maxLength: 20 })
    .map((a) => ({ ...VECTOR_DOMAIN, verifyingContract: `0x${Buffer.from(a).toString('hex')}` })),
);

describe('signature backends', () => {
  it('the native libsecp256k1 binding loads on this machine (never the elliptic fallback)', () => {
    expect(native).not.toBeInstanceOf(Error);
    expect(nativeBackend().name).toBe('libsecp256k1');
    expect(signatureBackendInfo().name).toBe(process.env.P2PEV_SIGNATURE_BACKEND ?? 'libsecp256k1');
  });

  it('valid signatures: both recover the signer', () => {
    fc.assert(
      fc.property(key, payload, (k, p) => {
        const digest = messageDigest(p, VECTOR_DOMAIN);
        expect(same(signPayload(p, k, VECTOR_DOMAIN), digest)).toEqual({ signer: addressOf(k) });
      }),
      { numRuns: 300 },
    );
  });

  it('the high-s twin and the flipped recovery id: both refuse the one, and neither recovers the signer from the other', () => {
    fc.assert(
      fc.property(key, payload, (k, p) => {
        const digest = messageDigest(p, VECTOR_DOMAIN);
        const sig = signPayload(p, k, VECTOR_DOMAIN);
        const r = BigInt(`0x${Buffer.from(sig.subarray(0, 32)).toString('hex')}`);
        const s = BigInt(`0x${Buffer.from(sig.subarray(32, 64)).toString('hex')}`);
        // (r, n − s) with the other parity is the same signature, mathematically valid: refused.
        const high = same(withRS(sig, r, N - s, sig[64] === 27 ? 28 : 27), digest);
        expect(high).toEqual({ error: expect.stringMatching(/high-s/), offset: 256 });
        const flipped = same(withRS(sig, r, s, sig[64] === 27 ? 28 : 27), digest);
        expect(flipped).not.toEqual({ signer: addressOf(k) });
      }),
      { numRuns: 200 },
    );
  });

  it('another chain or another contract: both recover someone else', () => {
    fc.assert(
      fc.property(key, payload, otherDomain, (k, p, domain) => {
        const sig = signPayload(p, k, domain);
        expect(same(sig, messageDigest(p, VECTOR_DOMAIN))).not.toEqual({ signer: addressOf(k) });
      }),
      { numRuns: 150 },
    );
  });

  it('malformed: v, r and s out of range, wrong lengths', () => {
    fc.assert(
      fc.property(key, payload, fc.integer({ min: 0, max: 255 }), (k, p, v) => {
        const digest = messageDigest(p, VECTOR_DOMAIN);
        const sig = signPayload(p, k, VECTOR_DOMAIN);
        const r = BigInt(`0x${Buffer.from(sig.subarray(0, 32)).toString('hex')}`);
        const s = BigInt(`0x${Buffer.from(sig.subarray(32, 64)).toString('hex')}`);
        const badV = same(withRS(sig, r, s, v), digest);
        if (v !== 27 && v !== 28)
          expect(badV).toEqual({ error: expect.stringContaining(`v is ${v}, not 27 or 28`), offset: 512 });
        for (const [rr, ss] of [
          [0n, s],
          [r, 0n],
          [N, s],
          [r, N],
          [N + 1n, s],
          [2n ** 256n - 1n, s],
        ] as const) {
          expect(same(withRS(sig, rr, ss), digest)).toEqual({
            error: expect.stringContaining('r or s out of range'),
            offset: 0,
          });
        }
        // At the bounds: s = n/2 is low (checked further), n/2 + 1 high; r and s = n − 1 in range.
        const half = N >> 1n;
        const rule = (o: Outcome) => ('error' in o ? o.error : 'recovered');
        for (const ss of [half, 1n])
          expect(rule(same(withRS(sig, r, ss), digest))).not.toMatch(/high-s|out of range/);
        expect(rule(same(withRS(sig, N - 1n, s), digest))).not.toMatch(/out of range/);
        expect(rule(same(withRS(sig, r, N - 1n), digest))).toMatch(/high-s/);
        expect(same(withRS(sig, r, half + 1n), digest)).toEqual({
          error: expect.stringContaining('high-s'),
          offset: 256,
        });
        expect(same(sig.subarray(0, 64), digest)).toEqual({
          error: expect.stringContaining('must be 65 bytes'),
          offset: 0,
        });
        expect(same(Uint8Array.of(...sig, 0), digest)).toEqual({
          error: expect.stringContaining('must be 65 bytes'),
          offset: 0,
        });
      }),
      { numRuns: 100 },
    );
  });

  it('random r, s and v over random digests (r often not on the curve): the same outcome', () => {
    let recovered = 0;
    let unrecoverable = 0;
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.bigInt({ min: 1n, max: N >> 1n }),
        fc.bigInt({ min: 1n, max: N - 1n }),
        fc.constantFrom(27, 28),
        (digest, s, r, v) => {
          const o = same(withRS(new Uint8Array(65), r, s, v), digest);
          if ('signer' in o) recovered++;
          else if (o.error.includes('does not recover')) unrecoverable++;
        },
      ),
      { numRuns: 1000 },
    );
    // Both kinds were exercised (about half of all x have a point).
    expect(recovered).toBeGreaterThan(100);
    expect(unrecoverable).toBeGreaterThan(100);
  });

  it('single bit flips of valid signatures: the same outcome', () => {
    fc.assert(
      fc.property(key, payload, fc.integer({ min: 0, max: 65 * 8 - 1 }), (k, p, bit) => {
        const digest = messageDigest(p, VECTOR_DOMAIN);
        const sig = Uint8Array.from(signPayload(p, k, VECTOR_DOMAIN));
        sig[bit >> 3]! ^= 1 << (bit & 7);
        expect(same(sig, digest)).not.toEqual({ signer: addressOf(k) });
      }),
      { numRuns: 300 },
    );
  });

  it('signing: both give the same bytes (RFC 6979, low-s), and refuse the same invalid keys', () => {
    fc.assert(
      fc.property(key, fc.uint8Array({ minLength: 32, maxLength: 32 }), (k, digest) => {
        const a = nativeBackend().sign(digest, k);
        const b = nobleBackend.sign(digest, k);
        expect(Buffer.from(a).toString('hex')).toBe(Buffer.from(b).toString('hex'));
        expect(recoverAddress(a, digest, 0, nativeBackend())).toBe(addressOf(k));
        const pub = nativeBackend().publicKey(k);
        expect(Buffer.from(pub).toString('hex')).toBe(Buffer.from(nobleBackend.publicKey(k)).toString('hex'));
        const compressed = Uint8Array.of(2 + (pub[64]! & 1), ...pub.subarray(1, 33));
        expect(Buffer.from(nativeBackend().uncompress(compressed)).toString('hex')).toBe(
          Buffer.from(nobleBackend.uncompress(compressed)).toString('hex'),
        );
      }),
      { numRuns: 300 },
    );
    for (const bad of [new Uint8Array(32), word(N), word(N + 5n), word(2n ** 256n - 1n)]) {
      expect(() => nativeBackend().sign(new Uint8Array(32).fill(7), bad)).toThrow();
      expect(() => nobleBackend.sign(new Uint8Array(32).fill(7), bad)).toThrow();
    }
  });

  it('the raw backends agree on recovery ids and s in the high half too', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.bigInt({ min: 1n, max: N - 1n }),
        fc.bigInt({ min: 1n, max: N - 1n }),
        fc.constantFrom(0, 1),
        (digest, r, s, recid) => {
          const compact = withRS(new Uint8Array(65), r, s).subarray(0, 64);
          const a = nativeBackend().recover(compact, recid, digest);
          const b = nobleBackend.recover(compact, recid, digest);
          expect(a && Buffer.from(a).toString('hex')).toEqual(b && Buffer.from(b).toString('hex'));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('p2pev doctor', () => {
  it('says which backend checks signatures, and how to get the native one back', () => {
    expect(checkSignatureBackend({ name: 'libsecp256k1' })).toMatchObject({
      status: 'ok',
      name: 'signatures',
    });
    const missing = checkSignatureBackend({
      name: 'noble-curves',
      nativeUnavailable: 'No native build was found',
    });
    expect(missing.status).toBe('warn');
    expect(missing.detail).toContain('No native build was found');
    expect(missing.fix).toContain('npm rebuild secp256k1');
    expect(
      checkSignatureBackend({ name: 'noble-curves', nativeUnavailable: 'P2PEV_SIGNATURE_BACKEND' }).fix,
    ).toContain('unset P2PEV_SIGNATURE_BACKEND');
  });
});
