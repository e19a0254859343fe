// A short-lived process that opens one keystore and hands its key to its parent (agent/core/keys.ts).
// scrypt at a device's cost (N = 2^17) needs 128 MB of working memory; here it raises this
// process's peak, not the long-lived agent's. The keystore and its password come on stdin, the key
// goes back on stdout, both as one JSON line: never argv (visible in ps), never a log.
// Plain JavaScript so that it runs the same from the sources (tsx) and from dist/.
//
// A scrypt keystore (what `p2pev keys new` writes) is opened by Web3 Secret Storage v3 as written:
// OpenSSL's scrypt and AES-128-CTR (node:crypto), the MAC with keccak-256 (@noble/hashes), the
// address from OpenSSL's secp256k1; loading ethers for it took ~0.2–0.3 s of the device's start.
// Any other kind (pbkdf2) goes through ethers' decryptKeystoreJson.
import { createDecipheriv, createECDH, scrypt as nodeScrypt, timingSafeEqual } from 'node:crypto';
import { keccak_256 } from '@noble/hashes/sha3.js';

/** OpenSSL's scrypt: the same bytes as ethers' JS one (scrypt is scrypt), fast without the JIT. */
const scrypt = (password, salt, N, r, p, dkLen) =>
  new Promise((resolve, reject) =>
    nodeScrypt(password, salt, dkLen, { N, r, p, maxmem: 2 * 128 * N * r * p + (1 << 20) }, (err, key) =>
      err ? reject(err) : resolve(new Uint8Array(key)),
    ),
  );

const hex = (s) => Buffer.from(String(s).replace(/^0x/i, ''), 'hex');

/** The key of a Web3 Secret Storage v3 keystore with scrypt, or undefined for another kind. */
async function openScrypt(text, password) {
  const data = JSON.parse(text);
  const c = data.crypto ?? data.Crypto;
  if (c?.kdf !== 'scrypt' || c.cipher !== 'aes-128-ctr') return undefined;
  const { n, r, p, dklen, salt } = c.kdfparams;
  // ethers takes a string password as its UTF-8 bytes in NFKC (ethers wallet/utils getPassword).
  const key = await scrypt(Buffer.from(password.normalize('NFKC'), 'utf8'), hex(salt), n, r, p, dklen);
  const ciphertext = hex(c.ciphertext);
  const mac = keccak_256(Buffer.concat([key.subarray(16, 32), ciphertext]));
  if (!timingSafeEqual(Buffer.from(mac), hex(c.mac))) throw new Error('wrong password');
  const decipher = createDecipheriv('aes-128-ctr', key.subarray(0, 16), hex(c.cipherparams.iv));
  const privateKey = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  const ecdh = createECDH('secp256k1');
  ecdh.setPrivateKey(privateKey);
  const address = `0x${Buffer.from(keccak_256(ecdh.getPublicKey().subarray(1)))
    .subarray(12)
    .toString('hex')}`;
  if (data.address && hex(data.address).toString('hex') !== address.slice(2))
    throw new Error('the keystore address does not match its key');
  return { address, privateKey: `0x${privateKey.toString('hex')}` };
}

/** Any other keystore: ethers, with OpenSSL's scrypt registered as agent/core/keys.ts does. */
async function openWithEthers(text, password) {
  const { decryptKeystoreJson, scrypt: ethersScrypt } = await import('ethers');
  ethersScrypt.register(scrypt);
  const account = await decryptKeystoreJson(text, password);
  return { address: account.address.toLowerCase(), privateKey: account.privateKey };
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let answer;
try {
  const { json, password } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  answer = (await openScrypt(json, password)) ?? (await openWithEthers(json, password));
} catch {
  // Nothing of the input in the answer: it holds the password.
  answer = { error: 'cannot decrypt' };
}
process.stdout.write(`${JSON.stringify(answer)}\n`);
