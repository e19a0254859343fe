/**
 * Signature checks: one module, the fastest backend that loads (docs/DESIGN.md, Signatures).
 *
 * Recovering the signer of an envelope is what every receiver pays for every message, and what
 * bounded the whole system (docs/BENCHMARKS.md). Two backends, the same answers (the differential
 * test `test/protocol-signature-backends.test.ts` holds them to it):
 * - `libsecp256k1`: Bitcoin Core's C library through the native binding of the npm `secp256k1`
 *   package (prebuilt for linux-x64 in the package; compiled at install on arm64/armhf where a
 *   compiler is there). ~25× the recoveries a core of the JS one. The binding is loaded directly
 *   with node-gyp-build: the package's own entry point falls back silently to `elliptic` (a slower,
 *   older pure-JS library) when the binding is missing, which this module never uses.
 * - `noble-curves`: `@noble/curves` (pure JS, audited), everywhere else.
 *
 * `P2PEV_SIGNATURE_BACKEND=noble-curves` forces the portable one (tests, benchmarks, a suspected
 * native fault); `libsecp256k1` insists on the native one (an error if it does not load).
 *
 * The rules that decide acceptance (length, v of 27 or 28, r and s in range, s in the low half)
 * are checked here, once, before either backend runs; a backend only recovers a point.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { keccak_256 } from './keccak.js';
import { DecodeError } from './errors.js';
import { fromHex, toHex } from './hex.js';

export const SIGNATURE_BYTES = 65;
export type SignatureBackendName = 'libsecp256k1' | 'noble-curves';

export interface SignatureBackend {
  readonly name: SignatureBackendName;
  /**
   * The 65-byte uncompressed public key that made `compact` (r ‖ s, both already checked in range
   * and s low) with recovery id `recid` (0 or 1) over the 32-byte `digest`, or undefined when no
   * point recovers (r is not the x of a curve point).
   */
  recover(compact: Uint8Array, recid: number, digest: Uint8Array): Uint8Array | undefined;
  /**
   * The 65-byte `r ‖ s ‖ v` (v = 27 or 28, s low) of `secretKey` over `digest`, with RFC 6979
   * deterministic nonces: both backends give the same bytes.
   */
  sign(digest: Uint8Array, secretKey: Uint8Array): Uint8Array;
  /** The 65-byte uncompressed public key of a secret key. */
  publicKey(secretKey: Uint8Array): Uint8Array;
  /** A 33-byte compressed public key, uncompressed (65 bytes); throws if it is not a curve point. */
  uncompress(publicKey: Uint8Array): Uint8Array;
}

/** The order of secp256k1's group. */
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const HALF_N = N >> 1n;

/**
 * The portable backend, imported only when it is needed: where the native binding loads, its
 * modules (~2 MB of a device's memory) are never loaded.
 */
async function importNoble(): Promise<SignatureBackend> {
  const [{ secp256k1 }, secp, { hmac }, { sha256 }] = await Promise.all([
    import('@noble/curves/secp256k1.js'),
    import('@noble/secp256k1'),
    import('@noble/hashes/hmac.js'),
    import('@noble/hashes/sha2.js'),
  ]);
  secp.hashes.sha256 = sha256;
  secp.hashes.hmacSha256 = (key, msg) => hmac(sha256, key, msg);
  return {
    name: 'noble-curves',
    recover(compact, recid, digest) {
      try {
        const sig = secp256k1.Signature.fromBytes(compact, 'compact').addRecoveryBit(recid);
        // Uncompressed straight from the point: no square root to decompress it again.
        return sig.recoverPublicKey(digest).toBytes(false);
      } catch {
        return undefined;
      }
    },
    sign(digest, secretKey) {
      // @noble/secp256k1, the minimal audited library devices have always signed with.
      const sig = secp.sign(digest, secretKey, { prehash: false, lowS: true, format: 'recovered' });
      // noble's recovered format is rec ‖ r ‖ s; Ethereum's is r ‖ s ‖ v.
      const out = new Uint8Array(65);
      out.set(sig.subarray(1), 0);
      out[64] = 27 + (sig[0] ?? 0);
      return out;
    },
    publicKey: (secretKey) => secp.getPublicKey(secretKey, false),
    uncompress: (publicKey) => secp.Point.fromBytes(publicKey).toBytes(false),
  };
}

let noble: Promise<SignatureBackend> | undefined;
/** The portable backend (@noble/curves to recover, @noble/secp256k1 to sign). */
export function loadNobleBackend(): Promise<SignatureBackend> {
  noble ??= importNoble();
  return noble;
}

interface NativeSecp256k1 {
  ecdsaRecover(output: Uint8Array, sig: Uint8Array, recid: number, msg32: Uint8Array): number;
  ecdsaSign(
    out: { signature: Uint8Array; recid: number | null },
    msg32: Uint8Array,
    seckey: Uint8Array,
    data: undefined,
    noncefn: undefined,
  ): number;
  publicKeyCreate(output: Uint8Array, seckey: Uint8Array): number;
  publicKeyConvert(output: Uint8Array, pubkey: Uint8Array): number;
}

/** The native binding, or why it did not load. */
export function loadNativeBackend(): SignatureBackend | Error {
  try {
    const require = createRequire(import.meta.url);
    const dir = dirname(require.resolve('secp256k1/package.json'));
    // node-gyp-build: the package's prebuilt binding for this platform, or one compiled at install.
    const addon = require('node-gyp-build')(dir) as { Secp256k1: new () => NativeSecp256k1 };
    const ctx = new addon.Secp256k1();
    return {
      name: 'libsecp256k1',
      recover(compact, recid, digest) {
        const out = new Uint8Array(65);
        // 0: recovered; 1: r or s overflow; 2: no point recovers.
        return ctx.ecdsaRecover(out, compact, recid, digest) === 0 ? out : undefined;
      },
      sign(digest, secretKey) {
        // libsecp256k1's default nonce is RFC 6979's and its signatures are low-s: the same bytes
        // as @noble/secp256k1's (the differential test holds them to it), ~6× faster, constant time.
        const out = new Uint8Array(65);
        const result = { signature: out.subarray(0, 64), recid: null as number | null };
        if (ctx.ecdsaSign(result, digest, secretKey, undefined, undefined) !== 0 || result.recid === null)
          throw new Error('private key is not a valid secp256k1 scalar');
        out[64] = 27 + result.recid;
        return out;
      },
      publicKey(secretKey) {
        const out = new Uint8Array(65);
        if (ctx.publicKeyCreate(out, secretKey) !== 0)
          throw new Error('private key is not a valid secp256k1 scalar');
        return out;
      },
      uncompress(publicKey) {
        const out = new Uint8Array(65);
        if (ctx.publicKeyConvert(out, publicKey) !== 0) throw new Error('not a point on secp256k1');
        return out;
      },
    };
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

interface Chosen {
  backend: SignatureBackend;
  /** Why the native backend is not the one running, if it is not. */
  nativeUnavailable?: string;
}

async function choose(): Promise<Chosen> {
  const wanted = process.env.P2PEV_SIGNATURE_BACKEND;
  if (wanted === 'noble-curves')
    return { backend: await loadNobleBackend(), nativeUnavailable: 'P2PEV_SIGNATURE_BACKEND' };
  const native = loadNativeBackend();
  if (!(native instanceof Error)) return { backend: native };
  if (wanted === 'libsecp256k1')
    throw new Error(
      `P2PEV_SIGNATURE_BACKEND=libsecp256k1 but the native binding does not load (${native.message}); ` +
        'reinstall with a compiler (build-essential, python3) or unset the variable',
    );
  return { backend: await loadNobleBackend(), nativeUnavailable: native.message.split('\n')[0] };
}

// Chosen once, as this module loads (the portable one is imported only if it is the one).
const chosen: Chosen = await choose();

/** The backend this process signs and checks signatures with. */
export function signatureBackend(): SignatureBackend {
  return chosen.backend;
}

/** For `p2pev doctor` and the metrics: which backend runs and, if not the native one, why. */
export function signatureBackendInfo(): { name: SignatureBackendName; nativeUnavailable?: string } {
  return {
    name: chosen.backend.name,
    ...(chosen.nativeUnavailable ? { nativeUnavailable: chosen.nativeUnavailable } : {}),
  };
}

/**
 * Signature checks (recoveries) and signatures this process has made: the metrics and the
 * benchmarks count them per session.
 */
export const signatureChecks = { total: 0, signed: 0 };

/** The Ethereum address (lowercase 0x) of a 65-byte uncompressed public key. */
export function addressOfUncompressed(publicKey: Uint8Array): string {
  return toHex(keccak_256(publicKey.subarray(1)).subarray(12));
}

const N_BYTES = fromHex(`0x${N.toString(16).padStart(64, '0')}`, 32) as Uint8Array;
const HALF_N_BYTES = fromHex(`0x${HALF_N.toString(16).padStart(64, '0')}`, 32) as Uint8Array;

/** Compares two 32-byte big-endian numbers: negative, 0 or positive (no bigint per check). */
function compare32(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return 0;
}

function isZero32(a: Uint8Array): boolean {
  for (let i = 0; i < 32; i++) if (a[i] !== 0) return false;
  return true;
}

/**
 * The signer's address of a 65-byte `r ‖ s ‖ v` over `digest`; DecodeError for a malformed,
 * high-s or unrecoverable signature (as OpenZeppelin's ECDSA refuses them on chain). `at` is the
 * signature's bit offset in its envelope, for the error.
 */
export function recoverAddress(
  signature: Uint8Array,
  digest: Uint8Array,
  at = 0,
  backend: SignatureBackend = signatureBackend(),
): string {
  if (signature.length !== SIGNATURE_BYTES)
    throw new DecodeError('signature must be 65 bytes', at, 'signature');
  const v = signature[64];
  if (v !== 27 && v !== 28)
    throw new DecodeError(`signature v is ${v}, not 27 or 28`, at + 64 * 8, 'signature');
  const compact = signature.subarray(0, 64);
  const r = compact.subarray(0, 32);
  const s = compact.subarray(32, 64);
  if (isZero32(r) || compare32(r, N_BYTES) >= 0 || isZero32(s) || compare32(s, N_BYTES) >= 0)
    throw new DecodeError('signature r or s out of range', at, 'signature');
  if (compare32(s, HALF_N_BYTES) > 0)
    throw new DecodeError('high-s signature (malleable); only low-s is accepted', at + 32 * 8, 'signature');
  signatureChecks.total++;
  const publicKey = backend.recover(compact, v - 27, digest);
  if (!publicKey) throw new DecodeError('signature does not recover to a public key', at, 'signature');
  return addressOfUncompressed(publicKey);
}
