import { readFileSync } from 'node:fs';
import { AbiCoder, keccak256, TypedDataEncoder, verifyTypedData } from 'ethers';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addressOf,
  DecodeError,
  decode,
  EIP712_TYPES,
  EncodeError,
  encode,
  fitUtf8,
  fixedSize,
  fromHex,
  MESSAGE_NAMES,
  type MessageInput,
  messageDigest,
  messageFromJson,
  openEnvelope,
  readReport,
  reportEnergyWh,
  signEnvelope,
  toHex,
} from '../protocol/index.js';
import { buildVectors, SAMPLES, VECTOR_DOMAIN, VECTOR_KEYS, VECTORS_PATH } from '../protocol/vectors.js';
import type { Domain } from '../protocol/envelope.js';
import { computeTxId, TERMS_TYPEHASH, type Terms } from '../protocol/terms.js';
import { anyMessage, messageArbitrary } from './helpers/arbitraries.js';

const ethersDomain = (d: typeof VECTOR_DOMAIN) => ({
  name: 'P2PEV',
  version: '1',
  chainId: d.chainId,
  verifyingContract: d.verifyingContract,
});

describe('layouts of SPEC.md', () => {
  const specSizes: Record<string, number> = {
    search: 65,
    request: 41,
    response: 41,
    mutual: 93,
    completion: 73,
    termination: 73,
    chargeReceived: 93,
    chargeProvided: 93,
    amount: 125,
    rating: 84,
    transaction: 116,
  };
  it.each(Object.entries(specSizes))('%s has the fixed size SPEC.md gives (%i bytes)', (name, size) => {
    expect(fixedSize(name as never)).toBe(size);
    const { optional: _, ...fixed } = SAMPLES[name as keyof typeof SAMPLES].message as Record<
      string,
      unknown
    >;
    expect(encode(fixed as MessageInput).length).toBe(size);
  });

  it('suggestion is 42 bytes plus 58 per station', () => {
    expect(encode(SAMPLES.suggestion.message).length).toBe(42 + 2 * 58);
  });

  it('packs the type in the high nibble and request kind/status in the low nibble', () => {
    const a = `0x${'aa'.repeat(20)}`;
    const bytes = encode({ type: 'response', status: 3, sender: a, receiver: a });
    expect(bytes[0]).toBe(0x6b); // 0110 | 10 (response) | 11 (busy)
    expect(toHex(bytes.subarray(1, 21))).toBe(a);
  });

  it('writes GPS as three big-endian float64 and pads the last nibble with zeros', () => {
    const a = `0x${'00'.repeat(20)}`;
    const bytes = encode({ type: 'search', requester: a, server: a, latitude: 1, longitude: -1, radiusM: 0 });
    // type nibble 4, then 320 address bits: the GPS starts at bit 324, so it straddles bytes.
    const gps = new Uint8Array(24);
    for (let i = 0; i < 24; i++) gps[i] = ((bytes[40 + i]! << 4) | (bytes[41 + i]! >> 4)) & 0xff;
    const view = new DataView(gps.buffer);
    expect([view.getFloat64(0), view.getFloat64(8), view.getFloat64(16)]).toEqual([1, -1, 0]);
    expect(bytes[64]! & 0x0f).toBe(0);
  });

  it('names the variant from its discriminating field', () => {
    for (const name of MESSAGE_NAMES) expect(decode(encode(SAMPLES[name].message)).type).toBe(name);
  });
});

describe('round trips', () => {
  it('decode(encode(m)) = m for random valid messages of every type', () => {
    for (const name of MESSAGE_NAMES) {
      fc.assert(
        fc.property(messageArbitrary(name), (m) => {
          const decoded = decode(encode(m as unknown as MessageInput)) as unknown as Record<string, unknown>;
          expect(normalize(decoded)).toEqual(normalize(m));
        }),
        { numRuns: 150 },
      );
    }
  });

  it('encoding is deterministic: optional keys in any order give the same bytes', () => {
    const base = SAMPLES.chargeProvided.message as Record<string, unknown>;
    const reversed = Object.fromEntries(Object.entries(base.optional as object).reverse());
    expect(toHex(encode({ ...base, optional: reversed } as MessageInput))).toBe(
      toHex(encode(base as MessageInput)),
    );
  });
});

function normalize(m: Record<string, unknown>): unknown {
  return JSON.parse(
    JSON.stringify(m, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? toHex(v) : v)),
    (_k, v) => (typeof v === 'string' && /^0x[0-9A-Fa-f]+$/.test(v) ? v.toLowerCase() : v),
  );
}

describe('values out of range are rejected on encode and on decode', () => {
  const rating = SAMPLES.rating.message as Record<string, unknown>;
  const search = SAMPLES.search.message as Record<string, unknown>;

  it.each([
    ['rating 0', { ...rating, rating: 0 }],
    ['rating 6', { ...rating, rating: 6 }],
    ['NaN latitude', { ...search, latitude: Number.NaN }],
    ['latitude 91', { ...search, latitude: 91 }],
    ['infinite radius', { ...search, radiusM: Number.POSITIVE_INFINITY }],
    ['comment of 11 bytes', { ...rating, comment: 'x'.repeat(11) }],
    ['short address', { ...rating, sender: '0x1234' }],
    ['unknown type', { type: 'payment' }],
    ['unknown field', { ...rating, stars: 5 }],
    ['oversize optional data', { ...rating, optional: { blob: new Uint8Array(2000) } }],
    ['response with kind of a request', { ...(SAMPLES.response.message as object), kind: 1 }],
  ])('encode refuses %s', (_what, msg) => {
    expect(() => encode(msg as MessageInput)).toThrow(EncodeError);
  });

  const ratingBytes = encode(rating as MessageInput);
  const searchBytes = encode(search as MessageInput);
  const patched = (bytes: Uint8Array, at: number, value: number) => {
    const copy = bytes.slice();
    copy[at] = value;
    return copy;
  };
  // The rating sits at bits 580..587: the low nibble of byte 72 and the high nibble of byte 73.
  const withRating = (v: number) => {
    const copy = ratingBytes.slice();
    copy[72] = (copy[72]! & 0xf0) | (v >> 4);
    copy[73] = (copy[73]! & 0x0f) | ((v & 0x0f) << 4);
    expect(() => decode(copy)).toThrow(/rating/);
    return copy;
  };
  const withLatitude = (v: number) => {
    const copy = searchBytes.slice();
    const f = new Uint8Array(8);
    new DataView(f.buffer).setFloat64(0, v);
    // latitude starts at bit 324: high nibble of f goes into the low nibble of byte 40.
    for (let i = 0; i < 8; i++) {
      copy[40 + i] = (copy[40 + i]! & 0xf0) | (f[i]! >> 4);
      copy[41 + i] = (copy[41 + i]! & 0x0f) | ((f[i]! & 0x0f) << 4);
    }
    return copy;
  };

  it.each([
    ['rating 0', withRating(0)],
    ['rating 6', withRating(6)],
    ['NaN latitude', withLatitude(Number.NaN)],
    ['latitude -90.5', withLatitude(-90.5)],
    ['non-zero padding', patched(searchBytes, 64, searchBytes[64]! | 0x01)],
    ['unknown type code 0xD', patched(ratingBytes, 0, 0xd0 | (ratingBytes[0]! & 0x0f))],
    ['type code 0 (invalid)', patched(ratingBytes, 0, ratingBytes[0]! & 0x0f)],
    ['trailing garbage after the fixed part', Uint8Array.of(...ratingBytes, 0xff)],
    ['oversize optional data', Uint8Array.of(...ratingBytes, 0x5a, 0, 0, 0x08, 0, ...new Uint8Array(2048))],
    ['termination status 9', patched(encode(SAMPLES.termination.message), 72, 0x90)],
  ])('decode refuses %s', (_what, bytes) => {
    expect(() => decode(bytes)).toThrow(DecodeError);
  });

  it('reports where the problem is', () => {
    const e = (() => {
      try {
        decode(withLatitude(Number.NaN));
      } catch (err) {
        return err as DecodeError;
      }
    })();
    expect(e).toBeInstanceOf(DecodeError);
    expect(e!.field).toBe('latitude');
    expect(e!.bitOffset).toBe(324);
    expect(e!.message).toContain('byte 40 bit 4');
  });

  it('refuses optional data that is not deterministic CBOR or not a map', () => {
    const fixed = encode({ ...(SAMPLES.completion.message as object) } as MessageInput);
    const unsorted = Uint8Array.of(0xa2, 0x61, 0x62, 0x01, 0x61, 0x61, 0x02); // {"b":1,"a":2}
    const longHead = Uint8Array.of(0xa1, 0x61, 0x61, 0x18, 0x01); // 1 written in two bytes
    const notMap = Uint8Array.of(0x83, 1, 2, 3);
    const indefinite = Uint8Array.of(0xbf, 0x61, 0x61, 0x01, 0xff);
    const tagged = Uint8Array.of(0xa1, 0x61, 0x61, 0xc1, 0x01);
    for (const tail of [unsorted, longHead, notMap, indefinite, tagged]) {
      expect(() => decode(Uint8Array.of(...fixed, ...tail))).toThrow(DecodeError);
    }
  });
});

describe('signed envelopes', () => {
  it('ethers.verifyTypedData recovers the same signer for every message type', () => {
    for (const v of buildVectors()) {
      const env = fromHex(v.envelope.hex)!;
      const opened = openEnvelope(env, VECTOR_DOMAIN);
      expect(opened.signer).toBe(v.envelope.signer);
      const byEthers = verifyTypedData(
        ethersDomain(VECTOR_DOMAIN),
        EIP712_TYPES,
        { payload: opened.payload },
        toHex(opened.signature),
      );
      expect(byEthers.toLowerCase()).toBe(v.envelope.signer);
      expect(toHex(messageDigest(opened.payload, VECTOR_DOMAIN))).toBe(
        TypedDataEncoder.hash(ethersDomain(VECTOR_DOMAIN), EIP712_TYPES, { payload: opened.payload }),
      );
    }
  });

  it('the digest follows a domain object changed after use (its separator is cached per object)', () => {
    const payload = Uint8Array.of(1, 2, 3);
    const domain: Domain = { ...VECTOR_DOMAIN };
    const before = toHex(messageDigest(payload, domain));
    domain.chainId += 1n;
    const ethersHash = TypedDataEncoder.hash(ethersDomain(domain), EIP712_TYPES, { payload });
    expect(toHex(messageDigest(payload, domain))).toBe(ethersHash);
    expect(ethersHash).not.toBe(before);
    domain.verifyingContract = `0x${'44'.repeat(20)}`;
    expect(toHex(messageDigest(payload, domain))).toBe(
      TypedDataEncoder.hash(ethersDomain(domain), EIP712_TYPES, { payload }),
    );
  });

  it('ethers agrees on random messages and random keys', () => {
    fc.assert(
      fc.property(
        anyMessage,
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.bigInt({ min: 1n, max: 2n ** 64n }),
        (m, seed, chainId) => {
          const key = seed.slice();
          key[0] = (key[0]! % 0xf0) + 1; // a valid secret key (below the curve order, non-zero)
          const domain = {
            chainId,
            verifyingContract: `0x${Buffer.from(seed.subarray(0, 20)).toString('hex')}`,
          };
          const payload = encode(m as unknown as MessageInput);
          const opened = openEnvelope(signEnvelope(payload, key, domain), domain);
          expect(opened.signer).toBe(addressOf(key));
          expect(
            verifyTypedData(
              ethersDomain(domain),
              EIP712_TYPES,
              { payload },
              toHex(opened.signature),
            ).toLowerCase(),
          ).toBe(addressOf(key));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('binds the signature to chain id and contract: another deployment recovers someone else', () => {
    const payload = encode(SAMPLES.chargeProvided.message);
    const env = signEnvelope(payload, `0x${'02'.repeat(32)}`, VECTOR_DOMAIN);
    const otherChain = openEnvelope(env, { ...VECTOR_DOMAIN, chainId: 1n });
    const otherContract = openEnvelope(env, { ...VECTOR_DOMAIN, verifyingContract: `0x${'11'.repeat(20)}` });
    const signer = addressOf(`0x${'02'.repeat(32)}`);
    expect(otherChain.signer).not.toBe(signer);
    expect(otherContract.signer).not.toBe(signer);
  });

  it('signs low-s and refuses high-s, bad v and tampered payloads', () => {
    const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
    const payload = encode(SAMPLES.rating.message);
    const env = signEnvelope(payload, `0x${'01'.repeat(32)}`, VECTOR_DOMAIN);
    const sig = env.subarray(payload.length);
    const s = BigInt(toHex(sig.subarray(32, 64)));
    expect(s <= N / 2n).toBe(true);
    const high = env.slice();
    high.set(fromHex((N - s).toString(16).padStart(64, '0'))!, payload.length + 32);
    high[env.length - 1] = sig[64] === 27 ? 28 : 27;
    expect(() => openEnvelope(high, VECTOR_DOMAIN)).toThrow(/high-s/);
    const badV = env.slice();
    badV[env.length - 1] = 29;
    expect(() => openEnvelope(badV, VECTOR_DOMAIN)).toThrow(DecodeError);
    const tampered = env.slice();
    tampered[5]! ^= 1;
    expect(openEnvelope(tampered, VECTOR_DOMAIN).signer).not.toBe(addressOf(`0x${'01'.repeat(32)}`));
  });
});

describe('test vectors', () => {
  it('protocol/vectors.json is what the code produces now (run `npm run vectors` after a change)', () => {
    const committed = JSON.parse(readFileSync(VECTORS_PATH, 'utf8'));
    expect(committed.vectors).toEqual(JSON.parse(JSON.stringify(buildVectors())));
    expect(committed.vectors.map((v: { name: string }) => v.name)).toEqual(MESSAGE_NAMES);
  });

  it('every vector decodes to its fields and re-encodes to its bytes', () => {
    for (const v of buildVectors()) {
      const bytes = fromHex(v.hex)!;
      expect(normalize(decode(bytes) as never)).toEqual(normalize(messageFromJson(v.fields) as never));
      expect(toHex(encode(messageFromJson(v.fields)))).toBe(v.hex);
    }
  });
});

describe('charge reports read back from their envelopes', () => {
  const sign = (name: 'chargeReceived' | 'chargeProvided' | 'completion') =>
    signEnvelope(encode(SAMPLES[name].message), VECTOR_KEYS[SAMPLES[name].signer], VECTOR_DOMAIN);

  it('gives the energy the report states, from bytes or hex (with or without 0x)', () => {
    for (const name of ['chargeReceived', 'chargeProvided'] as const) {
      const env = sign(name);
      const stated = (SAMPLES[name].message as { energyWh: bigint }).energyWh;
      expect(reportEnergyWh(env)).toBe(stated);
      expect(reportEnergyWh(toHex(env))).toBe(stated);
      expect(reportEnergyWh(toHex(env).slice(2))).toBe(stated);
      expect(readReport(env).type).toBe(name);
    }
  });

  it('refuses what is not a report, with a DecodeError', () => {
    expect(() => readReport(sign('completion'))).toThrow(/not a charge report/);
    expect(() => readReport('zz')).toThrow(DecodeError);
    expect(() => readReport(new Uint8Array(65))).toThrow(DecodeError);
  });
});

describe('text fitted to UTF-8 bytes', () => {
  it('cuts at the byte limit, never inside a character', () => {
    expect(fitUtf8('great station', 10)).toBe('great stat');
    expect(fitUtf8('äöüäöüäöü', 10)).toBe('äöüäö'); // 2 bytes each
    expect(fitUtf8('⚡⚡⚡⚡', 10)).toBe('⚡⚡⚡'); // 3 bytes each
    expect(fitUtf8('🚗🚗🚗', 10)).toBe('🚗🚗'); // 4 bytes each
    expect(new TextEncoder().encode(fitUtf8('ééééééé', 10)).length).toBe(10);
    expect(fitUtf8('', 10)).toBe('');
  });
});

describe('the txid', () => {
  const coder = AbiCoder.defaultAbiCoder();
  /** What ethers' ABI coder makes of the same terms (the encoding the contract hashes). */
  const viaAbiCoder = (t: Terms, d: Domain) =>
    keccak256(
      coder.encode(
        ['bytes32', 'uint256', 'address', 'address', 'address', 'uint64', 'uint128', 'uint64', 'uint64'],
        [
          TERMS_TYPEHASH,
          d.chainId,
          d.verifyingContract,
          t.ev,
          t.hcs,
          t.seq,
          t.priceWeiPerKWh,
          t.maxEnergyWh,
          t.settleBy,
        ],
      ),
    );
  const address = fc
    .uint8Array({ minLength: 20, maxLength: 20 })
    .map((b) => `0x${Buffer.from(b).toString('hex')}`);
  const uint = (bits: number) => fc.bigInt({ min: 0n, max: (1n << BigInt(bits)) - 1n });

  it("is the same as ethers' ABI encoding hashed, for any terms in range", () => {
    fc.assert(
      fc.property(
        address,
        address,
        address,
        uint(64),
        uint(128),
        uint(64),
        uint(64),
        uint(256),
        (contract, ev, hcs, seq, priceWeiPerKWh, maxEnergyWh, settleBy, chainId) => {
          const t = { ev, hcs, seq, priceWeiPerKWh, maxEnergyWh, settleBy };
          const d = { chainId, verifyingContract: contract };
          expect(computeTxId(t, d)).toBe(viaAbiCoder(t, d));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses a value out of its range, or an address that is not one, naming the field', () => {
    const t = {
      ev: `0x${'11'.repeat(20)}`,
      hcs: `0x${'22'.repeat(20)}`,
      seq: 1n,
      priceWeiPerKWh: 1n,
      maxEnergyWh: 1n,
      settleBy: 1n,
    };
    const d = VECTOR_DOMAIN;
    expect(() => computeTxId({ ...t, seq: 1n << 64n }, d)).toThrow(/seq/);
    expect(() => computeTxId({ ...t, priceWeiPerKWh: -1n }, d)).toThrow(/priceWeiPerKWh/);
    expect(() => computeTxId({ ...t, maxEnergyWh: 1n << 64n }, d)).toThrow(/maxEnergyWh/);
    expect(() => computeTxId({ ...t, settleBy: -5n }, d)).toThrow(/settleBy/);
    expect(() => computeTxId({ ...t, ev: '0x1234' }, d)).toThrow(/ev/);
    expect(() => computeTxId({ ...t, hcs: 'not an address' }, d)).toThrow(/hcs/);
    expect(() => computeTxId(t, { ...d, chainId: -1n })).toThrow(/chainId/);
  });
});
