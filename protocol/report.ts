/**
 * Charge reports (chargeReceived / chargeProvided) read back from their signed envelopes: what the
 * edge reconciles, what a station settles directly and what the OCMF export bills. The envelope's
 * signature was checked when it arrived (agent/core/bus.ts) or it is our own; this only decodes
 * the message, so every reader goes through the schema instead of byte offsets.
 */
import { decode } from './codec.js';
import { SIGNATURE_BYTES } from './envelope.js';
import { DecodeError } from './errors.js';
import { fromHex } from './hex.js';
import type { MessageOf } from './schema.js';

export type ChargeReport = MessageOf<'chargeReceived'> | MessageOf<'chargeProvided'>;

/** Decodes the report in an envelope (bytes, or hex with or without 0x). Throws DecodeError otherwise. */
export function readReport(envelope: Uint8Array | string): ChargeReport {
  const bytes = typeof envelope === 'string' ? fromHex(envelope) : envelope;
  if (bytes === undefined) throw new DecodeError('report envelope is not hex', 0, 'envelope');
  if (bytes.length <= SIGNATURE_BYTES)
    throw new DecodeError('envelope shorter than a 65-byte signature plus a message', 0, 'envelope');
  const msg = decode(bytes.subarray(0, bytes.length - SIGNATURE_BYTES));
  if (msg.type !== 'chargeReceived' && msg.type !== 'chargeProvided')
    throw new DecodeError(`a ${msg.type} message, not a charge report`, 0, 'type');
  return msg;
}

/** The energy (Wh) a report envelope states. */
export function reportEnergyWh(envelope: Uint8Array | string): bigint {
  return readReport(envelope).energyWh;
}
