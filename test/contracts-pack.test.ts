/**
 * The packed terms of the contract's batch calldata (contracts/client.ts packTerms): the same bytes
 * as Solidity's `abi.encodePacked` of the fields (ethers' solidityPacked), and a clear error for
 * an address that is not `0x` and 40 hex digits (checked and decoded in one pass).
 */
import { solidityPacked } from 'ethers';
import { describe, expect, it } from 'vitest';
import { packTerms } from '../contracts/client.js';

const terms = {
  ev: `0x${'aB'.repeat(20)}`,
  hcs: `0x${'0c'.repeat(20)}`,
  seq: 7n,
  priceWeiPerKWh: 300_000_000_000_000n,
  maxEnergyWh: 6000n,
  settleBy: 1_800_000_000n,
};

describe('packTerms', () => {
  it('packs ev 20 ‖ hcs 20 ‖ seq 8 ‖ price 16 ‖ maxWh 8 ‖ settleBy 8, as abi.encodePacked', () => {
    const packed = solidityPacked(
      ['address', 'address', 'uint64', 'uint128', 'uint64', 'uint64'],
      [terms.ev.toLowerCase(), terms.hcs, terms.seq, terms.priceWeiPerKWh, terms.maxEnergyWh, terms.settleBy],
    );
    expect(`0x${Buffer.from(packTerms(terms)).toString('hex')}`).toBe(packed.toLowerCase());
  });

  it('refuses an address that is not 0x and 40 hex digits', () => {
    for (const bad of [
      `0x${'ab'.repeat(19)}`,
      `0x${'ab'.repeat(21)}`,
      `0x${'ab'.repeat(19)}zz`,
      'ab'.repeat(20),
      `0X${'ab'.repeat(20)}`,
      `0x${'ab'.repeat(19)}a`,
    ]) {
      expect(() => packTerms({ ...terms, hcs: bad }), bad).toThrow(/not an address/);
      expect(() => packTerms({ ...terms, ev: bad }), bad).toThrow(/not an address/);
    }
  });
});
