/**
 * The sim's chain node leaves nothing on disk (sim/chain.ts, `--max-persisted-states 0`). anvil
 * writes the block states it evicts from memory under $HOME/.foundry/anvil/tmp and leaves them
 * there when it is killed: ~700 MB for 3,000 empty blocks; a day of sims and tests filled this
 * machine's disk with 60 GB of them. Real anvil, its HOME pointed at a fresh directory.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startAnvil } from '../sim/chain.js';

/** Bytes of every file below `dir` (0 when it does not exist). */
function bytesBelow(dir: string): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e);
    const st = statSync(p);
    total += st.isDirectory() ? bytesBelow(p) : st.size;
  }
  return total;
}

async function rpc(url: string, method: string, params: unknown[]): Promise<unknown> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = (await res.json()) as { result?: unknown; error?: { message: string } };
  if (body.error) throw new Error(body.error.message);
  return body.result;
}

describe("the sim's chain node", () => {
  const home = mkdtempSync(join(tmpdir(), 'p2pev-anvil-home-'));
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it('keeps no block states on disk, however many blocks it mines, and leaves nothing when killed', async () => {
    const saved = process.env.HOME;
    process.env.HOME = home;
    let anvil: Awaited<ReturnType<typeof startAnvil>> | undefined;
    try {
      anvil = await startAnvil();
    } finally {
      process.env.HOME = saved;
    }
    try {
      // 3,072 blocks, each with a state of its own: far past what anvil keeps in memory.
      for (let i = 0; i < 3; i++) await rpc(anvil.rpcUrl, 'anvil_mine', ['0x400']);
      expect(await rpc(anvil.rpcUrl, 'eth_blockNumber', [])).toBe('0xc00');
      // The latest state still answers.
      expect(
        BigInt((await rpc(anvil.rpcUrl, 'eth_getBalance', [anvil.accounts[0]!.address, 'latest'])) as string),
      ).toBeGreaterThan(0n);
      await new Promise((r) => setTimeout(r, 1000));
      expect(bytesBelow(join(home, '.foundry'))).toBe(0);
    } finally {
      await anvil.stop();
    }
    expect(bytesBelow(join(home, '.foundry'))).toBe(0);
  });
});
