/**
 * Settling one session straight on the chain, without the edge: what an HCS does when there is no
 * edge in reach, the edge is late, or the reports disagree beyond the tolerance (only the station
 * itself can settle those). The contract decides the bill (docs/CONTRACT.md); the station sends
 * the highest receipt the EV signed and its own report.
 */
import { ChainSessionState, isSettledState, revertName } from '../../contracts/client.js';
import { big } from '../core/json.js';
import type { RoleContext } from '../core/context.js';
import { type SessionIn, type SessionRecord, type TermsJson, termsFromJson } from '../core/session.js';
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
  /** The chain refused the bill (a revert): final. Without it and not done, try again later. */
  error?: string;
}

/**
 * The EV's signed report the station settles with: the highest energy the EV signed, its final
 * report or an interim receipt (an EV that reports less at the end, or nothing, still pays for
 * what it acknowledged while charging). Envelope hex.
 */
export function bestEvReport(s: SessionRecord): string | undefined {
  if (s.role === 'ev') return s.myReport;
  const candidates = [s.peerReport, s.ackReport].filter((r): r is string => r !== undefined);
  return candidates.sort((a, b) => (reportEnergyWh(b) > reportEnergyWh(a) ? 1 : -1))[0];
}

export async function settleDirectly(
  agent: RoleContext,
  s: SessionIn<'awaitingSettlement'>,
): Promise<SettleResult> {
  const hcsReport = s.role === 'hcs' ? s.myReport : s.peerReport;
  return settleOnChain(agent, s, bestEvReport(s) ?? '', hcsReport ?? '');
}

/**
 * Settles the session `s` names on chain with these two signed reports (envelope hex): the
 * contract checks them and decides the bill. `AlreadySettled` (the edge's batch, or the other
 * party, was first) is done; only the contract's refusal is final.
 */
export async function settleOnChain(
  agent: RoleContext,
  s: Pick<SessionRecord, 'ev' | 'hcs' | 'txid'> & { hcs: string; terms: TermsJson },
  evHex: string,
  hcsHex: string,
): Promise<SettleResult> {
  const terms = termsFromJson(s.ev, s.hcs, s.terms);
  const evReport = `0x${evHex}`;
  const hcsReport = `0x${hcsHex}`;
  const chain = agent.chain;
  const state = await chain.retry('sessionState', () => chain.client.sessionState(s.hcs, big(s.terms.seq)));
  if (isSettledState(state)) return { done: true };
  if (state === ChainSessionState.Released)
    return { done: false, error: 'the reservation was released on chain before it was settled' };
  const agreed = withinToleranceOf(chain.deployment, reportEnergyWh(evReport), reportEnergyWh(hcsReport));
  try {
    const receipt = await chain.send('settle', (c) => c.settle(terms, evReport, hcsReport));
    agent.log.info({ txid: s.txid, tx: receipt.hash, disputed: !agreed }, 'settled directly on chain');
    return { done: true, txHash: receipt.hash };
  } catch (err) {
    const name = revertName(err);
    if (name === 'AlreadySettled') return { done: true };
    if (name || (err as { code?: string }).code === 'CALL_EXCEPTION')
      return { done: false, error: `the chain refused the bill: ${name ?? (err as Error).message}` };
    // Not the contract's answer (the node away or paused, a nonce or gas problem): nothing was
    // decided, and the station alone may settle this bill; the next tick tries again, until the
    // window closes (the contract then refuses it). A chain cut once failed a disputed bill for
    // good here, its station unpaid (issue 15's 30-minute chaos run).
    agent.log.warn({ txid: s.txid, err: (err as Error).message }, 'settlement not sent; trying again');
    return { done: false };
  }
}
