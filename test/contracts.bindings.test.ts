/**
 * The typed bindings (contracts/generated/settlement.ts) are what the build makes of the Solidity
 * now, and the enums the agents and the wire use agree with the contract's. No chain needed.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BINDINGS_PATH, solidityEnums } from '../contracts/bindings.js';
import { expectedBindings } from '../contracts/build.js';
import { ChainSessionState, MemberRole, MemberStatus } from '../contracts/client.js';
import { MEMBER_STATUS } from '../protocol/index.js';

describe('contract bindings', () => {
  it('contracts/generated/settlement.ts is what the build generates now (run `npm run build:contracts`)', async () => {
    expect(readFileSync(BINDINGS_PATH, 'utf8')).toBe(await expectedBindings());
  });

  it('reads enums from Solidity, comments and all', () => {
    const enums = solidityEnums({
      'src/A.sol': 'enum A { X, // first\n /* the second */ Y,\n Z }\ncontract C { enum B {P} }',
      'test/T.sol': 'enum Ignored { Q }',
    });
    expect(enums).toEqual({ A: { X: 0, Y: 1, Z: 2 }, B: { P: 0 } });
  });

  it('the enums come from the contract, and the wire status has the same values', () => {
    expect(MemberRole).toEqual({ None: 0, EV: 1, HCS: 2 });
    expect(ChainSessionState).toEqual({
      None: 0,
      Reserved: 1,
      Settled: 2,
      Rated: 3,
      Released: 4,
      SettledFree: 5,
      Superseded: 6,
    });
    // The verification message relays the contract's status as is; only the first name differs.
    const wire = Object.entries(MEMBER_STATUS).map(([k, v]) => [k === 'unknown' ? 'none' : k, v]);
    const chain = Object.entries(MemberStatus).map(([k, v]) => [k.toLowerCase(), v]);
    expect(wire).toEqual(chain);
  });
});
