/**
 * Agreement terms and the transaction ID that commits to them (docs/DESIGN.md). The contract
 * recomputes the same hash, so a report that names a txid is a signature on these terms.
 */
import { AbiCoder, keccak256, toUtf8Bytes } from 'ethers';
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

const coder = AbiCoder.defaultAbiCoder();

export function computeTxId(terms: Terms, domain: Domain): string {
  return keccak256(
    coder.encode(
      ['bytes32', 'uint256', 'address', 'address', 'address', 'uint64', 'uint128', 'uint64', 'uint64'],
      [
        TERMS_TYPEHASH,
        domain.chainId,
        domain.verifyingContract,
        terms.ev,
        terms.hcs,
        terms.seq,
        terms.priceWeiPerKWh,
        terms.maxEnergyWh,
        terms.settleBy,
      ],
    ),
  );
}

/** The bill for an energy at the agreed price, rounded down to the wei (as the contract does). */
export function billWei(energyWh: bigint, priceWeiPerKWh: bigint): bigint {
  return (energyWh * priceWeiPerKWh) / 1000n;
}
