/**
 * Keystores: a device's (scrypt N = 2^17, 128 MB of working memory) opens in a short-lived child
 * process that gets the keystore and password on its stdin and hands the key back on its stdout;
 * a light one (the sim's) opens in the process. Both give the key, and a wrong password the same
 * clear error, with nothing secret in it.
 */
import type { ChildProcess } from 'node:child_process';
import { channel } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
});
