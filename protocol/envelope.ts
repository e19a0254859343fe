import { keccak_256 } from './keccak.js';
import { DecodeError, EncodeError } from './errors.js';
import { concatBytes, fromHex } from './hex.js';
import {
  addressOfUncompressed,
  recoverAddress,
  SIGNATURE_BYTES,
  signatureBackend,
  signatureChecks,
} from './signature.js';

export { SIGNATURE_BYTES };

export const DOMAIN_NAME = 'P2PEV';
export const DOMAIN_VERSION = '1';
/** For ethers' `signTypedData`/`verifyTypedData`: the same digest, computed independently. */
export const EIP712_TYPES = { Message: [{ name: 'payload', type: 'bytes' }] };

/** The deployment a signature is bound to. */
export interface Domain {
  chainId: bigint;
  verifyingContract: string;
}

const utf8 = new TextEncoder();
const DOMAIN_TYPEHASH = keccak_256(
  utf8.encode('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)'),
);
const MESSAGE_TYPEHASH = keccak_256(utf8.encode('Message(bytes payload)'));
const NAME_HASH = keccak_256(utf8.encode(DOMAIN_NAME));
const VERSION_HASH = keccak_256(utf8.encode(DOMAIN_VERSION));

/** A uint as an ABI word (32 bytes, big-endian); the caller checks its range. */
export function word(value: bigint): Uint8Array {
  const out = new Uint8Array(32);
  let v = value;
  for (let i = 31; i >= 0 && v > 0n; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** An address as an ABI word; EncodeError (naming `field`) unless it is 0x and 40 hex digits. */
export function addressWord(addr: string, field = 'verifyingContract'): Uint8Array {
  const bytes = fromHex(addr, 20);
  if (!bytes) throw new EncodeError('must be 0x and 40 hex digits', field);
  const out = new Uint8Array(32);
  out.set(bytes, 12);
  return out;
}

// One domain per deployment: computed once, not per message; found by the domain object first
// (an agent signs and checks every message with the same one), by its value after.
const separators = new Map<string, Uint8Array>();
const separatorOf = new WeakMap<Domain, { chainId: bigint; contract: string; sep: Uint8Array }>();
export function domainSeparator(domain: Domain): Uint8Array {
  const known = separatorOf.get(domain);
  if (known && known.chainId === domain.chainId && known.contract === domain.verifyingContract)
    return known.sep;
  const sep = separatorByValue(domain);
  separatorOf.set(domain, { chainId: domain.chainId, contract: domain.verifyingContract, sep });
  return sep;
}

function separatorByValue(domain: Domain): Uint8Array {
  const key = `${domain.chainId}:${domain.verifyingContract.toLowerCase()}`;
  let sep = separators.get(key);
  if (!sep) {
    sep = keccak_256(
      concatBytes(
        DOMAIN_TYPEHASH,
        NAME_HASH,
        VERSION_HASH,
        word(domain.chainId),
        addressWord(domain.verifyingContract),
      ),
    );
    if (separators.size > 64) separators.clear();
    separators.set(key, sep);
  }
  return sep;
}

// The two fixed-size inputs of a digest, filled in place (keccak copies its input: reusing them is
// safe, and nothing interleaves a synchronous call): typehash ‖ keccak(payload), and
// 0x1901 ‖ domain separator ‖ struct hash.
const structInput = new Uint8Array(64);
structInput.set(MESSAGE_TYPEHASH, 0);
const digestInput = new Uint8Array(66);
digestInput[0] = 0x19;
digestInput[1] = 0x01;

/** The EIP-712 digest of `Message(bytes payload)` in `domain`. */
export function messageDigest(payload: Uint8Array, domain: Domain): Uint8Array {
  structInput.set(keccak_256(payload), 32);
  digestInput.set(domainSeparator(domain), 2);
  digestInput.set(keccak_256(structInput), 34);
  return keccak_256(digestInput);
}

/** The Ethereum address of a public key (65-byte uncompressed or 33-byte compressed). */
export function addressOfPublicKey(publicKey: Uint8Array): string {
  return addressOfUncompressed(
    publicKey.length === 65 ? publicKey : signatureBackend().uncompress(publicKey),
  );
}

function secretKeyBytes(privateKey: Uint8Array | string): Uint8Array {
  const key = typeof privateKey === 'string' ? fromHex(privateKey, 32) : privateKey;
  if (key?.length !== 32) throw new EncodeError('private key must be 32 bytes', 'privateKey');
  return key;
}

export function addressOf(privateKey: Uint8Array | string): string {
  return addressOfPublicKey(signatureBackend().publicKey(secretKeyBytes(privateKey)));
}

/** 65-byte `r ‖ s ‖ v` (v = 27 or 28) over the payload's digest; s is always low. */
export function signPayload(
  payload: Uint8Array,
  privateKey: Uint8Array | string,
  domain: Domain,
): Uint8Array {
  signatureChecks.signed++;
  return signatureBackend().sign(messageDigest(payload, domain), secretKeyBytes(privateKey));
}

/** The envelope that goes on the wire: payload followed by its signature. */
export function signEnvelope(
  payload: Uint8Array,
  privateKey: Uint8Array | string,
  domain: Domain,
): Uint8Array {
  return concatBytes(payload, signPayload(payload, privateKey, domain));
}

/** Recovers the signer's address; DecodeError for malformed, high-s or unrecoverable signatures. */
export function recoverSigner(payload: Uint8Array, signature: Uint8Array, domain: Domain): string {
  return recoverAddress(signature, messageDigest(payload, domain), payload.length * 8);
}

export interface OpenedEnvelope {
  payload: Uint8Array;
  signature: Uint8Array;
  /** Lowercase 0x address of whoever signed it. */
  signer: string;
}

/** Splits an envelope and recovers its signer (which the caller still compares with the sender). */
export function openEnvelope(envelope: Uint8Array, domain: Domain): OpenedEnvelope {
  if (!(envelope instanceof Uint8Array) || envelope.length <= SIGNATURE_BYTES) {
    throw new DecodeError('envelope shorter than a 65-byte signature plus a message', 0, 'envelope');
  }
  const payload = envelope.subarray(0, envelope.length - SIGNATURE_BYTES);
  const signature = envelope.subarray(envelope.length - SIGNATURE_BYTES);
  return { payload, signature, signer: recoverSigner(payload, signature, domain) };
}
