/**
 * Device keys in encrypted JSON keystores (ethers, the Web3 Secret Storage format), mode 0600.
 * The password comes from an environment variable or a file, never from the config or a log.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { decryptKeystoreJson, encryptKeystoreJson, getAddress, isKeystoreJson, Wallet } from 'ethers';

export interface DeviceKey {
  address: string;
  /** 0x-hex private key, held in memory only. */
  privateKey: string;
}

export interface PasswordSource {
  passwordEnv?: string;
  passwordFile?: string;
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
  try {
    const account = await decryptKeystoreJson(json, password);
    return { address: account.address.toLowerCase(), privateKey: account.privateKey };
  } catch {
    throw new Error(`cannot decrypt ${path}: wrong password?`);
  }
}
