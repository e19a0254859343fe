/**
 * `npm run bench:protocol`: round trips per second of the packed codec against cbor-x encoding
 * the same fields as a map, the sizes of both (and of JSON), and signatures per second.
 * Figures, not assertions; the last line is one JSON object. The goal is the size (at most half
 * of cbor-x); the round-trip rate is reported beside the signer-recovery rate that bounds every
 * receiver, and has no goal of its own.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { Decoder, Encoder } from 'cbor-x';
import {
  decode,
  encode,
  loadNativeBackend,
  type MessageInput,
  messageDigest,
  loadNobleBackend,
  openEnvelope,
  recoverAddress,
  type SignatureBackend,
  signatureBackend,
  signEnvelope,
} from '../protocol/index.js';
import { messageToJson } from '../protocol/json.js';
import { SAMPLES, VECTOR_DOMAIN, VECTOR_KEYS } from '../protocol/vectors.js';

const nobleBackend = await loadNobleBackend();

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true });
const cborDecoder = new Decoder({ useRecords: false, mapsAsObjects: true });

/**
 * Runs `fn` for about `ms` milliseconds (after a warm-up) and returns operations per second of
 * wall time and, from the same run, per second of this process's CPU time (steadier when other
 * processes share the cores).
 */
function rates(fn: () => void, ms = 1500): { wall: number; cpu: number } {
  for (let i = 0; i < 2000; i++) fn();
  let n = 0;
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 200; i++) fn();
    n += 200;
    now = performance.now();
  }
  const cpu = process.cpuUsage(cpuStart);
  return { wall: (n * 1000) / (now - start), cpu: (n * 1e6) / (cpu.user + cpu.system) };
}
const rate = (fn: () => void, ms?: number): number => rates(fn, ms).wall;

// The records the bench moves: the fixed fields of the two busiest settlement messages.
const records = (['chargeProvided', 'transaction'] as const).map((name) => {
  const { optional: _, ...fields } = SAMPLES[name].message as Record<string, unknown>;
  return { name, fields: fields as unknown as MessageInput };
});

const rows: Record<string, number | string>[] = [];
let packedOps = 0;
let cborOps = 0;
let packedCpuOps = 0;
let cborCpuOps = 0;
let packedBytes = 0;
let cborBytes = 0;
let jsonBytes = 0;
for (const { name, fields } of records) {
  const packed = encode(fields);
  const asCbor = cbor.encode(fields);
  const asJson = Buffer.byteLength(JSON.stringify(messageToJson(decode(packed))));
  const { wall: p, cpu: pCpu } = rates(() => decode(encode(fields)));
  const { wall: c, cpu: cCpu } = rates(() => cborDecoder.decode(cbor.encode(fields)));
  rows.push({
    message: name,
    packedOpsPerSec: Math.round(p),
    cborOpsPerSec: Math.round(c),
    ratio: +(p / c).toFixed(2),
    cpuRatio: +(pCpu / cCpu).toFixed(2),
    packedBytes: packed.length,
    cborBytes: asCbor.length,
    jsonBytes: asJson,
  });
  packedOps += p / records.length;
  cborOps += c / records.length;
  packedCpuOps += pCpu / records.length;
  cborCpuOps += cCpu / records.length;
  packedBytes += packed.length / records.length;
  cborBytes += asCbor.length / records.length;
  jsonBytes += asJson / records.length;
}

const payload = encode(SAMPLES.chargeProvided.message);
const envelope = signEnvelope(payload, VECTOR_KEYS.hcs, VECTOR_DOMAIN);
const signPerSec = rate(() => signEnvelope(payload, VECTOR_KEYS.hcs, VECTOR_DOMAIN), 2000);
const verify = rates(() => openEnvelope(envelope, VECTOR_DOMAIN), 2000);
const verifyPerSec = verify.wall;
// Each backend alone: the digest computed once, then recovery (+ the address's keccak) per op.
const digest = messageDigest(payload, VECTOR_DOMAIN);
const signature = envelope.subarray(payload.length);
const recoverRate = (b: SignatureBackend) =>
  Math.round(rate(() => recoverAddress(signature, digest, 0, b), 1500));
const native = loadNativeBackend();
const recoverPerSecNative = native instanceof Error ? null : recoverRate(native);
const recoverPerSecNoble = recoverRate(nobleBackend);
// With a member's public key known (cached), a check could verify instead of recover: measured
// per backend. Verification does not bind v (the recovery id), which the contract's ecrecover
// depends on, so it would still need a recovery to refuse a flipped v (docs/BENCHMARKS.md).
const compact = signature.slice(0, 64);
const publicKey = secp256k1.Signature.fromBytes(Uint8Array.of(signature[64]! - 27, ...compact), 'recovered')
  .recoverPublicKey(digest)
  .toBytes(false);
const nativeAddon = (() => {
  const require = createRequire(import.meta.url);
  const addon = require('node-gyp-build')(dirname(require.resolve('secp256k1/package.json')));
  return new addon.Secp256k1() as { ecdsaVerify(sig: Uint8Array, msg: Uint8Array, pub: Uint8Array): number };
})();
const knownKeyPerSecNative = Math.round(
  rates(() => nativeAddon.ecdsaVerify(compact, digest, publicKey), 1500).cpu,
);
const knownKeyPerSecNoble = Math.round(
  rates(() => secp256k1.verify(compact, digest, publicKey, { prehash: false }), 1500).cpu,
);
const digestPerSec = rates(() => messageDigest(payload, VECTOR_DOMAIN), 1000).cpu;

console.table(rows);
console.log(
  `sign ${signPerSec.toFixed(0)}/s, verify (digest + recover signer) ${verifyPerSec.toFixed(0)}/s on one core with ${signatureBackend().name}`,
);
console.log(
  `per CPU-second: verify ${verify.cpu.toFixed(0)}; recover only: libsecp256k1 ${recoverPerSecNative ?? 'not loaded'}/s, noble-curves ${recoverPerSecNoble}/s; verify with a known key: libsecp256k1 ${knownKeyPerSecNative}/s, noble-curves ${knownKeyPerSecNoble}/s; EIP-712 digest ${digestPerSec.toFixed(0)}/s`,
);
console.log(
  `packed vs cbor-x: ${(packedBytes / cborBytes).toFixed(2)}x the size (goal: <= 0.5x) at ${(packedOps / cborOps).toFixed(2)}x the round-trip rate (no goal: signer recovery, ${verifyPerSec.toFixed(0)}/s, bounds every receiver)`,
);
console.log(
  JSON.stringify({
    packedOpsPerSec: Math.round(packedOps),
    cborOpsPerSec: Math.round(cborOps),
    rateRatio: +(packedOps / cborOps).toFixed(2),
    packedOpsPerCpuSec: Math.round(packedCpuOps),
    cborOpsPerCpuSec: Math.round(cborCpuOps),
    cpuRateRatio: +(packedCpuOps / cborCpuOps).toFixed(2),
    packedBytes: Math.round(packedBytes),
    cborBytes: Math.round(cborBytes),
    jsonBytes: Math.round(jsonBytes),
    sizeRatio: +(packedBytes / cborBytes).toFixed(2),
    signPerSec: Math.round(signPerSec),
    verifyPerSec: Math.round(verifyPerSec),
    verifyPerCpuSec: Math.round(verify.cpu),
    signatureBackend: signatureBackend().name,
    recoverPerSecNative,
    recoverPerSecNoble,
    knownKeyPerSecNative,
    knownKeyPerSecNoble,
    digestPerSec: Math.round(digestPerSec),
  }),
);
