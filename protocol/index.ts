/** The wire protocol: packed messages (SPEC.md), optional CBOR data, signed envelopes, terms. */
export { decode, encode, fixedSize } from './codec.js';
export * from './envelope.js';
export { DecodeError, EncodeError } from './errors.js';
export { fromHex, toHex } from './hex.js';
export * from './json.js';
export * from './schema.js';
export * from './terms.js';
export * from './senders.js';
export * from './signature.js';
export * from './peerdata.js';
export * from './report.js';
export * from './text.js';
