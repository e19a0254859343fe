/**
 * Raw transactions built and signed here, once, for the edge's batches: EIP-1559 (type 2) fields
 * RLP-encoded over bytes, signed with the native signer (protocol/signature.ts), sent with
 * eth_sendRawTransaction. ethers' path through a Wallet turned every ~40 kB batch into hex strings
 * a dozen times (checks, RLP, keccak in JS over hex, the sender recovered again from the signed
 * bytes): the largest part of the edge's CPU a session (docs/BENCHMARKS.md, bench:edge). The bytes
 * here are those ethers signs (test/contracts-rawtx.test.ts holds them to it).
 *
 * Calldata for a function of one `bytes` argument (settleBatch, reserveBatch) is built as bytes too.
 */
import { keccak_256 } from '../protocol/keccak.js';
import { signatureBackend } from '../protocol/signature.js';

/** The fields of a type-2 transaction. */
export interface Eip1559Fields {
  chainId: bigint;
  nonce: bigint;
  maxPriorityFeePerGas: bigint;
  maxFeePerGas: bigint;
  gasLimit: bigint;
  /** 0x address. */
  to: string;
  value: bigint;
  data: Uint8Array;
}

export interface SignedTx {
  /** The serialized signed transaction, 0x hex (what eth_sendRawTransaction takes). */
  raw: string;
  /** Its hash, 0x hex lowercase. */
  hash: string;
  nonce: bigint;
}

/** An unsigned integer as RLP wants it: big-endian, no leading zeros (0 is empty). */
export function intBytes(n: bigint): Uint8Array {
  if (n < 0n) throw new Error(`RLP integers are unsigned; got ${n}`);
  if (n === 0n) return new Uint8Array(0);
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return Buffer.from(hex, 'hex');
}

function lengthPrefix(length: number, short: number): Uint8Array {
  if (length < 56) return Uint8Array.of(short + length);
  const len = intBytes(BigInt(length));
  const out = new Uint8Array(1 + len.length);
  out[0] = short + 55 + len.length;
  out.set(len, 1);
  return out;
}

export type RlpItem = Uint8Array | RlpItem[];

/** RLP (the Ethereum yellow paper's appendix B) of bytes and lists of them. */
export function rlpEncode(item: RlpItem): Uint8Array {
  if (item instanceof Uint8Array) {
    if (item.length === 1 && (item[0] ?? 0) < 0x80) return item;
    return Buffer.concat([lengthPrefix(item.length, 0x80), item]);
  }
  const body = Buffer.concat(item.map(rlpEncode));
  return Buffer.concat([lengthPrefix(body.length, 0xc0), body]);
}

const hex = (b: Uint8Array) => `0x${Buffer.from(b).toString('hex')}`;

function fieldList(tx: Eip1559Fields): RlpItem[] {
  if (!/^0x[0-9a-fA-F]{40}$/.test(tx.to)) throw new Error(`not an address: ${tx.to}`);
  return [
    intBytes(tx.chainId),
    intBytes(tx.nonce),
    intBytes(tx.maxPriorityFeePerGas),
    intBytes(tx.maxFeePerGas),
    intBytes(tx.gasLimit),
    Buffer.from(tx.to.slice(2), 'hex'),
    intBytes(tx.value),
    tx.data,
    [], // access list
  ];
}

/** Signs a type-2 transaction with `secretKey` (32 bytes): the raw bytes and the hash, computed once. */
export function signEip1559(tx: Eip1559Fields, secretKey: Uint8Array): SignedTx {
  const fields = fieldList(tx);
  const unsigned = Buffer.concat([Uint8Array.of(2), rlpEncode(fields)]);
  const sig = signatureBackend().sign(keccak_256(unsigned), secretKey);
  const yParity = BigInt((sig[64] ?? 27) - 27);
  const r = BigInt(hex(sig.subarray(0, 32)));
  const s = BigInt(hex(sig.subarray(32, 64)));
  const raw = Buffer.concat([
    Uint8Array.of(2),
    rlpEncode([...fields, intBytes(yParity), intBytes(r), intBytes(s)]),
  ]);
  return { raw: hex(raw), hash: hex(keccak_256(raw)), nonce: tx.nonce };
}

/**
 * Calldata of `selector(bytes)`: the selector, the argument's offset (32), its length, the bytes
 * zero-padded to a multiple of 32 (the ABI's encoding of a lone dynamic `bytes`).
 */
export function bytesCalldata(selector: string, arg: Uint8Array): Uint8Array {
  const padded = Math.ceil(arg.length / 32) * 32;
  const out = new Uint8Array(4 + 64 + padded);
  out.set(Buffer.from(selector.slice(2), 'hex'), 0);
  out[4 + 31] = 0x20;
  const len = intBytes(BigInt(arg.length));
  out.set(len, 4 + 64 - len.length);
  out.set(arg, 4 + 64);
  return out;
}

/** The `bytes` of an event's data holding one `bytes` (offset ‖ length ‖ bytes), from its hex. */
export function bytesFromEventData(data: string): Uint8Array {
  const b = Buffer.from(data.startsWith('0x') ? data.slice(2) : data, 'hex');
  if (b.length < 64) throw new Error('event data too short for one bytes argument');
  const offset = Number(BigInt(hex(b.subarray(0, 32))));
  const length = Number(BigInt(hex(b.subarray(offset, offset + 32))));
  if (offset + 32 + length > b.length) throw new Error('event data cut short');
  return b.subarray(offset + 32, offset + 32 + length);
}
