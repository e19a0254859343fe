/**
 * What each side reported, read back from a settlement transaction's input. The `Settled` event
 * carries only the billed energy (gas); the EV's and the HCS's own figures, and the audit data of
 * their meters, are inside the signed reports passed to settle / settleDisputed / settleBatch.
 */
import type { Terms } from '../../protocol/index.js';
import type { Interface, TransactionDescription } from 'ethers';
import { decode, fromHex, SIGNATURE_BYTES } from '../../protocol/index.js';

/** A report's optional audit data (docs/DESIGN.md): meter serial, profile, registers, times, status. */
export interface ReportAudit {
  m?: string;
  p?: string;
  s?: number;
  e?: number;
  t0?: number;
  t1?: number;
  st?: number;
}

export interface ReportSide {
  energyWh: bigint;
  audit: ReportAudit;
}

/** One session's terms and both reports, as the settling transaction passed them. */
export interface SettlementInput {
  txid: string;
  method: 'settle' | 'settleDisputed' | 'settleBatch';
  seq: bigint;
  priceWeiPerKWh: bigint;
  maxEnergyWh: bigint;
  settleBy: bigint;
  ev: ReportSide;
  hcs: ReportSide;
  /** The HCS's signed report (0x hex): the EV needs it to rate the session (rate() checks it). */
  hcsReport: string;
}

/** The contract's Terms struct as it arrives in calldata: the protocol's Terms. */
type TermsArg = Terms;

function side(reportHex: string): { txid: string; side: ReportSide } | undefined {
  try {
    const bytes = fromHex(reportHex);
    if (!bytes || bytes.length <= SIGNATURE_BYTES) return undefined;
    const msg = decode(bytes.subarray(0, bytes.length - SIGNATURE_BYTES)) as {
      txid: string;
      energyWh: bigint;
      optional?: ReportAudit;
    };
    return { txid: msg.txid.toLowerCase(), side: { energyWh: msg.energyWh, audit: msg.optional ?? {} } };
  } catch {
    // A report the contract accepted always decodes; anything else is not ours to show.
    return undefined;
  }
}

/**
 * Every session a transaction's input settles (or tries to), by txid. A transaction that is not
 * a direct call of ours (a relayer contract in between) yields nothing: the page then shows the
 * billed energy from the event alone.
 */
export function decodeSettlementInput(iface: Interface, data: string): Map<string, SettlementInput> {
  const out = new Map<string, SettlementInput>();
  let call: TransactionDescription | null;
  try {
    call = iface.parseTransaction({ data });
  } catch {
    return out;
  }
  if (!call) return out;
  const method = call.name;
  if (method !== 'settle' && method !== 'settleDisputed' && method !== 'settleBatch') return out;
  const [termsArg, evArg, hcsArg] = call.args as unknown as [unknown, unknown, unknown];
  const batch = method === 'settleBatch';
  const terms = (batch ? termsArg : [termsArg]) as TermsArg[];
  const evReports = (batch ? evArg : [evArg]) as string[];
  const hcsReports = (batch ? hcsArg : [hcsArg]) as string[];
  terms.forEach((t, i) => {
    const ev = side(evReports[i] ?? '0x');
    const hcs = side(hcsReports[i] ?? '0x');
    if (!ev || !hcs || ev.txid !== hcs.txid) return;
    out.set(ev.txid, {
      txid: ev.txid,
      method,
      seq: t.seq,
      priceWeiPerKWh: t.priceWeiPerKWh,
      maxEnergyWh: t.maxEnergyWh,
      settleBy: t.settleBy,
      ev: ev.side,
      hcs: hcs.side,
      hcsReport: hcsReports[i]!,
    });
  });
  return out;
}
