/**
 * Agreement terms and the transaction ID that commits to them (docs/DESIGN.md). The contract
 * recomputes the same hash, so a report that names a txid is a signature on these terms.
 */
import { keccak_256 } from '@noble/hashes/sha3.js';
import { keccak256, toUtf8Bytes } from 'ethers';
import type { Domain } from './envelope.js';

export interface Terms {
  ev: string;
  hcs: string;
  /** The HCS's own session counter: strictly increasing, journaled across restarts. */
  seq: bigint;
  priceWeiPerKWh: bigint;
  maxEnergyWh: bigint;
  /** End of the settlement window, unix seconds. */
  settleBy: bigint;
}

export const TERMS_TYPEHASH = keccak256(
  toUtf8Bytes(
    'Terms(address ev,address hcs,uint64 seq,uint128 priceWeiPerKWh,uint64 maxEnergyWh,uint64 settleBy)',
  ),
);

/** One ABI word: `n` big-endian in 32 bytes at `at`. */
function putWord(out: Uint8Array, at: number, n: bigint): void {
  let v = n;
  for (let i = at + 31; i >= at && v > 0n; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function putAddressWord(out: Uint8Array, at: number, address: string): void {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new Error(`not an address: ${address}`);
  out.set(Buffer.from(address.slice(2), 'hex'), at + 12);
}

const TYPEHASH_BYTES = Buffer.from(TERMS_TYPEHASH.slice(2), 'hex');
const LIMITS = { seq: 64, priceWeiPerKWh: 128, maxEnergyWh: 64, settleBy: 64 } as const;

/**
 * keccak256 of abi.encode(TERMS_TYPEHASH, chainId, verifyingContract, ev, hcs, seq, price, maxWh,
 * settleBy), the words written directly: the edge computes one per agreement, and the ABI coder's
 * checks and hex strings cost more than the hash (bench:edge).
 */
export function computeTxId(terms: Terms, domain: Domain): string {
  const words = new Uint8Array(9 * 32);
  words.set(TYPEHASH_BYTES, 0);
  putWord(words, 32, BigInt(domain.chainId));
  putAddressWord(words, 64, domain.verifyingContract);
  putAddressWord(words, 96, terms.ev);
  putAddressWord(words, 128, terms.hcs);
  for (const [i, k] of (['seq', 'priceWeiPerKWh', 'maxEnergyWh', 'settleBy'] as const).entries()) {
    const v = BigInt(terms[k]);
    if (v < 0n || v >= 1n << BigInt(LIMITS[k]))
      throw new Error(`terms.${k} ${v} does not fit uint${LIMITS[k]}`);
    putWord(words, 160 + 32 * i, v);
  }
  return `0x${Buffer.from(keccak_256(words)).toString('hex')}`;
}

/** The bill for an energy at the agreed price, rounded down to the wei (as the contract does). */
export function billWei(energyWh: bigint, priceWeiPerKWh: bigint): bigint {
  return (energyWh * priceWeiPerKWh) / 1000n;
}
