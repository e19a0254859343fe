import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildVectors } from '../protocol/vectors.js';

const run = promisify(execFile);
const P2PEV = new URL('../bin/p2pev.mjs', import.meta.url).pathname;

async function p2pev(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('node', [P2PEV, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('p2pev msg', () => {
  const vectors = buildVectors();

  it('decodes every vector envelope and recovers its signer', async () => {
    const { chainId, verifyingContract } = vectors[0]!.envelope.domain;
    for (const v of vectors) {
      const out = await p2pev(
        'msg',
        'decode',
        v.envelope.hex,
        '--chain-id',
        chainId,
        '--contract',
        verifyingContract,
      );
      expect(out.code).toBe(0);
      const json = JSON.parse(out.stdout);
      expect(json.type).toBe(v.name);
      expect(json.signer).toBe(v.envelope.signer);
      const { signer: _s, signature: _sig, ...fields } = json;
      expect(fields).toEqual(v.fields);
    }
  }, 120_000);

  it('encodes JSON back to the vector bytes', async () => {
    const v = vectors.find((x) => x.name === 'chargeProvided')!;
    const out = await p2pev('msg', 'encode', JSON.stringify(v.fields));
    expect(out.stdout.trim()).toBe(v.hex);
  });

  it('says what is wrong and where, in one line, with a non-zero exit', async () => {
    const out = await p2pev('msg', 'decode', '0x9211');
    expect(out.code).not.toBe(0);
    expect(out.stderr.trim().split('\n')).toHaveLength(1);
    expect(out.stderr).toMatch(/ev: truncated.*at byte 1/);
    const bad = await p2pev('msg', 'encode', '{"type":"rating","txid":"0x00"}');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/txid: must be 0x and 64 hex digits/);
  });
});
