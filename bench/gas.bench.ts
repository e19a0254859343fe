/**
 * Gas of the settlement contract on a real anvil node (`npm run bench:gas`). A figure, not a
 * timed test: gas is deterministic for given storage states, so each figure names its state.
 *
 * - single, steady: the session's bitmap word already holds an earlier settled session of the
 *   same HCS (127 of 128 sessions are like this); `cold` is the first session of a word
 *   (a zero → non-zero slot write, +17,100 gas, i.e. ~134 gas a session amortised).
 * - batches: N sessions, N distinct EVs (each EV slot cold, the worst case for a relayer), spread
 *   over 10 HCSs whose bitmap words are warm; gas per session = receipt gas / N, so the
 *   transaction's 21,000 base is shared.
 *
 * The last line printed is one JSON object with every figure.
 */
import { type TransactionReceipt, parseEther } from 'ethers';
import type { SettlementTerms } from '../contracts/client.js';
import {
  commitment,
  type Member,
  newTerms,
  sessionReports,
  setupSettlement,
} from '../test/helpers/anvilSettlement.js';

const BLOCK_GAS = 30_000_000;
const BATCH_SIZES = [10, 50, 100] as const;
const HCS_COUNT = 10;

const fx = await setupSettlement({ evs: 100, hcss: HCS_COUNT, strangers: 2, depositWei: parseEther('10') });
const relayer = fx.strangers[1]!;
const gas = (r: TransactionReceipt) => Number(r.gasUsed);

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

  // One session on its own: first of its bitmap word (cold), then the next one (steady).
  const ev = fx.evs[0]!;
  const hcs = fx.hcss[0]!;
  const settleOne = async (e: Member, h: Member) => {
    const terms = await newTerms(fx, e, h);
    const { evReport, hcsReport } = sessionReports(fx, terms, 20_950n, 21_000n);
    return { terms, hcsReport, receipt: await relayer.client.settle(terms, evReport, hcsReport) };
  };
  const cold = await settleOne(ev, hcs);
  const steady = await settleOne(ev, hcs);
  const steadyOtherEv = await settleOne(fx.evs[1]!, hcs);

  // Ratings: the first one of an HCS creates its tally slot; later ones update it.
  const rate = (s: { terms: SettlementTerms; hcsReport: Uint8Array }, e: Member) =>
    e.client.rate(s.terms, 5, 'great', s.hcsReport);
  const gasRatingFirst = gas(await rate(cold, ev));
  const gasRating = gas(await rate(steady, ev));

  // Warm every HCS's bitmap word with one settled session, as in steady operation.
  for (const h of fx.hcss.slice(1)) await settleOne(fx.evs[2]!, h);

  const perBatch: Record<number, number> = {};
  for (const size of BATCH_SIZES) {
    const entries = [];
    for (let i = 0; i < size; i++) {
      const terms = await newTerms(fx, fx.evs[i]!, fx.hcss[i % HCS_COUNT]!);
      entries.push({ terms, ...sessionReports(fx, terms, 20_950n, 21_000n) });
    }
    const result = await relayer.client.settleBatch(entries);
    if (result.settled !== size) throw new Error(`batch of ${size}: only ${result.settled} settled`);
    perBatch[size] = gas(result.receipt);
  }

  const figures = {
    gasSingle: gas(steady.receipt),
    gasSingleOtherEv: gas(steadyOtherEv.receipt),
    gasSingleCold: gas(cold.receipt),
    gasPerSessionBatch10: Math.round(perBatch[10]! / 10),
    gasPerSessionBatch50: Math.round(perBatch[50]! / 50),
    gasPerSessionBatch100: Math.round(perBatch[100]! / 100),
    gasBatch100: perBatch[100]!,
    sessionsPerBlock30M: Math.floor(BLOCK_GAS / (perBatch[100]! / 100)),
    sessionsPerBlock30MSingle: Math.floor(BLOCK_GAS / gas(steady.receipt)),
    gasRegisterEv,
    gasRegisterHcs,
    gasVerify,
    gasDepositFirst,
    gasDeposit,
    gasSetPrice,
    gasRating,
    gasRatingFirst,
    goals: { single: 60_000, perSessionBatch50: 30_000 },
  };
  const rows: [string, number | string][] = [
    ['register EV', gasRegisterEv],
    ['register HCS (with profile)', gasRegisterHcs],
    ['verify (operator)', gasVerify],
    ['deposit (first / later)', `${gasDepositFirst} / ${gasDeposit}`],
    ['set price', gasSetPrice],
    ['settle one session, steady', figures.gasSingle],
    ['settle one session, cold bitmap word', figures.gasSingleCold],
    ['rate (first of HCS / later)', `${gasRatingFirst} / ${gasRating}`],
    ...BATCH_SIZES.map((n): [string, string] => [
      `batch of ${n}, per session`,
      `${Math.round(perBatch[n]! / n)} (tx ${perBatch[n]})`,
    ]),
    ['sessions per 30M-gas block (batches of 100)', figures.sessionsPerBlock30M],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`Settlement gas on anvil (${fx.anvil.rpcUrl}, chain ${fx.anvil.chainId})\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
  process.stdout.write(
    `  goals: single ≤ 60,000 ${figures.gasSingle <= 60_000 ? 'met' : 'MISSED'}; ` +
      `batch-50 ≤ 30,000 per session ${figures.gasPerSessionBatch50 <= 30_000 ? 'met' : 'MISSED'}\n`,
  );
  process.stdout.write(`${JSON.stringify(figures)}\n`);
} finally {
  await fx.stop();
}
