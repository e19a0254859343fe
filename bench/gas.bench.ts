/**
 * Gas of the settlement contract on a real anvil node (`npm run bench:gas`). A figure, not a
 * timed test: gas is deterministic for given storage states, so each figure names its state.
 *
 * Everything a session costs on chain is counted: its reservation (cap × price held against the
 * EV's deposit before the charger switches on) and its settlement. "All-in" = both.
 *
 * - single, steady: the station's ring slot for the session already held an earlier, closed
 *   session (after its first 16 sessions every slot does); the EV's and station's slots exist.
 * - batches: N sessions, N distinct EVs (each EV slot cold, the worst case for a relayer), spread
 *   over 10 HCSs; gas per session = receipt gas / N, so the transaction's 21,000 base is shared.
 * - calldata: bytes of both transactions' input per session, and EIP-7623's floor for them
 *   (10 gas per token, a zero byte one token, any other four; a transaction pays at least
 *   21,000 + the floor): the floor binds only if it exceeds the gas used.
 *
 * The last line printed is one JSON object with every figure.
 */
import { getBytes, parseEther, type TransactionReceipt } from 'ethers';
import type { SettlementTerms } from '../contracts/client.js';
import {
  commitment,
  batchEntry,
  type Member,
  setupSettlement,
  warmRings,
} from '../test/helpers/anvilSettlement.js';

const BLOCK_GAS = 30_000_000;
const BATCH_SIZES = [10, 50, 100] as const;
const HCS_COUNT = 10;

const fx = await setupSettlement({ evs: 100, hcss: HCS_COUNT, strangers: 2, depositWei: parseEther('10') });
const relayer = fx.strangers[1]!;
const gas = (r: TransactionReceipt) => Number(r.gasUsed);

/** Input bytes of a mined transaction and its EIP-7623 floor (21,000 + 10 × tokens). */
async function calldataOf(
  r: TransactionReceipt,
): Promise<{ bytes: number; floor: number; standard: number }> {
  const tx = await fx.provider.getTransaction(r.hash);
  const data = getBytes(tx!.data);
  const zeros = data.filter((b) => b === 0).length;
  const tokens = zeros + 4 * (data.length - zeros);
  return {
    bytes: data.length,
    floor: 21_000 + 10 * tokens,
    standard: 4 * zeros + 16 * (data.length - zeros),
  };
}

try {
  // Registration, verification and a first deposit of a new member (the fixture's members
  // went through the same calls; measure a fresh pair).
  const [newEv, newHcs] = fx.strangers as [Member, Member];
  const gasRegisterEv = gas(await newEv.client.registerEv(commitment('bench-ev')));
  const gasVerify = gas(await fx.operator.client.verify(newEv.address));
  const gasDepositFirst = gas(await newEv.client.deposit(parseEther('1')));
  const gasDeposit = gas(await newEv.client.deposit(parseEther('1')));
  const gasRegisterHcs = gas(
    await newHcs.client.registerHcs({
      identityCommitment: commitment('bench-hcs'),
      latMicroDeg: 48_137_154,
      lonMicroDeg: 11_576_124,
      priceWeiPerKWh: 300_000_000_000_000n,
      powerW: 11_000,
      profileHash: commitment('bench-profile'),
    }),
  );
  const gasSetPrice = gas(await newHcs.client.setPrice(310_000_000_000_000n));

  const entryOf = (e: Member, h: Member) => batchEntry(fx, e, h);
  // Warm every ring slot of every station once (RING sessions each), as in steady operation.
  await warmRings(fx, relayer);

  // One session on its own, steady: reservation, then settlement.
  const ev = fx.evs[0]!;
  const hcs = fx.hcss[0]!;
  const one = async (e: Member, h: Member) => {
    const s = await entryOf(e, h);
    const reserve = await relayer.client.reserve(s.terms, s.evConsent);
    const settle = await relayer.client.settle(s.terms, s.evReport, s.hcsReport);
    return { ...s, reserve, settle };
  };
  const steady = await one(ev, hcs);
  const steadyOtherEv = await one(fx.evs[1]!, hcs);

  // Ratings: the first one of an HCS creates its tally slot; later ones update it.
  const rate = (s: { terms: SettlementTerms }, e: Member) => e.client.rate(s.terms, 5, 'great');
  const gasRatingFirst = gas(await rate(steady, ev));
  const gasRating = gas(await rate(steadyOtherEv, fx.evs[1]!));

  const perBatch: Record<
    number,
    { reserve: number; settle: number; bytes: number; floor: number; standard: number }
  > = {};
  for (const size of BATCH_SIZES) {
    const entries = [];
    for (let i = 0; i < size; i++) entries.push(await entryOf(fx.evs[i]!, fx.hcss[i % HCS_COUNT]!));
    const reserved = await relayer.client.reserveBatch(entries);
    if (reserved.settled !== size)
      throw new Error(`reservation batch of ${size}: ${JSON.stringify(reserved.skipped)}`);
    const settled = await relayer.client.settleBatch(entries);
    if (settled.settled !== size) throw new Error(`batch of ${size}: ${JSON.stringify(settled.skipped)}`);
    const a = await calldataOf(reserved.receipt);
    const b = await calldataOf(settled.receipt);
    perBatch[size] = {
      reserve: gas(reserved.receipt),
      settle: gas(settled.receipt),
      bytes: a.bytes + b.bytes,
      floor: a.floor + b.floor,
      standard: a.standard + b.standard,
    };
  }
  const per = (n: number, v: number) => Math.round(v / n);
  const allIn = (n: number) => per(n, perBatch[n]!.reserve + perBatch[n]!.settle);

  const figures = {
    gasAllInSingle: gas(steady.reserve) + gas(steady.settle),
    gasAllInBatch10: allIn(10),
    gasAllInBatch50: allIn(50),
    gasAllInBatch100: allIn(100),
    calldataBytesPerSession: per(50, perBatch[50]!.bytes),
    calldataGasPerSessionBatch50: per(50, perBatch[50]!.standard),
    eip7623FloorPerSessionBatch50: per(50, perBatch[50]!.floor),
    gasSingle: gas(steady.settle),
    gasSingleOtherEv: gas(steadyOtherEv.settle),
    gasReserveSingle: gas(steady.reserve),
    gasPerSessionBatch10: per(10, perBatch[10]!.settle),
    gasPerSessionBatch50: per(50, perBatch[50]!.settle),
    gasPerSessionBatch100: per(100, perBatch[100]!.settle),
    gasReservePerSessionBatch50: per(50, perBatch[50]!.reserve),
    gasBatch100: perBatch[100]!.settle,
    sessionsPerBlock30M: Math.floor(BLOCK_GAS / allIn(100)),
    sessionsPerBlock30MSingle: Math.floor(BLOCK_GAS / (gas(steady.reserve) + gas(steady.settle))),
    gasRegisterEv,
    gasRegisterHcs,
    gasVerify,
    gasDepositFirst,
    gasDeposit,
    gasSetPrice,
    gasRating,
    gasRatingFirst,
    goals: { allInBatch50: 30_000, allInBatch50Stretch: 20_000 },
  };
  const rows: [string, number | string][] = [
    ['register EV', gasRegisterEv],
    ['register HCS (with profile)', gasRegisterHcs],
    ['verify (operator)', gasVerify],
    ['deposit (first / later)', `${gasDepositFirst} / ${gasDeposit}`],
    ['set price', gasSetPrice],
    [
      'one session, steady: reserve + settle',
      `${figures.gasReserveSingle} + ${figures.gasSingle} = ${figures.gasAllInSingle}`,
    ],
    ['rate (first of HCS / later)', `${gasRatingFirst} / ${gasRating}`],
    ...BATCH_SIZES.map((n): [string, string] => [
      `batch of ${n}, per session: reserve + settle`,
      `${per(n, perBatch[n]!.reserve)} + ${per(n, perBatch[n]!.settle)} = ${allIn(n)}`,
    ]),
    [
      'calldata per session (batch of 50)',
      `${figures.calldataBytesPerSession} bytes, ${figures.calldataGasPerSessionBatch50} gas; EIP-7623 floor ${figures.eip7623FloorPerSessionBatch50} (binds only above the gas used)`,
    ],
    ['sessions per 30M-gas block (batches of 100, all-in)', figures.sessionsPerBlock30M],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`Settlement gas on anvil (${fx.anvil.rpcUrl}, chain ${fx.anvil.chainId})\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
  process.stdout.write(
    `  goals: all-in ≤ 30,000 per session at batch 50 ${figures.gasAllInBatch50 <= 30_000 ? 'met' : 'MISSED'}; ` +
      `stretch ≤ 20,000 ${figures.gasAllInBatch50 <= 20_000 ? 'met' : 'MISSED'}\n`,
  );
  process.stdout.write(`${JSON.stringify(figures)}\n`);
} finally {
  await fx.stop();
}
