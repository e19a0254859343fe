/**
 * The protocol's test vectors (protocol/vectors.json) against the contract: Solidity decodes the
 * same bytes, computes the same digests and txid, and recovers the same signers as TypeScript.
 * The vectors are signed for anvil's chain id and the address of the first contract deployed by
 * anvil's first account, which is exactly where the fixture deploys.
 */
import { readFileSync } from 'node:fs';
import { ContractFactory, TypedDataEncoder, parseEther, Wallet } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadArtifact } from '../contracts/build.js';
import { receiptResults, type SettlementClient, type SettlementTerms } from '../contracts/client.js';
import { EIP712_TYPES, signEnvelope } from '../protocol/envelope.js';
import {
  commitment,
  reportPayload,
  type SettlementFixture,
  setupSettlement,
} from './helpers/anvilSettlement.js';

interface Vector {
  name: string;
  fields: Record<string, unknown>;
  hex: string;
  envelope: {
    privateKey: string;
    domain: { chainId: string; verifyingContract: string };
    hex: string;
    signer: string;
  };
}
interface VectorFile {
  txid: string;
  terms: Record<keyof SettlementTerms, string>;
  vectors: Vector[];
}

const file: VectorFile = JSON.parse(
  readFileSync(new URL('../protocol/vectors.json', import.meta.url), 'utf8'),
);
const reports = file.vectors.filter((v) => v.name === 'chargeReceived' || v.name === 'chargeProvided');
const terms: SettlementTerms = {
  ev: file.terms.ev,
  hcs: file.terms.hcs,
  seq: BigInt(file.terms.seq),
  priceWeiPerKWh: BigInt(file.terms.priceWeiPerKWh),
  maxEnergyWh: BigInt(file.terms.maxEnergyWh),
  settleBy: BigInt(file.terms.settleBy),
};
const domainOf = (v: Vector) => ({
  name: 'P2PEV',
  version: '1',
  chainId: BigInt(v.envelope.domain.chainId),
  verifyingContract: v.envelope.domain.verifyingContract,
});

let fx: SettlementFixture;
let client: SettlementClient;

beforeAll(async () => {
  fx = await setupSettlement({ evs: 0, hcss: 0, strangers: 1 });
  client = fx.operator.client;
});
afterAll(async () => {
  await fx?.stop();
});

describe('protocol vectors on chain', () => {
  it('deploys where the vectors were signed, and computes the vectors txid from their terms', async () => {
    expect(file.vectors.length).toBeGreaterThanOrEqual(15);
    expect(reports).toHaveLength(2);
    for (const v of file.vectors) {
      expect(BigInt(v.envelope.domain.chainId)).toBe(fx.anvil.chainId);
      expect(v.envelope.domain.verifyingContract.toLowerCase()).toBe(fx.deployment.address.toLowerCase());
    }
    expect(await client.txIdOf(terms)).toBe(file.txid);
  });

  it('decodes the charge reports exactly as TypeScript does, from the payload or the envelope', async () => {
    const decode = client.contract.getFunction('decodeReport');
    for (const v of reports) {
      for (const bytes of [v.hex, v.envelope.hex]) {
        const [messageType, memberType, ev, hcs, txid, energyWh] = await decode(bytes);
        expect(Number(messageType)).toBe(0x9);
        expect(Number(memberType)).toBe(v.fields.memberType);
        expect(ev.toLowerCase()).toBe(v.fields.ev);
        expect(hcs.toLowerCase()).toBe(v.fields.hcs);
        expect(txid).toBe(v.fields.txid);
        expect(energyWh).toBe(BigInt(v.fields.energyWh as string));
      }
    }
  });

  it('computes the same EIP-712 digest as ethers and recovers every vector signer', async () => {
    for (const v of file.vectors) {
      const expected = TypedDataEncoder.hash(domainOf(v), EIP712_TYPES, { payload: v.hex });
      expect(await client.contract.getFunction('digest')(v.hex), v.name).toBe(expected);
      const signer = await client.contract.getFunction('recoverReportSigner')(v.envelope.hex);
      expect(signer.toLowerCase(), v.name).toBe(v.envelope.signer);
    }
  });

  it('settles the vector session from the vector envelopes, byte for byte', async () => {
    const [evVector, hcsVector] = [
      reports.find((v) => v.name === 'chargeReceived')!,
      reports.find((v) => v.name === 'chargeProvided')!,
    ];
    const ev = new Wallet(evVector.envelope.privateKey, fx.provider);
    const hcs = new Wallet(hcsVector.envelope.privateKey, fx.provider);
    for (const w of [ev, hcs]) await fx.provider.send('anvil_setBalance', [w.address, '0x8ac7230489e80000']);
    const asEv = client.connect(ev);
    const asHcs = client.connect(hcs);
    await asEv.registerEv(commitment('vector-ev'));
    await asHcs.registerHcs({
      identityCommitment: commitment('vector-hcs'),
      latMicroDeg: 52_520_008,
      lonMicroDeg: 13_404_954,
      priceWeiPerKWh: terms.priceWeiPerKWh,
      powerW: 11_000,
      profileHash: commitment('vector-profile'),
    });
    await client.verify(ev.address);
    await client.verify(hcs.address);
    await asEv.deposit(parseEther('1'));
    // The vector terms end their window at a fixed time: reserve a few hours before it, with
    // the vector EV's consent (its first receipt, 0 Wh).
    await fx.provider.send('evm_setNextBlockTimestamp', [Number(terms.settleBy) - 20_000]);
    const consent = signEnvelope(
      reportPayload('ev', terms, file.txid, 0n, 0),
      evVector.envelope.privateKey,
      fx.domain,
    );
    await client.reserve(terms, consent);
    const receipt = await client.settle(terms, evVector.envelope.hex, hcsVector.envelope.hex);
    const [settled] = receiptResults(client.contract.interface, receipt);
    expect(settled?.txid).toBe(file.txid);
    expect(settled?.billedWh).toBe(21_000n); // the station's meter: 20,950 EV, 21,000 HCS, within 50 Wh
    expect(settled?.amountWei).toBe((21_000n * terms.priceWeiPerKWh) / 1000n);
  });

  it('binds signatures to the deployment: another contract address recovers someone else', async () => {
    const artifact = await loadArtifact('Settlement');
    const factory = new ContractFactory(artifact.abi, artifact.bytecode, fx.operator.wallet);
    const other = await factory.deploy(fx.operator.address, fx.operator.address, 0n, 86_400n, 50n, 200n);
    await other.waitForDeployment();
    const otherAddress = await other.getAddress();
    expect(otherAddress).not.toBe(fx.deployment.address);
    const otherDomain = {
      name: 'P2PEV',
      version: '1',
      chainId: fx.anvil.chainId,
      verifyingContract: otherAddress,
    };
    for (const v of reports) {
      expect(await other.getFunction('digest')(v.hex)).toBe(
        TypedDataEncoder.hash(otherDomain, EIP712_TYPES, { payload: v.hex }),
      );
      const signer: string = await other.getFunction('recoverReportSigner')(v.envelope.hex);
      expect(signer.toLowerCase()).not.toBe(v.envelope.signer);
    }
    // And the vector txid is not a txid of the other deployment.
    expect(await other.getFunction('txIdOf')(terms)).not.toBe(file.txid);
  });
});
