/**
 * The world's own transactions, thousands at a time: each member's registration (its account's
 * first transaction), an EV's first deposit, the operator's verifications. Signed here
 * (contracts/rawtx.ts, the native signer) with nonces known in advance, sent as raw transactions
 * back to back over one kept-alive JSON-RPC client, and confirmed together: one poll for the
 * lot, then one log query per kind of call, instead of ethers' send, gas estimate and 100 ms
 * receipt poll for every one (a world of 6,000 members registered ~19 transactions a second that
 * way, and 200 polling at once swamped anvil). Only for the sim's world: the agents send their own
 * transactions their own way.
 */
import { getAddress, type Interface } from 'ethers';
import type { RpcPort } from '../contracts/batchsender.js';
import { signEip1559 } from '../contracts/rawtx.js';

/** One contract call to sign and send. */
export interface WorldCall {
  /** The sender's key (0x hex) and address. */
  from: { address: string; privateKey: string };
  nonce: bigint;
  data: string;
  value?: bigint;
  /** The member whose event confirms the call (topic 1 of `event`). */
  member: string;
}

/** Requests in flight at once: enough to keep anvil busy, few enough not to queue at its socket. */
const IN_FLIGHT = 16;
/** How long the lot may go without a transaction mined before it is given up. */
const STALL_MS = 60_000;

/** The least fee cap a world transaction gets (100 gwei): see sendAndConfirm. */
const MIN_FEE_CAP = 100_000_000_000n;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `work` over `items`, `limit` at a time, in order of start. */
export async function eachLimited<T>(items: T[], limit: number, work: (item: T, i: number) => Promise<void>) {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i]!, i);
    }
  });
  await Promise.all(lanes);
}

export interface SendOptions {
  rpc: RpcPort;
  chainId: bigint;
  /** The contract called. */
  to: string;
  iface: Interface;
  /** The event each call emits for its member (its first indexed argument), e.g. MemberRegistered. */
  event: string;
  /** Mine the lot in full blocks rather than a block a transaction (a node the caller owns). */
  packed?: PackedBlocks;
}

/** Runs work with the node out of automine, mining full blocks while transactions wait. */
export interface PackedBlocks {
  run<T>(work: () => Promise<T>): Promise<T>;
}

/**
 * anvil mines a block per transaction by default (automine): thousands of transactions then cost
 * thousands of blocks, each with its state root, and went ~200–500 a second. With automine off
 * while a lot goes in, and a block mined whenever transactions wait, each block holds as many
 * as its gas limit takes: ~1,600–1,900 a second. Automine is back on before `run` returns, so
 * the agents' and the tests' transactions are mined at once as before.
 */
export function packedBlocks(rpc: RpcPort): PackedBlocks {
  return {
    async run(work) {
      await rpc.send('evm_setAutomine', [false]);
      let done = false;
      const miner = (async () => {
        while (!done) {
          const status = (await rpc.send('txpool_status', [])) as { pending?: string };
          if (Number(status?.pending ?? 0) > 0) await rpc.send('evm_mine', []);
          else await sleep(20);
        }
      })();
      try {
        return await work();
      } finally {
        done = true;
        await miner.catch(() => {});
        await rpc.send('evm_setAutomine', [true]);
        // Anything still waiting (a lot given up) is mined now, as automine would have.
        const status = (await rpc.send('txpool_status', [])) as { pending?: string };
        if (Number(status?.pending ?? 0) > 0) await rpc.send('evm_mine', []);
      }
    },
  };
}

/**
 * Signs and sends `calls` (all of one kind: the first one's gas estimate, with a margin, is every
 * one's limit), then waits until each member's event is on chain. Throws, naming the members and
 * the node's reason, when a call is refused or reverts.
 */
export async function sendAndConfirm(calls: WorldCall[], o: SendOptions): Promise<void> {
  if (calls.length === 0) return;
  if (o.packed) {
    const { packed, ...rest } = o;
    return packed.run(() => sendAndConfirm(calls, rest));
  }
  const first = calls[0]!;
  const gas = BigInt(
    (await o.rpc.send('eth_estimateGas', [
      {
        from: first.from.address,
        to: o.to,
        data: first.data,
        ...(first.value ? { value: `0x${first.value.toString(16)}` } : {}),
      },
    ])) as string,
  );
  const gasLimit = (gas * 3n) / 2n;
  const [block, tipHex] = await Promise.all([
    o.rpc.send('eth_getBlockByNumber', ['latest', false]) as Promise<{ baseFeePerGas?: string }>,
    (o.rpc.send('eth_maxPriorityFeePerGas', []) as Promise<string>).catch(() => '0x3b9aca00'),
  ]);
  const tip = BigInt(tipHex);
  // Room for the base fee to rise: full blocks raise it by up to 12.5 % each, and a lot of
  // thousands fills dozens (what is paid is the base fee of the block, not this cap).
  const maxFee = 4n * BigInt(block?.baseFeePerGas ?? '0x0') + MIN_FEE_CAP + tip;
  // The lot's events can only be in blocks after this one (a member's earlier events are not its).
  const fromBlock = Number(await o.rpc.send('eth_blockNumber', [])) + 1;
  const hashes = new Map<string, string>();
  await eachLimited(calls, IN_FLIGHT, async (c) => {
    const signed = signEip1559(
      {
        chainId: o.chainId,
        nonce: c.nonce,
        maxPriorityFeePerGas: tip,
        maxFeePerGas: maxFee,
        gasLimit,
        to: o.to,
        value: c.value ?? 0n,
        data: Buffer.from(c.data.slice(2), 'hex'),
      },
      Buffer.from(c.from.privateKey.slice(2), 'hex'),
    );
    try {
      await o.rpc.send('eth_sendRawTransaction', [signed.raw]);
    } catch (err) {
      throw new Error(
        `${o.event} of ${c.member}: the node refused the transaction: ${(err as Error).message}`,
      );
    }
    hashes.set(c.member.toLowerCase(), signed.hash);
  });
  await confirm(calls, hashes, fromBlock, o);
}

/** Waits until every call's event shows, reading only the blocks not read yet. */
async function confirm(
  calls: WorldCall[],
  hashes: Map<string, string>,
  fromBlock: number,
  o: SendOptions,
): Promise<void> {
  const topic = o.iface.getEvent(o.event)?.topicHash;
  if (!topic) throw new Error(`the contract's ABI has no event ${o.event}`);
  const missing = new Set(calls.map((c) => c.member.toLowerCase()));
  let from = fromBlock;
  let lastProgress = Date.now();
  const receipt = async (m: string) =>
    (await o.rpc.send('eth_getTransactionReceipt', [hashes.get(m)])) as { status?: string } | null;
  const failure = (what: string, examples: string[]) =>
    new Error(
      `${missing.size} of ${calls.length} ${o.event} events missing (${what}), e.g. ${examples.join('; ')}`,
    );
  for (;;) {
    let progress = false;
    const head = Number(await o.rpc.send('eth_blockNumber', []));
    if (head >= from) {
      const logs = (await o.rpc.send('eth_getLogs', [
        {
          address: o.to,
          topics: [topic],
          fromBlock: `0x${from.toString(16)}`,
          toBlock: `0x${head.toString(16)}`,
        },
      ])) as { topics: string[] }[];
      for (const l of logs) if (missing.delete(`0x${l.topics[1]!.slice(26)}`.toLowerCase())) progress = true;
      from = head + 1;
    }
    if (missing.size === 0) return;
    if (progress) lastProgress = Date.now();
    else {
      // Nothing new: a call mined without its event reverted; say so now rather than at the stall.
      const reverted: string[] = [];
      for (const m of [...missing].slice(0, 3)) {
        const r = await receipt(m);
        if (r && Number(r.status) !== 1) reverted.push(`${getAddress(m)}: reverted (${hashes.get(m)})`);
      }
      if (reverted.length) throw failure('reverted', reverted);
      if (Date.now() - lastProgress > STALL_MS)
        throw failure(
          `nothing mined for ${STALL_MS / 1000} s`,
          [...missing].slice(0, 3).map((m) => `${getAddress(m)}: not mined`),
        );
    }
    await sleep(100);
  }
}
