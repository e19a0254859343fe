/**
 * Settling one session straight on the chain, without the edge: what an HCS does when there is no
 * edge in reach (or the edge is late). The contract decides; this only picks `settle` or
 * `settleDisputed` by the documented tolerance rule and reads the answer.
 */
import { revertName, ChainSessionState } from '../../contracts/client.js';
import { big } from '../core/json.js';
import type { RoleContext } from '../core/context.js';
import { type SessionIn, termsFromJson } from '../core/session.js';
import { reportEnergyWh } from '../../protocol/index.js';

/** The contract's rule (docs/CONTRACT.md): |eEV − eHCS| ≤ max(abs, rel × max(eEV, eHCS)). */
export function withinTolerance(evWh: bigint, hcsWh: bigint, absWh: bigint, relBps: bigint): boolean {
  const diff = evWh > hcsWh ? evWh - hcsWh : hcsWh - evWh;
  const larger = evWh > hcsWh ? evWh : hcsWh;
  const rel = (larger * relBps) / 10_000n;
  return diff <= (absWh > rel ? absWh : rel);
}

/** The tolerance rule with the deployment's parameters. */
export function withinToleranceOf(
  d: { params: { absToleranceWh: string; relToleranceBps: string } },
  evWh: bigint,
  hcsWh: bigint,
): boolean {
  return withinTolerance(evWh, hcsWh, BigInt(d.params.absToleranceWh), BigInt(d.params.relToleranceBps));
}

export interface SettleResult {
  done: boolean;
  txHash?: string;
  error?: string;
}

export async function settleDirectly(
  agent: RoleContext,
  s: SessionIn<'awaitingSettlement'>,
): Promise<SettleResult> {
  const terms = termsFromJson(s.ev, s.hcs, s.terms);
  const evReport = `0x${s.role === 'ev' ? s.myReport : s.peerReport}`;
  const hcsReport = `0x${s.role === 'hcs' ? s.myReport : s.peerReport}`;
  const chain = agent.chain;
  const state = await chain.retry('sessionState', () => chain.client.sessionState(s.hcs, big(s.terms.seq)));
  if (state === ChainSessionState.Settled || state === ChainSessionState.Rated) return { done: true };
  if (state === ChainSessionState.Expired)
    return { done: false, error: 'the session expired on chain before it was settled' };
  const agreed = withinToleranceOf(chain.deployment, reportEnergyWh(evReport), reportEnergyWh(hcsReport));
  try {
    const receipt = await chain.send('settle', (c) =>
      agreed ? c.settle(terms, evReport, hcsReport) : c.settleDisputed(terms, evReport, hcsReport),
    );
    agent.log.info({ txid: s.txid, tx: receipt.hash, disputed: !agreed }, 'settled directly on chain');
    return { done: true, txHash: receipt.hash };
  } catch (err) {
    const name = revertName(err);
    if (name === 'AlreadySettled') return { done: true };
    return { done: false, error: `the chain refused the bill: ${name ?? (err as Error).message}` };
  }
}
