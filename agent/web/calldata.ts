/**
 * What each side reported, read back from a settlement transaction's input. The contract's one
 * event per call (SessionsSettled) carries only each session's txid, outcome and bill (gas); the
 * parties, the terms, the EV's and the HCS's own figures and the audit data of their reports are
 * in the packed calldata of settle / settleBatch (docs/CONTRACT.md).
 */
import type { Interface, TransactionDescription } from 'ethers';
import { unpackEntries } from '../../contracts/client.js';
import { computeTxId, type Domain } from '../../protocol/index.js';
import { decodeOptional } from '../../protocol/optional.js';

/**
 * A report's optional data (docs/PROTOCOL.md): the audit data in clear (meter serial, profile,
 * registers, times, status) or its hash `a`; `i` marks an interim receipt.
 */
export interface ReportAudit {
  m?: string;
  p?: string;
  s?: number;
  e?: number;
  t0?: number;
  t1?: number;
  st?: number;
  i?: number;
}

export interface ReportSide {
  energyWh: bigint;
  audit: ReportAudit;
}

/** One session's parties, terms and both reports, as the settling transaction passed them. */
export interface SettlementInput {
  txid: string;
  method: 'settle' | 'settleBatch';
  ev: string;
  hcs: string;
  seq: bigint;
  priceWeiPerKWh: bigint;
  maxEnergyWh: bigint;
  settleBy: bigint;
  evReport: ReportSide;
  hcsReport: ReportSide;
}

function audit(optional: Uint8Array): ReportAudit {
  if (optional.length === 0) return {};
  try {
    return decodeOptional(optional, 0) as ReportAudit;
  } catch {
    // A report the contract accepted was signed by its member; if its optional data is not
    // ours to read, the page shows the figures without it.
    return {};
  }
}

/**
 * Every session a transaction's input settles (or tries to), by txid. A transaction that is not
 * a direct call of ours (a relayer contract in between) yields nothing: the page then shows the
 * bill from the event alone.
 */
export function decodeSettlementInput(
  iface: Interface,
  data: string,
  domain: Domain,
): Map<string, SettlementInput> {
  const out = new Map<string, SettlementInput>();
  let call: TransactionDescription | null;
  try {
    call = iface.parseTransaction({ data });
  } catch {
    return out;
  }
  const method = call?.name;
  if (method !== 'settle' && method !== 'settleBatch') return out;
  let entries: ReturnType<typeof unpackEntries>;
  try {
    entries = unpackEntries(call!.args[0] as string, 2);
  } catch {
    return out;
  }
  for (const { terms, receipts } of entries) {
    const [ev, hcs] = receipts as [(typeof receipts)[0], (typeof receipts)[0]];
    const txid = computeTxId(terms, domain).toLowerCase();
    out.set(txid, {
      txid,
      method,
      ev: terms.ev.toLowerCase(),
      hcs: terms.hcs.toLowerCase(),
      seq: terms.seq,
      priceWeiPerKWh: terms.priceWeiPerKWh,
      maxEnergyWh: terms.maxEnergyWh,
      settleBy: terms.settleBy,
      evReport: { energyWh: ev.energyWh, audit: audit(ev.optional) },
      hcsReport: { energyWh: hcs.energyWh, audit: audit(hcs.optional) },
    });
  }
  return out;
}
