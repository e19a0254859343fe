/**
 * The sim's world build at scale (sim/world.ts, sim/enrol.ts, sim/chain.ts): anvil's accounts
 * derived here as anvil derives them; the members' registrations, the EVs' deposits and the
 * operator's verifications signed here and sent raw, in packed blocks; and the chain left as the
 * agents and the tests expect it (automine on, the operator's nonces counted from the node).
 */
import { HDNodeWallet, Interface, keccak256, Mnemonic, parseEther, toUtf8Bytes } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemberRole } from '../contracts/client.js';
import { jsonRpc } from '../contracts/rpc.js';
import { ANVIL_MNEMONIC, anvilAccounts } from '../sim/chain.js';
import { packedBlocks, sendAndConfirm } from '../sim/enrol.js';
import type { World } from '../sim/world.js';
import { PRICE, smallWorld } from './helpers/world.js';

describe('anvilAccounts', () => {
  it("derives the mnemonic's accounts as ethers' BIP-32 does, past the first byte of the index", () => {
    const ours = anvilAccounts(300);
    const parent = HDNodeWallet.fromMnemonic(Mnemonic.fromPhrase(ANVIL_MNEMONIC), "m/44'/60'/0'/0");
    for (const i of [0, 1, 2, 9, 255, 256, 299]) {
      const theirs = parent.deriveChild(i);
      expect(ours[i]).toEqual({ address: theirs.address, privateKey: theirs.privateKey });
    }
    // anvil's well-known first account.
    expect(ours[0]!.address).toBe('0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266');
  });
});

describe('a world whose members are enrolled raw', () => {
  let world: World;
  const deposit = parseEther('3');

  beforeAll(async () => {
    world = await smallWorld({
      edge: true,
      depositEther: '3',
      depositsByWorld: true,
      stations: ['HCS1', 'HCS2'].map((name, i) => ({
        name,
        latitude: 52.52 + i / 100,
        longitude: 13.405,
        priceWeiPerKWh: PRICE + BigInt(i),
        powerKw: 11,
        profile: 'sdm630',
      })),
      evs: ['EV1', 'EV2', 'EV3'].map((name) => ({
        name,
        latitude: 52.52,
        longitude: 13.41,
        profile: 'sdm120',
      })),
    });
  }, 120_000);
  afterAll(async () => world?.close());

  it('anvil funds the same accounts', async () => {
    const rpc = jsonRpc(world.rpcUrl);
    const theirs = (await rpc.send('eth_accounts', [])) as string[];
    expect(theirs.map((a) => a.toLowerCase())).toEqual(
      anvilAccounts(theirs.length).map((a) => a.address.toLowerCase()),
    );
  });

  it('registers and verifies every member in its role, with the station profile given', async () => {
    const members = world.devices.filter((d) => d.role !== 'edge');
    expect(members.map((d) => d.name)).toEqual(['HCS1', 'HCS2', 'EV1', 'EV2', 'EV3']);
    for (const d of members)
      expect(
        await world.operator.isVerified(d.address, d.role === 'ev' ? MemberRole.EV : MemberRole.HCS),
      ).toBe(true);
    const hcs2 = world.devices.find((d) => d.name === 'HCS2')!;
    expect(await world.operator.hcsProfile(hcs2.address)).toMatchObject({
      latMicroDeg: 52_530_000,
      lonMicroDeg: 13_405_000,
      powerW: 11_000,
      priceWeiPerKWh: PRICE + 1n,
    });
    expect(await world.operator.memberCounts()).toEqual({ evs: 3, hcss: 2 });
  });

  it("makes each EV's deposit from the EV's own account", async () => {
    const rpc = jsonRpc(world.rpcUrl);
    for (const d of world.devices.filter((x) => x.role === 'ev')) {
      expect((await world.operator.depositOf(d.address)).balance).toBe(deposit);
      // Its registration and its deposit: the agent's first own transaction takes nonce 2.
      expect(BigInt((await rpc.send('eth_getTransactionCount', [d.address, 'latest'])) as string)).toBe(2n);
    }
  });

  it("leaves automine on and the operator's nonces counted from the node", async () => {
    const ev = world.devices.find((d) => d.name === 'EV3')!;
    // Mined at once (automine), with the operator's next nonce (past the raw verifications).
    const receipt = await world.operator.suspend(ev.address);
    expect(receipt.status).toBe(1);
    expect(await world.operator.isVerified(ev.address, MemberRole.EV)).toBe(false);
    await world.operator.verify(ev.address);
  });

  it('says which member and that it reverted when a call of the lot fails', async () => {
    const rpc = jsonRpc(world.rpcUrl);
    const iface = new Interface(world.deployment.abi);
    const accounts = anvilAccounts(12);
    // HCS1 is account 2: registering again reverts (AlreadyRegistered); a stranger's goes through.
    const register = (i: number, nonce: bigint) => ({
      from: accounts[i]!,
      nonce,
      data: iface.encodeFunctionData('registerEV', [keccak256(toUtf8Bytes(`again ${i}`))]),
      member: accounts[i]!.address,
    });
    const stranger = accounts[11]!;
    await rpc.send('anvil_setBalance', [stranger.address, '0x56bc75e2d63100000']);
    const lot = [register(11, 0n), register(2, 1n)];
    await expect(
      sendAndConfirm(lot, {
        rpc,
        chainId: BigInt(world.deployment.chainId),
        to: world.deployment.address,
        iface,
        event: 'MemberRegistered',
        packed: packedBlocks(rpc),
      }),
    ).rejects.toThrow(
      new RegExp(`1 of 2 MemberRegistered events missing \\(reverted\\), e.g. ${accounts[2]!.address}`),
    );
    // The stranger's went through; automine is on again afterwards.
    expect((await world.operator.authInfo(stranger.address)).role).toBe(Number(MemberRole.EV));
    expect((await world.operator.suspend(stranger.address)).status).toBe(1);
  });
});
