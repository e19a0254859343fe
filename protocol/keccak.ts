/**
 * Keccak-256, the hash of every envelope digest (three per digest) and of every recovered signer's
 * address: after the curve itself, what an edge spent most of a message's CPU on (bench:edge: ~10 %
 * of its CPU in `@noble/hashes`' keccak). `hash-wasm`'s WebAssembly keccak gives the same bytes
 * ~9× faster on the short inputs hashed here (a 66-byte input: ~0.8 µs against ~7 µs); WebAssembly
 * runs on every Node this project supports (x64, arm64, armhf). Only its keccak module is loaded
 * (11 kB), not the package's index with every algorithm. Where WebAssembly is unavailable (node
 * run with --jitless) `@noble/hashes` hashes, with the same answers (test/protocol-keccak.test.ts).
 *
 * `P2PEV_KECCAK=noble` forces the portable one (tests, a comparison).
 */
import { createRequire } from 'node:module';
import { keccak_256 as nobleKeccak } from '@noble/hashes/sha3.js';

interface WasmKeccak {
  init(): unknown;
  update(data: Uint8Array): unknown;
  digest(format: 'binary'): Uint8Array;
}

export type KeccakBackendName = 'wasm' | 'noble';

async function wasmKeccak(): Promise<WasmKeccak | undefined> {
  if (process.env.P2PEV_KECCAK === 'noble') return undefined;
  try {
    const require = createRequire(import.meta.url);
    const mod = require('hash-wasm/dist/keccak.umd.min.js') as {
      createKeccak(bits: 256): Promise<WasmKeccak>;
    };
    return await mod.createKeccak(256);
  } catch {
    return undefined;
  }
}

// One instance for the process: its init-update-digest runs synchronously, so calls never interleave.
const wasm = await wasmKeccak();

/** Which keccak runs (for doctor-style reports and the benchmarks). */
export const keccakBackend: KeccakBackendName = wasm ? 'wasm' : 'noble';

/** The 32-byte Keccak-256 of `data` (Ethereum's keccak256, not NIST SHA3-256). */
export const keccak_256: (data: Uint8Array) => Uint8Array = wasm
  ? (data) => {
      wasm.init();
      wasm.update(data);
      return wasm.digest('binary');
    }
  : nobleKeccak;

/** The portable keccak, for the differential test. */
export { nobleKeccak };
