/**
 * Device keys in encrypted JSON keystores (ethers, the Web3 Secret Storage format), mode 0600.
 * The password comes from an environment variable or a file, never from the config or a log.
 */
import { spawn } from 'node:child_process';
import { scrypt as nodeScrypt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { decryptKeystoreJson, encryptKeystoreJson, getAddress, isKeystoreJson, scrypt, Wallet } from 'ethers';

export interface DeviceKey {
  address: string;
  /** 0x-hex private key, held in memory only. */
  privateKey: string;
}

export interface PasswordSource {
  passwordEnv?: string;
  passwordFile?: string;
}

let nativeScrypt = false;

/**
 * ethers' keystores derive their key with OpenSSL's scrypt (node:crypto) instead of ethers' pure
 * JS one: the same bytes, as fast as the JS one with the JIT and independent of it (device agents
 * run without V8's optimizing compiler, where the JS scrypt at N = 2^17 takes ~30 s instead of
 * ~1 s). Its working memory (128·N·r bytes: 128 MB at the default cost) is freed as soon as it
 * returns rather than at some later garbage collection.
 */
function useNativeScrypt(): void {
  if (nativeScrypt) return;
  nativeScrypt = true;
  try {
    scrypt.register(
      (password, salt, N, r, p, dkLen) =>
        new Promise<Uint8Array>((resolve, reject) =>
          nodeScrypt(
            password,
            salt,
            dkLen,
            { N, r, p, maxmem: 2 * 128 * N * r * p + (1 << 20) },
            (err, key) => (err ? reject(err) : resolve(new Uint8Array(key))),
          ),
        ),
    );
  } catch {
    // ethers.lock() was called: its own scrypt stays.
  }
}

export function readPassword(src: PasswordSource): string {
  if (src.passwordFile) {
    try {
      return readFileSync(src.passwordFile, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new Error(
        `cannot read the keystore password file ${src.passwordFile}: ${(err as NodeJS.ErrnoException).code}`,
      );
    }
  }
  const name = src.passwordEnv ?? 'P2PEV_KEY_PASSWORD';
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`the keystore password is not set: export ${name}=… or give a password file`);
  }
  return value;
}

/**
 * scrypt cost: ethers' default (2^17) takes seconds on a Pi, once per start; tests and the sim
 * pass a lighter one so that dozens of agents can start.
 */
export async function createKeystore(
  path: string,
  password: string,
  opts: { privateKey?: string; scryptN?: number } = {},
): Promise<string> {
  if (existsSync(path)) throw new Error(`${path} exists already; refusing to overwrite a key`);
  useNativeScrypt();
  const wallet = opts.privateKey ? new Wallet(opts.privateKey) : Wallet.createRandom();
  const json = await encryptKeystoreJson(
    { address: wallet.address, privateKey: wallet.privateKey },
    password,
    {
      scrypt: { N: opts.scryptN ?? 131072 },
    },
  );
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, json, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return wallet.address;
}

/** The address in a keystore file, without the password (it is stored in the clear). */
export function keystoreAddress(path: string): string {
  const json = readKeystoreText(path);
  return getAddress(`0x${JSON.parse(json).address}`);
}

function readKeystoreText(path: string): string {
  let json: string;
  try {
    json = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(
      `cannot read keystore ${path}: ${(err as NodeJS.ErrnoException).code}; create one with p2pev keys new`,
    );
  }
  if (!isKeystoreJson(json)) throw new Error(`${path} is not an encrypted JSON keystore`);
  return json;
}

/** scrypt's working memory (128·N·r·p bytes) above which a keystore is opened in a child process. */
export const CHILD_KDF_BYTES = 16 * 1024 * 1024;

function kdfBytes(json: string): number {
  type Kdf = { kdfparams?: { n?: number; r?: number; p?: number } };
  const data = JSON.parse(json) as { crypto?: Kdf; Crypto?: Kdf };
  // ethers writes `Crypto`, the Web3 Secret Storage definition `crypto`.
  const params = (data.crypto ?? data.Crypto)?.kdfparams;
  return 128 * (params?.n ?? 0) * (params?.r ?? 8) * (params?.p ?? 1);
}

export async function openKeystore(path: string, password: string): Promise<DeviceKey> {
  const json = readKeystoreText(path);
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077)
    throw new Error(`${path} is readable by others (mode ${mode.toString(8)}); chmod 600 ${path}`);
  // A device's keystore (N = 2^17: 128 MB for scrypt) opens in a short-lived child process, so the
  // agent's own peak memory never holds the KDF's; a light one (the sim's, tests') opens here.
  if (kdfBytes(json) >= CHILD_KDF_BYTES) return openInChild(path, json, password);
  useNativeScrypt();
  try {
    const account = await decryptKeystoreJson(json, password);
    return { address: account.address.toLowerCase(), privateKey: account.privateKey };
  } catch {
    throw new Error(`cannot decrypt ${path}: wrong password?`);
  }
}

/** Opens a keystore in the child process whatever its cost (tests; `openKeystore` decides). */
export function openKeystoreInChild(path: string, password: string): Promise<DeviceKey> {
  return openInChild(path, readKeystoreText(path), password);
}

/**
 * Runs agent/core/keystore-child.mjs: the keystore and password go in on its stdin, the key comes
 * back on its stdout (pipes, never argv or the environment), and the child exits, its scrypt
 * memory with it.
 */
function openInChild(path: string, json: string, password: string): Promise<DeviceKey> {
  const script = new URL('./keystore-child.mjs', import.meta.url);
  return new Promise((resolve, reject) => {
    // No environment: the child needs none, and the password's variable stays here.
    const child = spawn(process.execPath, [script.pathname], { stdio: ['pipe', 'pipe', 'pipe'], env: {} });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) =>
      reject(new Error(`cannot start the keystore opener (${e.message}) for ${path}`)),
    );
    child.on('close', (code) => {
      let answer: { address?: string; privateKey?: string; error?: string } = {};
      try {
        answer = JSON.parse(Buffer.concat(out).toString('utf8'));
      } catch {
        // Below: no answer.
      }
      if (answer.address && answer.privateKey)
        resolve({ address: answer.address, privateKey: answer.privateKey });
      else if (answer.error) reject(new Error(`cannot decrypt ${path}: wrong password?`));
      else
        reject(
          new Error(
            `the keystore opener for ${path} exited with code ${code} without a key: ${Buffer.concat(err).toString('utf8').trim().split('\n')[0] || 'no message'}; is there memory for scrypt (128 MB)?`,
          ),
        );
    });
    child.stdin.end(`${JSON.stringify({ json, password })}\n`);
  });
}
