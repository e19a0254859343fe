/**
 * `p2pev msg decode|encode`: field diagnostics of captured traffic. Hex in, JSON out (and back).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { decode, encode } from './codec.js';
import { type Domain, openEnvelope, SIGNATURE_BYTES, signEnvelope } from './envelope.js';
import { DecodeError } from './errors.js';
import { fromHex, toHex } from './hex.js';
import { messageFromJson, messageToJson } from './json.js';

interface DomainOpts {
  chainId?: string;
  contract?: string;
}

function readArg(arg: string): string {
  return (arg === '-' ? readFileSync(0, 'utf8') : arg).trim();
}

function domainFrom(opts: DomainOpts): Domain | undefined {
  if (opts.chainId === undefined && opts.contract === undefined) return undefined;
  if (opts.chainId === undefined || opts.contract === undefined) {
    throw usage('give both --chain-id and --contract (the deployment the signature is bound to)');
  }
  if (!/^\d+$/.test(opts.chainId)) throw usage(`--chain-id ${opts.chainId} is not a decimal number`);
  if (!fromHex(opts.contract, 20))
    throw usage(`--contract ${opts.contract} is not a 0x address of 40 hex digits`);
  return { chainId: BigInt(opts.chainId), verifyingContract: opts.contract };
}

/** Decodes a message or a signed envelope; returns what `msg decode` prints. */
export function describeHex(hex: string, domain?: Domain): Record<string, unknown> {
  const bytes = fromHex(hex.replace(/\s+/g, ''));
  if (!bytes) throw new Error('input is not hex (0x optional, an even number of hex digits)');
  if (domain) {
    const opened = openEnvelope(bytes, domain);
    return {
      ...messageToJson(decode(opened.payload)),
      signer: opened.signer,
      signature: toHex(opened.signature),
    };
  }
  try {
    return messageToJson(decode(bytes));
  } catch (err) {
    // Not a bare message: perhaps an envelope whose signature we were not asked to check.
    if (bytes.length <= SIGNATURE_BYTES) throw err;
    try {
      const payload = decode(bytes.subarray(0, bytes.length - SIGNATURE_BYTES));
      return {
        ...messageToJson(payload),
        signature: toHex(bytes.subarray(bytes.length - SIGNATURE_BYTES)),
        signer: 'not checked: give --chain-id and --contract to recover it',
      };
    } catch {
      throw err;
    }
  }
}

/** A usage mistake: the CLI exits 2 for it (agent/cli.ts). */
const usage = (message: string) => Object.assign(new Error(message), { name: 'UsageError' });

export function registerMsgCommands(program: Command): void {
  const msg = program
    .command('msg')
    .description('Encode and decode wire messages (field diagnostics of captured traffic)');

  msg
    .command('decode')
    .description('Decode a message or signed envelope given as hex (or - for stdin); prints JSON')
    .argument('<hex>', 'the bytes as hex, or - to read them from stdin')
    .option('--chain-id <id>', 'chain id of the deployment, to recover the signer of an envelope')
    .option('--contract <address>', 'settlement contract address, to recover the signer of an envelope')
    .action((hex: string, opts: DomainOpts) => {
      try {
        process.stdout.write(`${JSON.stringify(describeHex(readArg(hex), domainFrom(opts)), null, 2)}\n`);
      } catch (err) {
        if (err instanceof DecodeError) throw new Error(`cannot decode: ${err.message}`);
        throw err;
      }
    });

  msg
    .command('encode')
    .description('Encode a message given as JSON (or - for stdin); prints hex')
    .argument(
      '<json>',
      'the message as JSON, e.g. {"type":"request","sender":"0x…","receiver":"0x…","status":0}',
    )
    .option(
      '--key-file <file>',
      'sign with the hex private key in this file (test keys; devices use their keystore)',
    )
    .option('--chain-id <id>', 'chain id of the deployment the signature is bound to')
    .option('--contract <address>', 'settlement contract address the signature is bound to')
    .action((json: string, opts: DomainOpts & { keyFile?: string }) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(readArg(json));
      } catch (err) {
        throw new Error(`input is not JSON: ${(err as Error).message}`);
      }
      const bytes = encode(messageFromJson(parsed));
      if (!opts.keyFile) {
        process.stdout.write(`${toHex(bytes)}\n`);
        return;
      }
      const domain = domainFrom(opts);
      if (!domain) throw usage('signing needs --chain-id and --contract');
      const key = readFileSync(opts.keyFile, 'utf8').trim();
      process.stdout.write(`${toHex(signEnvelope(bytes, key, domain))}\n`);
    });
}
