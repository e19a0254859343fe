/**
 * An OCMF parser and verifier written from the specification (S.A.F.E. e.V., "Open Charge
 * Metering Format", OCMF-en.md), independent of agent/ops/ocmf.ts: it shares no code with the
 * signer, checks the structure strictly (sections, mandatory keys, enumerations, time format,
 * reserved extension letters) and verifies the signature with Node's OpenSSL, not noble.
 */
import { createPublicKey, verify } from 'node:crypto';

export class OcmfInvalid extends Error {}

const PAYLOAD_KEYS = new Set([
  'FV',
  'GI',
  'GS',
  'GV',
  'PG',
  'MV',
  'MM',
  'MS',
  'MF',
  'IS',
  'IL',
  'IF',
  'IT',
  'ID',
  'TT',
  'CCV',
  'LC',
  'CT',
  'CI',
  'RD',
]);
const READING_KEYS = new Set(['TM', 'TX', 'RV', 'RI', 'RU', 'RT', 'CL', 'EF', 'ST']);
const TX = new Set(['B', 'C', 'X', 'E', 'L', 'R', 'A', 'P', 'S', 'T']);
const END_TX = new Set(['E', 'L', 'R', 'A', 'P']);
const UNITS = new Set(['kWh', 'Wh', 'mOhm', 'uOhm']);
const METER_STATUS = new Set(['N', 'G', 'T', 'D', 'R', 'M', 'X', 'I', 'O', 'S', 'E', 'F']);
const IL = new Set([
  'NONE',
  'HEARSAY',
  'TRUSTED',
  'VERIFIED',
  'CERTIFIED',
  'SECURE',
  'MISMATCH',
  'INVALID',
  'OUTDATED',
  'UNKNOWN',
]);
const IT = new Set([
  'NONE',
  'DENIED',
  'UNDEFINED',
  'ISO14443',
  'ISO15693',
  'EMAID',
  'EVCCID',
  'EVCOID',
  'ISO7812',
  'CARD_TXN_NR',
  'CENTRAL',
  'CENTRAL_1',
  'CENTRAL_2',
  'LOCAL',
  'LOCAL_1',
  'LOCAL_2',
  'PHONE_NUMBER',
  'KEY_CODE',
]);
const ALGORITHMS: Record<string, string> = {
  'ECDSA-secp192k1-SHA256': 'secp192k1',
  'ECDSA-secp256k1-SHA256': 'secp256k1',
  'ECDSA-secp192r1-SHA256': 'prime192v1',
  'ECDSA-secp256r1-SHA256': 'prime256v1',
  'ECDSA-brainpool256r1-SHA256': 'brainpoolP256r1',
  'ECDSA-secp384r1-SHA256': 'secp384r1',
  'ECDSA-brainpool384r1-SHA256': 'brainpoolP384r1',
};
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2},\d{3}[+-]\d{4} [UISR]$/;

export interface OcmfReading {
  TM: string;
  TX?: string;
  RV?: number;
  RI?: string;
  RU?: string;
  RT?: string;
  EF?: string;
  ST: string;
}

export interface ParsedOcmf {
  /** The payload section exactly as transmitted: the signed bytes. */
  payloadText: string;
  payload: Record<string, unknown> & { PG: string; MS?: string; GS?: string; RD: OcmfReading[] };
  signature: { SA: string; SE: string; SM: string; SD: string };
}

function need(cond: unknown, what: string): asserts cond {
  if (!cond) throw new OcmfInvalid(what);
}

/** Parses one OCMF record strictly; throws OcmfInvalid with the first violation. */
export function parseOcmf(text: string): ParsedOcmf {
  const sections = text.split('|');
  need(sections.length === 3, `expected 3 sections separated by "|", found ${sections.length}`);
  need(sections[0] === 'OCMF', 'the header must be "OCMF"');
  const payloadText = sections[1]!;
  let payload: Record<string, unknown>;
  let sig: Record<string, unknown>;
  try {
    payload = JSON.parse(payloadText);
    sig = JSON.parse(sections[2]!);
  } catch (err) {
    throw new OcmfInvalid(`a section is not JSON: ${(err as Error).message}`);
  }
  need(
    payload && typeof payload === 'object' && !Array.isArray(payload),
    'the payload must be a JSON object',
  );
  for (const k of Object.keys(payload))
    need(PAYLOAD_KEYS.has(k) || /^[U-Z]/.test(k), `payload key ${k} is neither defined nor a U-Z extension`);
  for (const k of ['FV', 'GI', 'GS', 'GV', 'MV', 'MM', 'MS', 'MF', 'IL', 'IT', 'ID', 'TT', 'CT', 'CI'])
    need(payload[k] === undefined || typeof payload[k] === 'string', `${k} must be a string`);
  need(
    typeof payload.PG === 'string' && /^[TF](0|[1-9][0-9]*)$/.test(payload.PG),
    `PG ${String(payload.PG)} is not T<n> or F<n>`,
  );
  need(
    typeof payload.MS === 'string' || typeof payload.GS === 'string',
    'a meter serial (MS) or gateway serial (GS) is required',
  );
  need(typeof payload.MS === 'string', 'MS (meter serial) is required');
  const transaction = payload.PG.startsWith('T');
  if (transaction) {
    need(typeof payload.IS === 'boolean', 'IS (identification status) is required with a transaction');
    need(
      typeof payload.IT === 'string' && IT.has(payload.IT),
      `IT ${String(payload.IT)} is not a defined type`,
    );
  }
  need(
    payload.IL === undefined || IL.has(payload.IL as string),
    `IL ${String(payload.IL)} is not a defined level`,
  );
  need(
    payload.IF === undefined ||
      (Array.isArray(payload.IF) && payload.IF.length <= 4 && payload.IF.every((f) => typeof f === 'string')),
    'IF must be an array of at most 4 strings',
  );
  need(Array.isArray(payload.RD) && payload.RD.length > 0, 'RD must hold at least one reading');
  // Readings inherit fields they leave out from the previous reading (within this record).
  const readings: OcmfReading[] = [];
  let prev: Record<string, unknown> = {};
  for (const [i, raw] of (payload.RD as unknown[]).entries()) {
    need(raw && typeof raw === 'object' && !Array.isArray(raw), `RD[${i}] must be an object`);
    const r = { ...prev, ...(raw as Record<string, unknown>) };
    for (const k of Object.keys(raw as object)) need(READING_KEYS.has(k), `RD[${i}] has an unknown key ${k}`);
    need(
      typeof r.TM === 'string' && TIME.test(r.TM),
      `RD[${i}].TM ${String(r.TM)} is not "YYYY-MM-DDThh:mm:ss,fff+zzzz S"`,
    );
    need(!Number.isNaN(Date.parse(`${(r.TM as string).slice(0, 19)}Z`)), `RD[${i}].TM is not a date`);
    need(
      typeof r.ST === 'string' && METER_STATUS.has(r.ST),
      `RD[${i}].ST ${String(r.ST)} is not a meter status`,
    );
    need(r.TX === undefined || TX.has(r.TX as string), `RD[${i}].TX ${String(r.TX)} is not a reason`);
    need(!transaction || r.TX !== undefined, `RD[${i}].TX is required in a transaction`);
    need((r.RI === undefined) === (r.RU === undefined), `RD[${i}]: RI and RU go together`);
    need(
      r.RU === undefined || UNITS.has(r.RU as string),
      `RD[${i}].RU ${String(r.RU)} is not a defined unit`,
    );
    need(
      r.RV === undefined || (typeof r.RV === 'number' && Number.isFinite(r.RV)),
      `RD[${i}].RV must be a number`,
    );
    need(r.RT === undefined || r.RT === 'AC' || r.RT === 'DC', `RD[${i}].RT must be AC or DC`);
    need(r.EF === undefined || /^[Et]*$/.test(r.EF as string), `RD[${i}].EF may hold only E and t`);
    readings.push(r as unknown as OcmfReading);
    prev = r;
  }
  need(sig && typeof sig === 'object' && !Array.isArray(sig), 'the signature section must be a JSON object');
  for (const k of Object.keys(sig))
    need(['SA', 'SE', 'SM', 'SD'].includes(k) || /^[U-ZA-F]/.test(k), `signature key ${k} is not defined`);
  const SA = (sig.SA ?? 'ECDSA-secp256r1-SHA256') as string;
  const SE = (sig.SE ?? 'hex') as string;
  const SM = (sig.SM ?? 'application/x-der') as string;
  need(ALGORITHMS[SA], `SA ${SA} is not a defined algorithm`);
  need(SE === 'hex' || SE === 'base64', `SE ${SE} is not hex or base64`);
  need(SM === 'application/x-der', `SM ${SM} is not application/x-der`);
  need(typeof sig.SD === 'string' && sig.SD.length > 0, 'SD (signature data) is required');
  need(SE !== 'hex' || /^([0-9a-fA-F]{2})+$/.test(sig.SD as string), 'SD is not hex');
  return {
    payloadText,
    payload: { ...payload, RD: readings } as ParsedOcmf['payload'],
    signature: { SA, SE, SM, SD: sig.SD as string },
  };
}

/** A transaction record's first reading begins it, its last ends it. */
export function checkTransaction(p: ParsedOcmf): void {
  const rd = p.payload.RD;
  need(rd[0]!.TX === 'B', `the first reading must begin the transaction (TX B), not ${rd[0]!.TX}`);
  need(
    END_TX.has(rd[rd.length - 1]!.TX!),
    `the last reading must end it (E, L, R, A or P), not ${rd[rd.length - 1]!.TX}`,
  );
}

/**
 * Verifies SD over the payload text with the public key as DER SubjectPublicKeyInfo (hex, as
 * Eichrecht meters print it) or as an uncompressed point (04 ‖ x ‖ y, hex).
 */
export function verifyOcmf(p: ParsedOcmf, publicKeyHex: string): boolean {
  const pub = Buffer.from(publicKeyHex.replace(/^0x/, ''), 'hex');
  if (pub[0] === 0x30) {
    const key = createPublicKey({ key: pub, format: 'der', type: 'spki' });
    const sd = Buffer.from(p.signature.SD, p.signature.SE === 'hex' ? 'hex' : 'base64');
    return verify('sha256', Buffer.from(p.payloadText, 'utf8'), { key, dsaEncoding: 'der' }, sd);
  }
  need(pub.length >= 65 && pub[0] === 4, 'the public key must be uncompressed (04 ‖ x ‖ y)');
  const half = (pub.length - 1) / 2;
  const key = createPublicKey({
    key: {
      kty: 'EC',
      crv: ALGORITHMS[p.signature.SA] === 'secp256k1' ? 'secp256k1' : ALGORITHMS[p.signature.SA]!,
      x: pub.subarray(1, 1 + half).toString('base64url'),
      y: pub.subarray(1 + half).toString('base64url'),
    },
    format: 'jwk',
  });
  const sd = Buffer.from(p.signature.SD, p.signature.SE === 'hex' ? 'hex' : 'base64');
  return verify('sha256', Buffer.from(p.payloadText, 'utf8'), { key, dsaEncoding: 'der' }, sd);
}
