// A short-lived process that opens one keystore and hands its key to its parent (agent/core/keys.ts).
// scrypt at a device's cost (N = 2^17) needs 128 MB of working memory; here it raises this
// process's peak, not the long-lived agent's. The keystore and its password come on stdin, the key
// goes back on stdout, both as one JSON line: never argv (visible in ps), never a log.
// Plain JavaScript so that it runs the same from the sources (tsx) and from dist/.
import { scrypt as nodeScrypt } from 'node:crypto';
import { decryptKeystoreJson, scrypt } from 'ethers';

// OpenSSL's scrypt, as agent/core/keys.ts registers it: the same bytes as ethers' JS one, fast
// without the optimizing compiler.
scrypt.register(
  (password, salt, N, r, p, dkLen) =>
    new Promise((resolve, reject) =>
      nodeScrypt(password, salt, dkLen, { N, r, p, maxmem: 2 * 128 * N * r * p + (1 << 20) }, (err, key) =>
        err ? reject(err) : resolve(new Uint8Array(key)),
      ),
    ),
);

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let answer;
try {
  const { json, password } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const account = await decryptKeystoreJson(json, password);
  answer = { address: account.address.toLowerCase(), privateKey: account.privateKey };
} catch {
  // Nothing of the input in the answer: it holds the password.
  answer = { error: 'cannot decrypt' };
}
process.stdout.write(`${JSON.stringify(answer)}\n`);
