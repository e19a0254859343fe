/**
 * Test vectors: for every message name, the decoded fields, the exact bytes and a signed
 * envelope. `protocol/vectors.json` is generated from here (`npm run vectors`) and committed;
 * the contract tests read it, so TypeScript and Solidity agree byte for byte.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decode, encode } from './codec.js';
import { addressOf, type Domain, signEnvelope } from './envelope.js';
import { toHex } from './hex.js';
import { messageToJson } from './json.js';
import { MESSAGE_NAMES, type MessageInput, type MessageName } from './schema.js';
import { computeTxId } from './terms.js';

/** Well-known test keys (never use outside tests). */
export const VECTOR_KEYS = {
  ev: `0x${'01'.repeat(32)}`,
  hcs: `0x${'02'.repeat(32)}`,
  server: `0x${'03'.repeat(32)}`,
} as const;

/** anvil's chain id, and the address of the first contract deployed by its first account. */
export const VECTOR_DOMAIN: Domain = {
  chainId: 31337n,
  verifyingContract: '0x5fbdb2315678afecb367f032d93f642f64180aa3',
};

const ev = addressOf(VECTOR_KEYS.ev);
const hcs = addressOf(VECTOR_KEYS.hcs);
const server = addressOf(VECTOR_KEYS.server);
export const VECTOR_TERMS = {
  ev,
  hcs,
  seq: 7n,
  priceWeiPerKWh: 300_000_000_000_000n, // 0.0003 ether per kWh
  maxEnergyWh: 40_000n,
  settleBy: 1_900_000_000n,
};
const txid = computeTxId(VECTOR_TERMS, VECTOR_DOMAIN);

/** One representative message of every name, and which key signs it. */
export const SAMPLES: Record<MessageName, { signer: keyof typeof VECTOR_KEYS; message: MessageInput }> = {
  registration: {
    signer: 'hcs',
    message: {
      type: 'registration',
      role: 2,
      member: hcs,
      server,
      identityCommitment: `0x${'c0'.repeat(32)}`,
      optional: { lat: 52.520008, lon: 13.404954, price: '300000000000000', powerW: 11000 },
    },
  },
  reqAuthInfo: {
    signer: 'ev',
    message: { type: 'reqAuthInfo', requester: ev, server, subject: hcs, nonce: 42n },
  },
  verification: {
    signer: 'server',
    message: { type: 'verification', status: 2, server, requester: ev, subject: hcs, role: 2, nonce: 42n },
  },
  search: {
    signer: 'ev',
    message: { type: 'search', requester: ev, server, latitude: 52.52, longitude: 13.405, radiusM: 5000 },
  },
  suggestion: {
    signer: 'server',
    message: {
      type: 'suggestion',
      server,
      requester: ev,
      stations: [
        { hcs, distanceM: 850, meanRating: 450, priceWeiPerKWh: 300_000_000_000_000n },
        { hcs: server, distanceM: 2400, meanRating: 380, priceWeiPerKWh: 250_000_000_000_000n },
      ],
    },
  },
  request: { signer: 'ev', message: { type: 'request', status: 0, sender: ev, receiver: hcs } },
  response: { signer: 'hcs', message: { type: 'response', status: 1, sender: hcs, receiver: ev } },
  mutual: {
    signer: 'server',
    message: {
      type: 'mutual',
      server,
      ev,
      hcs,
      txid,
      optional: { maxWh: 40000, price: '300000000000000', seq: 7, settleBy: 1900000000 },
    },
  },
  completion: { signer: 'ev', message: { type: 'completion', ev, hcs, txid } },
  termination: { signer: 'hcs', message: { type: 'termination', ev, hcs, txid, status: 4 } },
  chargeReceived: {
    signer: 'ev',
    message: {
      type: 'chargeReceived',
      ev,
      hcs,
      txid,
      energyWh: 20_950n,
      optional: {
        e: 1_020_950,
        m: 'SDM630-EV-0001',
        p: 'sdm630',
        s: 1_000_000,
        st: 1,
        t0: 1_800_000_000,
        t1: 1_800_007_200,
      },
    },
  },
  chargeProvided: {
    signer: 'hcs',
    message: {
      type: 'chargeProvided',
      ev,
      hcs,
      txid,
      energyWh: 21_000n,
      optional: {
        e: 5_021_000,
        m: 'B23-1234567',
        p: 'abb-b23',
        s: 5_000_000,
        st: 1,
        t0: 1_800_000_000,
        t1: 1_800_007_200,
      },
    },
  },
  amount: {
    signer: 'server',
    message: {
      type: 'amount',
      server,
      txid,
      sender: ev,
      receiver: hcs,
      amountWei: 6_285_000_000_000_000n,
      paymentStatus: 1,
    },
  },
  rating: {
    signer: 'ev',
    message: { type: 'rating', txid, sender: ev, receiver: hcs, rating: 4, comment: 'quick, ok' },
  },
  transaction: {
    signer: 'server',
    message: {
      type: 'transaction',
      txid,
      sender: ev,
      receiver: hcs,
      amountWei: 6_285_000_000_000_000n,
      paymentStatus: 2,
      rating: 4,
      comment: 'quick, ok',
    },
  },
};

export interface Vector {
  name: MessageName;
  fields: Record<string, unknown>;
  hex: string;
  envelope: {
    signerRole: string;
    privateKey: string;
    signer: string;
    domain: { chainId: string; verifyingContract: string };
    hex: string;
  };
}

export function buildVectors(): Vector[] {
  return MESSAGE_NAMES.map((name) => {
    const { signer, message } = SAMPLES[name];
    const bytes = encode(message);
    const key = VECTOR_KEYS[signer];
    return {
      name,
      fields: messageToJson(decode(bytes)),
      hex: toHex(bytes),
      envelope: {
        signerRole: signer,
        privateKey: key,
        signer: addressOf(key),
        domain: {
          chainId: VECTOR_DOMAIN.chainId.toString(),
          verifyingContract: VECTOR_DOMAIN.verifyingContract,
        },
        hex: toHex(signEnvelope(bytes, key, VECTOR_DOMAIN)),
      },
    };
  });
}

export const VECTORS_PATH = fileURLToPath(new URL('./vectors.json', import.meta.url));

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(
    VECTORS_PATH,
    `${JSON.stringify({ txid, terms: messageToJson(VECTOR_TERMS as never), vectors: buildVectors() }, null, 2)}\n`,
  );
  console.log(`wrote ${VECTORS_PATH}`);
}
