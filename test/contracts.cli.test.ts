/**
 * `p2pev chain deploy|status` against a real anvil node, through commander as the CLI runs them.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerChainCommands } from '../contracts/cli.js';
import { probeChainId } from '../contracts/rpc.js';
import { freePort, type Anvil, startAnvil } from '../sim/chain.js';

let anvil: Anvil;
let dir: string;

beforeAll(async () => {
  anvil = await startAnvil({ accounts: 2 });
  dir = mkdtempSync(join(tmpdir(), 'p2pev-chain-'));
});
afterAll(async () => {
  await anvil?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let keys = 0;
/** The key in a file of its own (mode 0600), as an operator keeps it. */
function keyFile(key: string): string {
  const file = join(dir, `key-${++keys}.txt`);
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return file;
}

/** Runs `p2pev …args` in-process; returns stdout and the exit code it set. */
async function run(...args: string[]): Promise<{ out: string; exitCode: number | undefined }> {
  const program = new Command('p2pev').exitOverride();
  registerChainCommands(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    out += String(chunk);
    return true;
  });
  const before = process.exitCode;
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'p2pev', ...args]);
    return { out, exitCode: process.exitCode as number | undefined };
  } finally {
    spy.mockRestore();
    process.exitCode = before;
  }
}

describe('startAnvil', () => {
  it('runs the real anvil binary on 127.0.0.1, and stop() leaves nothing answering', async () => {
    const node = await startAnvil({ accounts: 1 });
    expect(node.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await probeChainId(node.rpcUrl)).toBe(31337n);
    await node.stop();
    await expect(probeChainId(node.rpcUrl, 500)).rejects.toThrow(/unreachable/);
  });
});

describe('p2pev chain', () => {
  it('deploys, writes the deployment file, and shows its status', async () => {
    const file = join(dir, 'deployment.json');
    const key = anvil.accounts[1]!.privateKey;
    const { out } = await run(
      'chain',
      'deploy',
      '--rpc',
      anvil.rpcUrl,
      '--key-file',
      keyFile(key),
      '--out',
      file,
      '--json',
    );
    expect(out).not.toContain(key.slice(2));
    const printed = JSON.parse(out);
    const written = JSON.parse(readFileSync(file, 'utf8'));
    expect(written).toMatchObject({
      contract: 'Settlement',
      address: printed.address,
      chainId: 31337,
      deployer: anvil.accounts[1]!.address,
      rpcUrl: anvil.rpcUrl,
      params: { settlementWindowSec: '86400', absToleranceWh: '50', relToleranceBps: '200' },
    });
    expect(written.block).toBeGreaterThan(0);
    expect(written.abi.some((f: { name?: string }) => f.name === 'settleBatch')).toBe(true);
    expect(JSON.stringify(written)).not.toContain(key.slice(2));

    const text = await run('chain', 'status', '--deployment', file);
    expect(text.exitCode).toBeUndefined();
    expect(text.out).toContain(`Settlement ${printed.address} (chain 31337`);
    expect(text.out).toMatch(/code present \(\d+ bytes\)/);
    expect(text.out).toContain('members     0 EV, 0 HCS');
    expect(text.out).toContain('sessions    0 reserved, 0 settled (0 disputed)');

    const json = JSON.parse((await run('chain', 'status', '--deployment', file, '--json')).out);
    expect(json).toMatchObject({ nodeChainId: 31337, problems: [], members: { evs: 0, hcss: 0 } });
  });

  it('takes the deployment parameters from flags and the key from the environment', async () => {
    const file = join(dir, 'custom.json');
    process.env.P2PEV_DEPLOYER_KEY = anvil.accounts[0]!.privateKey;
    try {
      await run(
        'chain',
        'deploy',
        '--rpc',
        anvil.rpcUrl,
        '--out',
        file,
        '--window',
        '3600',
        '--rel-tolerance-bps',
        '100',
      );
    } finally {
      delete process.env.P2PEV_DEPLOYER_KEY;
    }
    const status = JSON.parse((await run('chain', 'status', '--deployment', file, '--json')).out);
    expect(status.params).toEqual({
      settlementWindowSec: '3600',
      absToleranceWh: '50',
      relToleranceBps: '100',
    });
  });

  it('says which URL is unreachable, and never echoes a bad key', async () => {
    const deadUrl = `http://127.0.0.1:${await freePort()}`;
    const key = anvil.accounts[0]!.privateKey;
    await expect(
      run('chain', 'deploy', '--rpc', deadUrl, '--key-file', keyFile(key), '--out', join(dir, 'x.json')),
    ).rejects.toThrow(new RegExp(`RPC ${deadUrl} unreachable .*check that the node is running`));
    const badKey = 'zz'.repeat(32);
    const err = await run('chain', 'deploy', '--rpc', anvil.rpcUrl, '--key-file', keyFile(badKey)).catch(
      (e: Error) => e,
    );
    expect(String(err)).toContain('64 hex digits');
    expect(String(err)).not.toContain(badKey);
    await expect(run('chain', 'status', '--deployment', join(dir, 'missing.json'))).rejects.toThrow(
      /no deployment file at .*missing\.json: give --deployment FILE or --config agent\.config\.json .*`p2pev chain deploy/,
    );
  });

  it('reports a deployment file that does not match the node', async () => {
    const file = join(dir, 'deployment.json');
    const other = await startAnvil({ accounts: 1 });
    try {
      const { out, exitCode } = await run('chain', 'status', '--deployment', file, '--rpc', other.rpcUrl);
      expect(out).toContain('NO CODE at the address');
      expect(exitCode).toBe(1);
    } finally {
      await other.stop();
    }
  });

  it('never takes a key on the command line: --key is refused with what to do, the key not echoed', async () => {
    const key = anvil.accounts[0]!.privateKey;
    const err = await run('chain', 'deploy', '--rpc', anvil.rpcUrl, '--key', key).catch((e: Error) => e);
    expect(err).toMatchObject({ name: 'UsageError' });
    expect(String(err)).toContain('--key would show the key in `ps` and the shell history');
    expect(String(err)).toContain('--key-file FILE');
    expect(String(err)).not.toContain(key.slice(2));
  });

  it('an operator verifies a member, finding the deployment through an agent config; the answer says "verified"', async () => {
    const file = join(dir, 'verify-deployment.json');
    await run(
      'chain',
      'deploy',
      '--rpc',
      anvil.rpcUrl,
      '--key-file',
      keyFile(anvil.accounts[0]!.privateKey),
      '--out',
      file,
    );
    // The member registers itself (as `p2pev register` does), then the operator verifies it.
    const { Wallet, JsonRpcProvider } = await import('ethers');
    const { SettlementClient } = await import('../contracts/client.js');
    const { readDeployment } = await import('../contracts/deploy.js');
    const provider = new JsonRpcProvider(anvil.rpcUrl);
    const member = new Wallet(anvil.accounts[1]!.privateKey, provider);
    try {
      const client = SettlementClient.fromDeployment(readDeployment(file), member);
      await client.register('ev', `0x${'11'.repeat(32)}`);
    } finally {
      provider.destroy();
    }
    const cfgDir = mkdtempSync(join(tmpdir(), 'p2pev-cfg-'));
    const config = join(cfgDir, 'agent.config.json');
    writeFileSync(config, JSON.stringify({ chain: { rpcUrl: anvil.rpcUrl, deploymentFile: file } }));
    const { out } = await run(
      'chain',
      'verify',
      member.address,
      '--config',
      config,
      '--key-file',
      keyFile(anvil.accounts[0]!.privateKey),
    );
    expect(out).toMatch(new RegExp(`^${member.address}: verified \\(verify in block \\d+\\)\\n$`));
    const status = await run('chain', 'status', '--config', config);
    expect(status.out).toContain(`deployment  ${file}`);
    expect(status.out).toContain('members     1 EV, 0 HCS');
  });

  it('reads the keystore password from P2PEV_KEY_PASSWORD; the old name still works, with a warning', async () => {
    const { keystorePassword } = await import('../contracts/cli.js');
    const warn = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(keystorePassword({ P2PEV_KEY_PASSWORD: 'a', P2PEV_KEYSTORE_PASSWORD: 'b' })).toBe('a');
      expect(warn).not.toHaveBeenCalled();
      expect(keystorePassword({ P2PEV_KEYSTORE_PASSWORD: 'b' })).toBe('b');
      expect(String(warn.mock.calls[0]?.[0])).toContain('P2PEV_KEYSTORE_PASSWORD is deprecated');
      expect(keystorePassword({})).toBeUndefined();
    } finally {
      warn.mockRestore();
    }
  });
});
