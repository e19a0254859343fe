/**
 * Agreement terms and the transaction ID that commits to them (docs/DESIGN.md). The contract
 * recomputes the same hash, so a report that names a txid is a signature on these terms.
 */
import { keccak_256 } from './keccak.js';
import { getBytes, keccak256, toUtf8Bytes } from 'ethers';
import { addressWord, type Domain, word } from './envelope.js';
import { EncodeError } from './errors.js';
import { concatBytes, toHex } from './hex.js';

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
const TYPEHASH_BYTES = getBytes(TERMS_TYPEHASH);

/** A uint of `bits` as an ABI word; EncodeError naming the field when it does not fit. */
function uintWord(value: bigint, bits: number, field: string): Uint8Array {
  if (typeof value !== 'bigint' || value < 0n || value >= 1n << BigInt(bits))
    throw new EncodeError(`must be a whole number from 0 to 2^${bits} - 1`, field);
  return word(value);
}

/**
 * keccak256(abi.encode(TERMS_TYPEHASH, chainId, contract, ev, hcs, seq, price, maxWh, settleBy)),
 * as the contract computes it: nine static words, encoded here directly (ethers' AbiCoder, its
 * checks and hex strings, cost more than the hash: a few percent of each agent's CPU at scale, and
 * the edge computes one per agreement; test/protocol.test.ts checks the two agree).
 */
export function computeTxId(terms: Terms, domain: Domain): string {
  return toHex(
    keccak_256(
      concatBytes(
        TYPEHASH_BYTES,
        uintWord(domain.chainId, 256, 'chainId'),
        addressWord(domain.verifyingContract),
        addressWord(terms.ev, 'ev'),
        addressWord(terms.hcs, 'hcs'),
        uintWord(terms.seq, 64, 'seq'),
        uintWord(terms.priceWeiPerKWh, 128, 'priceWeiPerKWh'),
        uintWord(terms.maxEnergyWh, 64, 'maxEnergyWh'),
        uintWord(terms.settleBy, 64, 'settleBy'),
      ),
    ),
  );
}

/** The bill for an energy at the agreed price, rounded down to the wei (as the contract does). */
export function billWei(energyWh: bigint, priceWeiPerKWh: bigint): bigint {
  return (energyWh * priceWeiPerKWh) / 1000n;
}
