/**
 * The edge's raw transactions (contracts/rawtx.ts) and their sender (contracts/batchsender.ts):
 * the same bytes ethers signs; batches reserved and settled through them on a real anvil; and the
 * nonce kept right when a send is refused, when a send never reached the node, after a restart,
 * and when another transaction took a batch's nonce.
 */
import { Interface, Transaction, Wallet } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchSender, TxRefused } from '../contracts/batchsender.js';
import { byStation, packSettlements } from '../contracts/client.js';
import { bytesCalldata, bytesFromEventData, rlpEncode, signEip1559 } from '../contracts/rawtx.js';
import { SETTLEMENT_ABI } from '../contracts/generated/settlement.js';
import { jsonRpc } from '../contracts/rpc.js';
import { isNetworkError } from '../agent/core/chain.js';
import { batchEntry, type SettlementFixture, setupSettlement } from './helpers/anvilSettlement.js';

const KEY = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d';

describe('raw transactions, no node', () => {
  it('RLP-encodes as the yellow paper says', () => {
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
    expect(hex(rlpEncode(Buffer.from('dog')))).toBe('83646f67');
    expect(hex(rlpEncode([Buffer.from('cat'), Buffer.from('dog')]))).toBe('c88363617483646f67');
    expect(hex(rlpEncode(new Uint8Array(0)))).toBe('80');
    expect(hex(rlpEncode([]))).toBe('c0');
    expect(hex(rlpEncode(Uint8Array.of(0x0f)))).toBe('0f');
    expect(hex(rlpEncode(Uint8Array.of(0x80)))).toBe('8180');
    const long = Buffer.alloc(1024, 7);
    expect(hex(rlpEncode(long)).slice(0, 6)).toBe('b90400');
  });

  it('signs the bytes ethers signs, with the same hash', async () => {
    const wallet = new Wallet(KEY);
    for (const size of [0, 1, 55, 56, 40_000]) {
      const data = Uint8Array.from({ length: size }, (_, i) => (i * 31 + 7) & 0xff);
      const fields = {
        chainId: 31337n,
        nonce: BigInt(size),
        maxPriorityFeePerGas: 1_000_000_000n,
        maxFeePerGas: 2_875_000_000n,
        gasLimit: 5_000_000n,
        to: '0x5FbDB2315678afecb367f032d93F642f64180aa3',
        value: 0n,
        data,
      };
      const mine = signEip1559(fields, Buffer.from(KEY.slice(2), 'hex'));
      const theirs = await wallet.signTransaction({
        type: 2,
        ...fields,
        nonce: Number(fields.nonce),
        data: `0x${Buffer.from(data).toString('hex')}`,
        accessList: [],
      });
      expect(mine.raw).toBe(theirs);
      expect(mine.hash).toBe(Transaction.from(theirs).hash);
      expect(Transaction.from(mine.raw).from?.toLowerCase()).toBe(wallet.address.toLowerCase());
    }
  });

  it("builds a batch's calldata as the ABI coder does, and reads a bytes event back", () => {
    const iface = new Interface(SETTLEMENT_ABI);
    for (const size of [0, 1, 32, 33, 1000]) {
      const blob = Uint8Array.from({ length: size }, (_, i) => i & 0xff);
      const selector = iface.getFunction('settleBatch')!.selector;
      expect(`0x${Buffer.from(bytesCalldata(selector, blob)).toString('hex')}`).toBe(
        iface.encodeFunctionData('settleBatch', [blob]),
      );
      const event = iface.getEvent('SessionsSettled')!;
      const { data } = iface.encodeEventLog(event, [blob]);
      expect(Buffer.from(bytesFromEventData(data))).toEqual(Buffer.from(blob));
    }
  });
});

describe('raw batches on anvil', () => {
  let fx: SettlementFixture;
  /** A relayer (as the edge) with its own raw sender. */
  let relayerKey: string;
  let relayer: string;
  let open: (journaled?: bigint[]) => Promise<BatchSender>;

  beforeAll(async () => {
    fx = await setupSettlement({ evs: 3, hcss: 3, strangers: 1 });
    const stranger = fx.strangers[0]!;
    relayerKey = stranger.privateKey;
    relayer = stranger.address;
    open = (journaled = []) =>
      BatchSender.open(fx.provider, relayerKey, relayer, BigInt(fx.anvil.chainId), journaled);
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });

  const pending = (): Promise<bigint> =>
    fx.provider.send('eth_getTransactionCount', [relayer, 'pending']).then(BigInt);

  async function mined(sender: BatchSender, hash: string) {
    for (let i = 0; i < 200; i++) {
      const r = await sender.receipt(hash);
      if (r) return r;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`${hash} not mined`);
  }

  it('reserves and settles a batch sent raw; the results read from the raw receipt', async () => {
    const client = fx.operator.client;
    const sender = await open();
    const entries = await Promise.all(fx.hcss.map((h, i) => batchEntry(fx, fx.evs[i]!, h)));
    const reserveTx = await sender.sign(client.address, client.reserveBatchCalldata(entries), 2_000_000n);
    await sender.broadcast(reserveTx);
    // The settlement goes right behind it, before the reservation's receipt: two in flight.
    const { data, order } = client.settleBatchCalldata(entries);
    const settleTx = await sender.sign(client.address, data, 2_000_000n);
    expect(settleTx.nonce).toBe(reserveTx.nonce + 1n);
    await sender.broadcast(settleTx);
    const reserved = await mined(sender, reserveTx.hash);
    expect(reserved.status).toBe(1);
    expect(client.resultsOfLogs(reserved.logs).map((r) => r.reason)).toEqual(['', '', '']);
    const settled = await mined(sender, settleTx.hash);
    expect(settled.status).toBe(1);
    const results = client.resultsOfLogs(settled.logs, order);
    expect(results.map((r) => r.txid)).toEqual(entries.map((e) => e.txid));
    expect(results.every((r) => r.reason === '' && r.billedWh === 21_000n)).toBe(true);
    // The same calldata the ethers path sent.
    expect(Buffer.from(data.subarray(4 + 64, 4 + 64 + packSettlements(byStation(entries)).length))).toEqual(
      Buffer.from(packSettlements(byStation(entries))),
    );
  });

  it('a bad signature in a raw batch is skipped, not the batch reverted', async () => {
    const client = fx.operator.client;
    const sender = await open();
    const entries = await Promise.all(fx.hcss.map((h, i) => batchEntry(fx, fx.evs[i]!, h)));
    const forged = entries[1]!;
    const consent = Uint8Array.from(forged.evConsent);
    consent[consent.length - 2] = (consent[consent.length - 2] ?? 0) ^ 1; // s changed: another signer or none
    forged.evConsent = consent;
    const tx = await sender.sign(client.address, client.reserveBatchCalldata(entries), 2_000_000n);
    await sender.broadcast(tx);
    const receipt = await mined(sender, tx.hash);
    expect(receipt.status).toBe(1);
    const reasons = client.resultsOfLogs(receipt.logs).map((r) => r.reason);
    expect(reasons[0]).toBe('');
    expect(reasons[1]).not.toBe('');
    expect(reasons[2]).toBe('');
  });

  it('a send the node refused gives its nonce to the next transaction', async () => {
    const sender = await open();
    const before = sender.nextNonce;
    // Below the intrinsic gas: refused outright, never in the pool.
    const bad = await sender.sign(relayer, new Uint8Array(0), 1000n);
    const err = await sender.broadcast(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TxRefused);
    expect((err as TxRefused).nonceUsed).toBe(false);
    await sender.refused(bad, false);
    expect(sender.nextNonce).toBe(before);
    const good = await sender.sign(relayer, new Uint8Array(0), 21_000n);
    expect(good.nonce).toBe(before);
    await sender.broadcast(good);
    expect((await mined(sender, good.hash)).status).toBe(1);
  });

  it('a batch that never reached the node holds the later ones until its same bytes are sent again', async () => {
    const sender = await open();
    const lost = await sender.sign(relayer, Uint8Array.of(1), 30_000n); // "the network failed"
    const next = await sender.sign(relayer, Uint8Array.of(2), 30_000n);
    await sender.broadcast(next);
    // Its nonce is above the gap: it waits in the pool, not mined.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await sender.receipt(next.hash)).toBeUndefined();
    await sender.broadcast(lost);
    expect((await mined(sender, lost.hash)).status).toBe(1);
    expect((await mined(sender, next.hash)).status).toBe(1);
    // Sent once more after it was mined: the node says its nonce is used; its receipt says by it.
    const again = await sender.broadcast(lost).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(TxRefused);
    expect((again as TxRefused).nonceUsed).toBe(true);
    expect((await sender.receipt(lost.hash))?.transactionHash).toBe(lost.hash);
  });

  it('after a restart, the nonce is past the journaled batch, which is sent again as the same bytes', async () => {
    const first = await open();
    const journaled = await first.sign(relayer, Uint8Array.of(3), 30_000n); // journaled, then the crash
    expect(await pending()).toBe(journaled.nonce);
    // The node never saw it: its pending count alone would give the same nonce to a new batch.
    const restarted = await open([journaled.nonce]);
    expect(restarted.nextNonce).toBe(journaled.nonce + 1n);
    const after = await restarted.sign(relayer, Uint8Array.of(4), 30_000n);
    await restarted.broadcast(after);
    await restarted.broadcast(journaled);
    const receipt = await mined(restarted, journaled.hash);
    expect(receipt.transactionHash).toBe(journaled.hash);
    expect((await mined(restarted, after.hash)).status).toBe(1);
  });

  it("over the plain JSON-RPC client (the edge's): sent and mined, a refusal named, a dead node not a refusal", async () => {
    const rpc = jsonRpc(fx.anvil.rpcUrl);
    const sender = await BatchSender.open(rpc, relayerKey, relayer, BigInt(fx.anvil.chainId));
    const tx = await sender.sign(relayer, Uint8Array.of(9), 30_000n);
    await sender.broadcast(tx);
    expect((await mined(sender, tx.hash)).status).toBe(1);
    const low = await sender.sign(relayer, new Uint8Array(0), 1000n);
    const refused = await sender.broadcast(low).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TxRefused);
    await sender.refused(low, false);
    // A node that is not there for the send: the network's error (the batch stays journaled and is
    // sent again), not a refusal.
    const nowhere = jsonRpc('http://127.0.0.1:1');
    const flaky = {
      send: (method: string, params: unknown[]) =>
        (method === 'eth_sendRawTransaction' ? nowhere : rpc).send(method, params),
    };
    const dead = await BatchSender.open(flaky, relayerKey, relayer, BigInt(fx.anvil.chainId));
    const lost = await dead.sign(relayer, Uint8Array.of(10), 30_000n);
    const away = await dead.broadcast(lost).catch((e: unknown) => e);
    expect(away).not.toBeInstanceOf(TxRefused);
    expect(isNetworkError(away)).toBe(true);
    await sender.broadcast(lost);
    expect((await mined(sender, lost.hash)).status).toBe(1);
  });

  it('a batch whose nonce another transaction took is refused as used', async () => {
    const sender = await open();
    const orphan = await sender.sign(relayer, Uint8Array.of(5), 30_000n);
    // Another transaction of the same account takes that nonce (another tool, the same key).
    const other = await new Wallet(relayerKey, fx.provider).sendTransaction({
      to: relayer,
      nonce: Number(orphan.nonce),
      gasLimit: 30_000n,
    });
    await other.wait();
    const err = await sender.broadcast(orphan).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TxRefused);
    expect((err as TxRefused).nonceUsed).toBe(true);
    expect(await sender.receipt(orphan.hash)).toBeUndefined();
    await sender.refused(orphan, true);
    expect(sender.nextNonce).toBe(await pending());
  });
});
