/**
 * Keystores: a device's (scrypt N = 2^17, 128 MB of working memory) opens in a short-lived child
 * process that gets the keystore and password on its stdin and hands the key back on its stdout;
 * a light one (the sim's) opens in the process. Both give the key, and a wrong password the same
 * clear error, with nothing secret in it.
 */
import type { ChildProcess } from 'node:child_process';
import { createCipheriv, pbkdf2Sync, randomBytes, randomUUID } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { afterAll, describe, expect, it } from 'vitest';
import { CHILD_KDF_BYTES, createKeystore, openKeystore, openKeystoreInChild } from '../agent/core/keys.js';

const dir = mkdtempSync(join(tmpdir(), 'p2pev-keys-'));
const privateKey = `0x${'5a'.repeat(32)}`;
const password = 'correct horse battery staple';

afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Every child process this test file starts (node publishes each spawn on this channel; the
// channel is held here, since node 20 may collect an unreferenced one with its subscribers).
const children: ChildProcess[] = [];
const spawns = channel('child_process');
spawns.subscribe((m) => children.push((m as { process: ChildProcess }).process));

describe('keystores', () => {
  it("a device's keystore (N = 2^17) opens through the child: the key, and a clear error for a wrong password", async () => {
    const path = join(dir, 'device.json');
    const address = await createKeystore(path, password, { privateKey });
    expect(128 * 131072 * 8).toBeGreaterThanOrEqual(CHILD_KDF_BYTES);
    const before = children.length;
    const key = await openKeystore(path, password);
    expect(key).toEqual({ address: address.toLowerCase(), privateKey });
    // It went through the child, and neither the password nor the key is on its command line.
    const spawned = children.slice(before).map((c) => c.spawnargs.join(' '));
    expect(spawned).toEqual([expect.stringMatching(/keystore-child\.mjs$/)]);
    expect(spawned[0]).not.toContain(password);
    expect(spawned[0]).not.toContain(privateKey.slice(2));
    const wrong = await openKeystore(path, 'wrong').catch((e: Error) => e);
    expect(wrong).toBeInstanceOf(Error);
    expect((wrong as Error).message).toBe(`cannot decrypt ${path}: wrong password?`);
  }, 60_000);

  it('the child opens a light keystore too, and the in-process path gives the same key', async () => {
    const path = join(dir, 'light.json');
    await createKeystore(path, password, { privateKey, scryptN: 1024 });
    const before = children.length;
    const inProcess = await openKeystore(path, password);
    expect(children.length, 'a light keystore opens in the process').toBe(before);
    const inChild = await openKeystoreInChild(path, password);
    expect(inChild).toEqual(inProcess);
    await expect(openKeystoreInChild(path, `${password}!`)).rejects.toThrow(/wrong password\?$/);
  }, 60_000);

  it('the child opens a keystore as ethers does: a password in any Unicode form, the address checked', async () => {
    const path = join(dir, 'unicode.json');
    // Composed (NFC) here; ethers and the child both stretch its NFKC bytes.
    const unicode = 'p\u00e4ssw\u00f6rd \u2126 \ufb01';
    await createKeystore(path, unicode, { privateKey, scryptN: 1024 });
    const inProcess = await openKeystore(path, unicode);
    expect(await openKeystoreInChild(path, unicode)).toEqual(inProcess);
    expect(await openKeystoreInChild(path, unicode.normalize('NFD'))).toEqual(inProcess);
    // A keystore whose address is not its key's is refused, not opened as someone else.
    const text = JSON.parse(readFileSync(path, 'utf8'));
    text.address = '0000000000000000000000000000000000000001';
    writeFileSync(path, JSON.stringify(text), { mode: 0o600 });
    await expect(openKeystoreInChild(path, unicode)).rejects.toThrow(/wrong password\?$/);
  }, 60_000);

  it('the child opens a PBKDF2 keystore (as geth may write one) through ethers', async () => {
    const path = join(dir, 'pbkdf2.json');
    const salt = randomBytes(32);
    const iv = randomBytes(16);
    const dk = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, 1024, 32, 'sha256');
    const cipher = createCipheriv('aes-128-ctr', dk.subarray(0, 16), iv);
    const ciphertext = Buffer.concat([
      cipher.update(Buffer.from(privateKey.slice(2), 'hex')),
      cipher.final(),
    ]);
    const mac = Buffer.from(keccak_256(Buffer.concat([dk.subarray(16, 32), ciphertext]))).toString('hex');
    const crypto = {
      cipher: 'aes-128-ctr',
      cipherparams: { iv: iv.toString('hex') },
      ciphertext: ciphertext.toString('hex'),
      kdf: 'pbkdf2',
      kdfparams: { c: 1024, dklen: 32, prf: 'hmac-sha256', salt: salt.toString('hex') },
      mac,
    };
    writeFileSync(path, JSON.stringify({ version: 3, id: randomUUID(), crypto }), { mode: 0o600 });
    const key = await openKeystoreInChild(path, password);
    expect(key.privateKey).toBe(privateKey);
    await expect(openKeystoreInChild(path, `${password}!`)).rejects.toThrow(/wrong password\?$/);
  }, 60_000);
});
