/**
 * What an agent's status says of its chain node (`chain.reachable`) follows every call, the raw
 * JSON-RPC ones included: the edge's batches and receipts go over the raw client outside
 * `Chain.retry`, and with only them asking, a cut node was still "reachable" (real anvil behind a
 * TCP proxy that is cut and restored).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Chain } from '../agent/core/chain.js';
import { createLogger } from '../agent/core/log.js';
import { writeDeployment } from '../contracts/deploy.js';
import { type FaultyProxy, startProxy } from '../sim/proxy.js';
import { type SettlementFixture, setupSettlement } from './helpers/anvilSettlement.js';

describe("the chain node's reachability", () => {
  let fx: SettlementFixture;
  let proxy: FaultyProxy;
  let chain: Chain;

  beforeAll(async () => {
    fx = await setupSettlement({ evs: 1, hcss: 1, strangers: 0 });
    proxy = await startProxy(new URL(fx.anvil.rpcUrl));
    const deploymentFile = join(mkdtempSync(join(tmpdir(), 'p2pev-reachable-')), 'deployment.json');
    writeDeployment(deploymentFile, fx.deployment);
    chain = await Chain.connect({
      rpcUrl: proxy.url,
      deploymentFile,
      privateKey: fx.operator.privateKey,
      confirmations: 1,
      retryMaxMs: 1000,
      log: createLogger({ level: 'silent', pretty: false }),
    });
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await fx?.stop();
  });

  it('is lost on a failed batch-receipt read and back on the next answer', async () => {
    const sender = await chain.openBatchSender();
    const hash = `0x${'ab'.repeat(32)}`;
    expect(await sender.receipt(hash)).toBeUndefined();
    expect(chain.reachable).toBe(true);

    await proxy.cut();
    await expect(sender.receipt(hash)).rejects.toThrow();
    expect(chain.reachable).toBe(false);

    await proxy.restore();
    expect(await sender.receipt(hash)).toBeUndefined();
    expect(chain.reachable).toBe(true);
  }, 60_000);
});
