import { expect } from 'vitest';
import { revertName } from '../../contracts/client.js';

/** Asserts that a call or transaction reverts with the named custom error. */
export async function expectRevert(promise: Promise<unknown>, errorName: string): Promise<void> {
  try {
    await promise;
  } catch (err) {
    expect(revertName(err), String((err as Error).message).slice(0, 300)).toBe(errorName);
    return;
  }
  throw new Error(`expected a revert with ${errorName}, but the call succeeded`);
}
