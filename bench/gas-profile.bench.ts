/**
 * Where a session's gas goes (`npm run bench:gas:profile`): the batch of 50 of `bench:gas` (50
 * distinct EVs over 10 stations, every ring slot warmed by 16 earlier sessions), reserved and
 * settled on an anvil that records opcode traces (`--steps-tracing`), each transaction's gas
 * split by what it paid for: the 21,000 base, calldata, cold and warm storage reads and writes by
 * their EIP-2929/2200 price, ecrecover (the precompile call), hashing, the event, and the rest of
 * the execution (parsing, checks, stack and memory work).
 *
 * The last line printed is one JSON object: per session, per transaction and category.
 */
import { getBytes, parseEther, type TransactionReceipt } from 'ethers';
import { batchEntry, type Member, setupSettlement, warmRings } from '../test/helpers/anvilSettlement.js';

const N = 50;
const HCS_COUNT = 10;

interface Step {
  op: string;
  gas: number;
  gasCost: number;
  depth: number;
  stack?: string[];
}

const fx = await setupSettlement({
  evs: 100,
  hcss: HCS_COUNT,
  strangers: 2,
  depositWei: parseEther('10'),
  anvil: { extraArgs: ['--steps-tracing'] },
});
const relayer = fx.strangers[1]!;

/** What one transaction paid for, per session. */
async function breakdown(r: TransactionReceipt): Promise<Record<string, number>> {
  const tx = await fx.provider.getTransaction(r.hash);
  const data = getBytes(tx!.data);
  const zeros = data.filter((b) => b === 0).length;
  const trace = (await fx.provider.send('debug_traceTransaction', [
    r.hash,
    { disableStorage: true, disableMemory: true },
  ])) as { structLogs: Step[] };
  const steps = trace.structLogs;
  const sum: Record<string, number> = {
    base: 21_000,
    calldata: 4 * zeros + 16 * (data.length - zeros),
  };
  const add = (k: string, g: number) => {
    sum[k] = (sum[k] ?? 0) + g;
  };
  for (const [i, s] of steps.entries()) {
    if (s.depth !== 1) continue;
    if (s.op === 'STATICCALL' && BigInt(s.stack?.at(-2) ?? 0) === 1n) {
      // The call's gasCost includes the gas it forwards; what it used is the drop to the next step.
      const next = steps.slice(i + 1).find((x) => x.depth === 1);
      add('ecrecover', s.gas - (next?.gas ?? s.gas));
    } else if (s.op === 'SLOAD') add(s.gasCost >= 2100 ? 'sloadCold' : 'sloadWarm', s.gasCost);
    else if (s.op === 'SSTORE')
      add(s.gasCost >= 20_000 ? 'sstoreNew' : s.gasCost >= 2900 ? 'sstoreClean' : 'sstoreDirty', s.gasCost);
    else if (s.op === 'KECCAK256') add('keccak', s.gasCost);
    else if (s.op.startsWith('LOG')) add('event', s.gasCost);
    else add('otherExecution', s.gasCost);
  }
  const counted = Object.values(sum).reduce((a, b) => a + b, 0);
  // Refunds and the tail of the last step: whatever the receipt says beyond the sum.
  add('otherExecution', Number(r.gasUsed) - counted);
  const counts = {
    sloadColdCount: steps.filter((s) => s.depth === 1 && s.op === 'SLOAD' && s.gasCost >= 2100).length,
    sstoreCount: steps.filter((s) => s.depth === 1 && s.op === 'SSTORE').length,
    ecrecoverCount: steps.filter((s) => s.depth === 1 && s.op === 'STATICCALL').length,
    keccakCount: steps.filter((s) => s.depth === 1 && s.op === 'KECCAK256').length,
  };
  const per: Record<string, number> = { total: Math.round(Number(r.gasUsed) / N) };
  for (const [k, v] of Object.entries(sum)) per[k] = Math.round(v / N);
  for (const [k, v] of Object.entries(counts)) per[k] = Math.round((v / N) * 100) / 100;
  per.calldataBytes = Math.round((data.length / N) * 10) / 10;
  return per;
}

try {
  const entryOf = (e: Member, h: Member) => batchEntry(fx, e, h);
  await warmRings(fx, relayer);
  const entries = [];
  for (let i = 0; i < N; i++) entries.push(await entryOf(fx.evs[i]!, fx.hcss[i % HCS_COUNT]!));
  const reserve = await breakdown((await relayer.client.reserveBatch(entries)).receipt);
  const settle = await breakdown((await relayer.client.settleBatch(entries)).receipt);
  const keys = [...new Set([...Object.keys(reserve), ...Object.keys(settle)])];
  process.stdout.write(`Gas per session, batch of ${N} (${HCS_COUNT} stations, distinct EVs, warm rings)\n`);
  process.stdout.write(
    `  ${'category'.padEnd(16)} ${'reserve'.padStart(8)} ${'settle'.padStart(8)} ${'all-in'.padStart(8)}\n`,
  );
  for (const k of keys) {
    const a = reserve[k] ?? 0;
    const b = settle[k] ?? 0;
    process.stdout.write(
      `  ${k.padEnd(16)} ${String(a).padStart(8)} ${String(b).padStart(8)} ${String(Math.round((a + b) * 100) / 100).padStart(8)}\n`,
    );
  }
  process.stdout.write(`${JSON.stringify({ batch: N, reserve, settle })}\n`);
} finally {
  await fx.stop();
}
