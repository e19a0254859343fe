/**
 * Device keys in encrypted JSON keystores (ethers, the Web3 Secret Storage format), mode 0600.
 * The password comes from an environment variable or a file, never from the config or a log.
 */
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

export async function openKeystore(path: string, password: string): Promise<DeviceKey> {
  const json = readKeystoreText(path);
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077)
    throw new Error(`${path} is readable by others (mode ${mode.toString(8)}); chmod 600 ${path}`);
  useNativeScrypt();
  try {
    const account = await decryptKeystoreJson(json, password);
    return { address: account.address.toLowerCase(), privateKey: account.privateKey };
  } catch {
    throw new Error(`cannot decrypt ${path}: wrong password?`);
  }
}
