/**
 * The native modules the field depends on really load from this install (npm runs no install
 * scripts here unless package.json's allowScripts says so): a missing binding must fail a test,
 * not show up on a Pi.
 */
import { createRequire } from 'node:module';
import * as cbor from 'cbor-x';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);

describe('native modules', () => {
  it('cbor-extract is built and cbor-x uses it', () => {
    expect(typeof require('cbor-extract').extractStrings).toBe('function');
    expect(cbor.isNativeAccelerationEnabled).toBe(true);
  });

  it("secp256k1's libsecp256k1 binding loads through node-gyp-build (prebuilt for linux x64), and signatures use it", async () => {
    const { loadNativeBackend, signatureBackendInfo } = await import('../protocol/signature.js');
    expect(loadNativeBackend()).not.toBeInstanceOf(Error);
    expect(signatureBackendInfo().name).toBe(process.env.P2PEV_SIGNATURE_BACKEND ?? 'libsecp256k1');
  });

  it("serialport's binding loads (prebuilt for linux x64, arm and arm64)", async () => {
    const { autoDetect } = require('@serialport/bindings-cpp');
    const binding = autoDetect();
    expect(typeof binding.open).toBe('function');
  });
});
