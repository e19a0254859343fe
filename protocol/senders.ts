/**
 * Who may sign each message (SPEC.md's "sent by"): the field naming the sender, whose address
 * must be the envelope's signer. A receiver drops anything else.
 */
import type { Message, MessageName } from './schema.js';

/** The field(s) naming the sender; any one of them may sign. 'server': the configured edge. */
export const SENDER_FIELDS: Record<MessageName, readonly string[]> = {
  registration: ['member'],
  reqAuthInfo: ['requester'],
  verification: ['server'],
  search: ['requester'],
  suggestion: ['server'],
  request: ['sender'],
  response: ['sender'],
  mutual: ['server'],
  completion: ['ev', 'hcs'],
  termination: ['ev', 'hcs'],
  chargeReceived: ['ev'],
  chargeProvided: ['hcs'],
  amount: ['server'],
  rating: ['sender'],
  // The SBS sends the transaction record; its sender field is the payer, so only the server signs.
  transaction: [],
};

/** Whether `signer` is a sender the message names (or the trusted server, where it has none). */
export function signerMayHaveSent(msg: Message, signer: string, server?: string): boolean {
  const fields = SENDER_FIELDS[msg.type];
  if (fields.length === 0) return server !== undefined && signer === server;
  const values: Record<string, unknown> = msg;
  return fields.some((f) => typeof values[f] === 'string' && (values[f] as string).toLowerCase() === signer);
}
