/**
 * Issue 12's invariants I1 and I2 as a property, against the deployed contract on anvil: random
 * sessions (cap, station meter, the EV's receipts while charging, where the EV goes silent, what
 * its final report says, whether the station lies), each reserved, then settled the way the
 * honest party does it, and the bill checked:
 *
 * - I1 (honest station): paid at least the energy delivered less one receipt's energy and the
 *   tolerance, whatever the EV signs last (less, 0, or nothing).
 * - I2 (honest EV): never billed more than its own meter plus the tolerance, nor above the cap.
 *
 * The station's switch-off rule (agent/roles/hcs.ts) is what bounds the unacknowledged energy by
 * one receipt; the model here stops the delivery the same way.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { receiptResults } from '../contracts/client.js';
import { signEnvelope } from '../protocol/envelope.js';
import {
  evReceipt,
  type Member,
  newTerms,
  reportPayload,
  reserve,
  type SettlementFixture,
  setupSettlement,
} from './helpers/anvilSettlement.js';
import { computeTxId } from '../protocol/terms.js';

const RECEIPT_WH = 500n;
const ABS_TOLERANCE_WH = 50n;
const REL_TOLERANCE_BPS = 200n;
const tolerance = (wh: bigint) => {
  const rel = (wh * REL_TOLERANCE_BPS) / 10_000n;
  return rel > ABS_TOLERANCE_WH ? rel : ABS_TOLERANCE_WH;
};
const max = (...xs: bigint[]) => xs.reduce((a, b) => (a > b ? a : b));
const min = (...xs: bigint[]) => xs.reduce((a, b) => (a < b ? a : b));

let fx: SettlementFixture;
let ev: Member;
let hcs: Member;

beforeAll(async () => {
  fx = await setupSettlement({ evs: 1, hcss: 1, strangers: 0 });
  [ev] = fx.evs as [Member];
  [hcs] = fx.hcss as [Member];
}, 60_000);
afterAll(async () => {
  await fx?.stop();
});

/** One session as the property draws it. */
const session = fc.record({
  capWh: fc.integer({ min: 500, max: 30_000 }),
  /** Fraction (‰) of the cap the car wants. */
  wantPermille: fc.integer({ min: 0, max: 1000 }),
  /** The EV's meter over the station's, in ‰ (cable losses, meter error): 98.5–100 %. */
  evMeterPermille: fc.integer({ min: 985, max: 1000 }),
  /** After how many receipts the EV goes silent (none: it never does). */
  silentAfter: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
  /** What the EV's final report says. */
  final: fc.constantFrom('honest', 'zero', 'less', 'none'),
  /** The station lies: its report claims this many ‰ of what it delivered (honest: 1000). */
  stationPermille: fc.constantFrom(1000, 1000, 1000, 1050, 1300),
  lessPermille: fc.integer({ min: 0, max: 999 }),
});

describe('I1 and I2 against the deployed contract (fast-check)', () => {
  it('holds for random receipt sequences and report pairs', async () => {
    await fc.assert(
      fc.asyncProperty(session, async (p) => {
        const cap = BigInt(p.capWh);
        const terms = await newTerms(fx, ev, hcs, { maxEnergyWh: cap });
        await reserve(fx, terms);
        const txid = computeTxId(terms, fx.domain);

        // Delivery in receipt steps; the station stops one receipt after the EV's last one.
        const want = (cap * BigInt(p.wantPermille)) / 1000n;
        const evOf = (wh: bigint) => (wh * BigInt(p.evMeterPermille)) / 1000n;
        let delivered = 0n;
        const receipts: bigint[] = [0n];
        for (let k = 1; delivered < want; k++) {
          const next = min(want, delivered + RECEIPT_WH);
          if (p.silentAfter !== undefined && k > p.silentAfter) {
            // Silent: the station switches off before the next receipt is overdue.
            delivered = next;
            break;
          }
          delivered = next;
          receipts.push(evOf(delivered));
        }
        const evMeter = evOf(delivered);
        const lastReceipt = receipts[receipts.length - 1]!;
        const finalWh =
          p.final === 'honest'
            ? evMeter
            : p.final === 'zero'
              ? 0n
              : p.final === 'less'
                ? (lastReceipt * BigInt(p.lessPermille)) / 1000n
                : undefined;
        const signed = finalWh === undefined ? receipts : [...receipts, finalWh];

        // The station settles with the highest figure the EV signed and its own report.
        const best = max(...signed);
        const bestIndex = signed.lastIndexOf(best);
        const evReport =
          finalWh !== undefined && bestIndex === signed.length - 1
            ? signEnvelope(reportPayload('ev', terms, txid, best), ev.privateKey, fx.domain)
            : evReceipt(fx, terms, best, bestIndex);
        const stationWh = (delivered * BigInt(p.stationPermille)) / 1000n;
        const hcsReport = signEnvelope(
          reportPayload('hcs', terms, txid, stationWh),
          hcs.privateKey,
          fx.domain,
        );
        const receipt = await hcs.client.settle(terms, evReport, hcsReport);
        const [result] = receiptResults(hcs.client.contract.interface, receipt);
        const billed = result!.billedWh;
        expect(result!.reason).toBe('');
        expect(result!.amountWei).toBe((billed * terms.priceWeiPerKWh) / 1000n);

        // I2: an honest EV pays for no more than its meter plus the tolerance, nor above the cap.
        expect(billed).toBeLessThanOrEqual(cap);
        expect(billed).toBeLessThanOrEqual(evMeter + tolerance(max(evMeter, stationWh)));
        // I1: an honest station is paid at least what it delivered less one receipt and the tolerance.
        if (p.stationPermille === 1000)
          expect(billed).toBeGreaterThanOrEqual(delivered - RECEIPT_WH - tolerance(delivered));
      }),
      { numRuns: 25 },
    );
  }, 120_000);
});
