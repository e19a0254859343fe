/**
 * Signed sessions in OCMF (S.A.F.E. e.V.'s Open Charge Metering Format), so anyone with an OCMF
 * verifier can check a charge point's sessions: `OCMF|{payload}|{signature}`, one data set per
 * charge with the begin (B) and end (E, L, R or A) readings of the billing register, signed with
 * the device key (ECDSA on secp256k1 over SHA-256 of the exact payload text, DER, hex).
 *
 * What goes in comes from the HCS's own signed chargeProvided report (its optional data holds the
 * meter serial, profile, register readings and times), never from mutable journal fields. The
 * pagination counter is the HCS's session counter `seq` (docs/DESIGN.md): strictly increasing,
 * journaled before it is handed out, so it never repeats across restarts. A seq that never became
 * a charge (an offer not taken up) has no readings and so no data set: the export lists it as a
 * gap with its reason, so an auditor can account for every number.
 *
 * The verifier needs the public key out of band: the export prints it as DER SubjectPublicKeyInfo
 * (hex, and PEM), as Eichrecht meters print theirs and OCMF verifiers take it; its Ethereum
 * address is the station's address registered on chain, which binds the data sets to the on-chain
 * bills.
 *
 * Not Eichrecht-conformant: the device signs the record, not a certified (MID/PTB) meter, so the
 * signature proves which station reported the readings, not that a calibrated meter measured them.
 */
import { createPublicKey } from 'node:crypto';
import { sha256 } from '@noble/hashes/sha2.js';
import { resolveProfile } from '../../drivers/index.js';
import {
  billWei,
  type Domain,
  decode,
  fromHex,
  openEnvelope,
  signatureBackend,
  reportEnergyWh,
  toHex,
} from '../../protocol/index.js';
import { END } from '../core/session.js';
import type { SessionRecord } from '../core/session.js';

export const OCMF_SA = 'ECDSA-secp256k1-SHA256';
/** OBIS code of the total imported active energy register. */
export const OBIS_IMPORT_TOTAL = '1-b:1.8.0';

/** One charge as the OCMF data set shows it, taken from the HCS's signed report. */
export interface OcmfSession {
  seq: string;
  txid: string;
  ev: string;
  hcs: string;
  meterSerial: string;
  profile: string;
  startWh: number;
  endWh: number;
  t0: number;
  t1: number;
  endStatus: number;
  /** The energy this station reported (its report's fixed part, capped at the agreed maximum). */
  energyWh: bigint;
}

export class OcmfError extends Error {
  override readonly name = 'OcmfError';
}

/** Reads the session's own signed report; throws OcmfError when there is none or it is not ours. */
export function sessionFromRecord(s: SessionRecord, domain: Domain, self: string): OcmfSession {
  if (s.role !== 'hcs') throw new OcmfError(`session ${s.id} is an EV session; OCMF is the charge point's`);
  if (!s.myReport || !s.terms || !s.txid)
    throw new OcmfError(`session ${s.id} has no signed report (no charge)`);
  const bytes = fromHex(s.myReport);
  if (!bytes) throw new OcmfError(`session ${s.id}: the stored report is not hex`);
  const { payload, signer } = openEnvelope(bytes, domain);
  if (signer !== self.toLowerCase())
    throw new OcmfError(`session ${s.id}: the report was signed by ${signer}, not by this device (${self})`);
  const msg = decode(payload) as {
    type: string;
    ev: string;
    hcs: string;
    txid: string;
    energyWh: bigint;
    optional?: Record<string, unknown>;
  };
  const o = msg.optional ?? {};
  const num = (k: string) => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new OcmfError(`session ${s.id}: the report's optional data lacks ${k}`);
    return v;
  };
  if (msg.type !== 'chargeProvided') throw new OcmfError(`session ${s.id}: the report is a ${msg.type}`);
  return {
    seq: s.terms.seq,
    txid: msg.txid,
    ev: msg.ev,
    hcs: msg.hcs,
    meterSerial: typeof o.m === 'string' ? o.m : 'unknown',
    profile: typeof o.p === 'string' ? o.p : 'unknown',
    startWh: num('s'),
    endWh: num('e'),
    t0: num('t0'),
    t1: num('t1'),
    endStatus: typeof o.st === 'number' ? o.st : END.completed,
    energyWh: msg.energyWh,
  };
}

/** OCMF time: `2024-05-01T12:00:00,000+0000 I` (UTC; I = an informative clock, NTP-set, not calibrated). */
export function ocmfTime(unixS: number): string {
  const iso = new Date(unixS * 1000).toISOString(); // 2024-05-01T12:00:00.000Z
  return `${iso.slice(0, 19)},${iso.slice(20, 23)}+0000 I`;
}

/** The reason letter of the end reading: E completed, L ended here, R ended by the car, A aborted. */
export function endReason(status: number): 'E' | 'L' | 'R' | 'A' {
  if (status === END.completed) return 'E';
  if (status === END.stoppedByHcs) return 'L';
  if (status === END.stoppedByEv) return 'R';
  return 'A';
}

export interface Gateway {
  version: string;
}

/** The payload section's exact text: fixed key order, no whitespace; this text is what is signed. */
export function ocmfPayload(s: OcmfSession, gw: Gateway): string {
  let vendor: string | undefined;
  let model: string | undefined;
  try {
    if (s.profile !== 'generic') ({ vendor, model } = resolveProfile(s.profile));
  } catch {
    // an unknown profile name: the meter is still identified by its serial
  }
  const reading = (unixS: number, tx: string, wh: number) => ({
    TM: ocmfTime(unixS),
    TX: tx,
    RV: wh,
    RI: OBIS_IMPORT_TOTAL,
    RU: 'Wh',
    RT: 'AC',
    EF: '',
    ST: 'G',
  });
  const payload = {
    FV: '1.0',
    GI: 'p2pev agent',
    GS: s.hcs.toLowerCase(),
    GV: gw.version,
    PG: `T${BigInt(s.seq)}`,
    ...(vendor ? { MV: vendor } : {}),
    ...(model ? { MM: model } : {}),
    MS: s.meterSerial,
    // The car is identified by its on-chain account, proven by its signature on the request.
    IS: true,
    IL: 'CERTIFIED',
    IT: 'UNDEFINED',
    ID: s.ev.toLowerCase().replace(/^0x/, ''),
    RD: [reading(s.t0, 'B', s.startWh), reading(s.t1, endReason(s.endStatus), s.endWh)],
    // Vendor extension (OCMF reserves top-level keys starting U-Z): the on-chain transaction id
    // this charge is billed under, and the energy the signed report bills (capped at the terms).
    ZT: s.txid,
    ZE: Number(s.energyWh),
  };
  // The sections are split on "|", so it may not appear inside one (a meter serial could hold it).
  return JSON.stringify(payload).replaceAll('|', '\\u007c');
}

/** The device's public key, uncompressed SEC1 (04 ‖ x ‖ y), hex: what a verifier needs. */
export function publicKeyHex(privateKey: string): string {
  const key = fromHex(privateKey, 32);
  if (!key) throw new OcmfError('the device key is not 32 bytes of hex');
  return toHex(signatureBackend().publicKey(key)).slice(2);
}

/** The device's public key as DER SubjectPublicKeyInfo (the X.509 form OCMF verifiers take). */
export function publicKeySpki(privateKey: string): { der: string; pem: string } {
  const raw = Buffer.from(publicKeyHex(privateKey), 'hex');
  const key = createPublicKey({
    key: {
      kty: 'EC',
      crv: 'secp256k1',
      x: raw.subarray(1, 33).toString('base64url'),
      y: raw.subarray(33).toString('base64url'),
    },
    format: 'jwk',
  });
  return {
    der: (key.export({ type: 'spki', format: 'der' }) as Buffer).toString('hex'),
    pem: key.export({ type: 'spki', format: 'pem' }) as string,
  };
}

/** One ASN.1 DER INTEGER: minimal big-endian bytes, a 0x00 in front when the top bit is set. */
function derInteger(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const body = bytes.subarray(i);
  const pad = (body[0] ?? 0) & 0x80 ? 1 : 0;
  const out = new Uint8Array(2 + pad + body.length);
  out[0] = 0x02;
  out[1] = pad + body.length;
  out.set(body, 2 + pad);
  return out;
}

/** ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 3279), as OCMF's application/x-der. */
export function derSignature(r: Uint8Array, s: Uint8Array): Uint8Array {
  const ri = derInteger(r);
  const si = derInteger(s);
  const out = new Uint8Array(2 + ri.length + si.length);
  out[0] = 0x30;
  out[1] = ri.length + si.length; // at most 70 bytes for 256-bit r and s: short form
  out.set(ri, 2);
  out.set(si, 2 + ri.length);
  return out;
}

/** `OCMF|payload|signature`, signed with the device key over SHA-256 of the payload text. */
export function signOcmf(payloadText: string, privateKey: string): string {
  const key = fromHex(privateKey, 32);
  if (!key) throw new OcmfError('the device key is not 32 bytes of hex');
  const digest = sha256(new TextEncoder().encode(payloadText));
  // RFC 6979, low-s, with the protocol's backend (the same bytes native or portable); r ‖ s ‖ v.
  const compact = signatureBackend().sign(digest, key).subarray(0, 64);
  const der = derSignature(compact.subarray(0, 32), compact.subarray(32));
  const signature = {
    SA: OCMF_SA,
    SE: 'hex',
    SM: 'application/x-der',
    SD: toHex(der).slice(2).toUpperCase(),
  };
  return `OCMF|${payloadText}|${JSON.stringify(signature)}`;
}

export interface ExportedSession {
  seq: string;
  txid: string;
  state: string;
  ocmf: string;
  /**
   * The wallbox's own signed values for the session (OCMF from an Eichrecht wallbox over OCPP,
   * exactly as received): where present, these are the calibrated meter's signature.
   */
  chargerOcmf?: string[];
  bill: {
    energyWh: string;
    /** Settled energy: the smaller of both signed reports (when the EV's is here), and its price. */
    billedWh?: string;
    amountWei?: string;
    priceWeiPerKWh: string;
    settledTxHash?: string;
  };
}

export interface OcmfExport {
  address: string;
  /** DER SubjectPublicKeyInfo, hex: what OCMF verifiers (and Eichrecht meters' labels) use. */
  publicKey: string;
  publicKeyPem: string;
  /** The same key as the raw uncompressed point 04 ‖ x ‖ y, hex (its keccak gives the address). */
  publicKeyRaw: string;
  signatureAlgorithm: string;
  chainId: string;
  contract: string;
  sessions: ExportedSession[];
  /** Session numbers with no data set, and why. */
  gaps: { seq: string; reason: string }[];
}

/**
 * Every charged session of this station, oldest first, as OCMF, with its bill; plus the seqs
 * in the covered range that have no data set. `counter` is the journal's current seq.
 */
export function exportOcmf(opts: {
  records: SessionRecord[];
  counter: bigint;
  domain: Domain;
  address: string;
  privateKey: string;
  version: string;
  fromSeq?: bigint;
  settledOnly?: boolean;
}): OcmfExport {
  const bySeq = new Map<bigint, SessionRecord>();
  for (const r of opts.records) if (r.role === 'hcs' && r.terms) bySeq.set(BigInt(r.terms.seq), r);
  const known = [...bySeq.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const first = opts.fromSeq ?? known[0] ?? 1n;
  const out: OcmfExport = {
    address: opts.address.toLowerCase(),
    publicKey: publicKeySpki(opts.privateKey).der,
    publicKeyPem: publicKeySpki(opts.privateKey).pem,
    publicKeyRaw: publicKeyHex(opts.privateKey),
    signatureAlgorithm: OCMF_SA,
    chainId: opts.domain.chainId.toString(),
    contract: opts.domain.verifyingContract,
    sessions: [],
    gaps: [],
  };
  for (let seq = first; seq <= opts.counter; seq++) {
    const r = bySeq.get(seq);
    if (!r) {
      out.gaps.push({
        seq: seq.toString(),
        reason:
          seq < (known[0] ?? 0n)
            ? 'no longer in the journal (only the newest 200 finished sessions are kept)'
            : 'no session record (the offer was never sent)',
      });
      continue;
    }
    if (!r.myReport) {
      out.gaps.push({
        seq: seq.toString(),
        reason: `no charge: ${r.state}${r.error ? ` (${r.error})` : ''}`,
      });
      continue;
    }
    if (opts.settledOnly && r.state !== 'done') {
      out.gaps.push({ seq: seq.toString(), reason: `not settled yet (${r.state})` });
      continue;
    }
    const s = sessionFromRecord(r, opts.domain, opts.address);
    // sessionFromRecord refused a record without terms.
    const price = BigInt(r.terms?.price ?? 0);
    let billedWh: bigint | undefined;
    if (r.peerReport) {
      const peer = reportEnergyWh(r.peerReport);
      billedWh = peer < s.energyWh ? peer : s.energyWh;
    }
    out.sessions.push({
      seq: s.seq,
      txid: s.txid,
      state: r.state,
      ocmf: signOcmf(ocmfPayload(s, { version: opts.version }), opts.privateKey),
      ...(r.chargerSigned?.length ? { chargerOcmf: [...r.chargerSigned] } : {}),
      bill: {
        energyWh: s.energyWh.toString(),
        priceWeiPerKWh: price.toString(),
        ...(billedWh !== undefined
          ? { billedWh: billedWh.toString(), amountWei: billWei(billedWh, price).toString() }
          : {}),
        ...(r.settledTxHash ? { settledTxHash: r.settledTxHash } : {}),
      },
    });
  }
  return out;
}
