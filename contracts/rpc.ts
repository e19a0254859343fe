/**
 * Connecting to a JSON-RPC node with a clear one-line error when it is not there. ethers'
 * JsonRpcProvider alone retries network detection forever; we probe once and pin the network.
 */
import { JsonRpcProvider, Network } from 'ethers';

/** The chain id a node reports, or an Error that says which URL failed and what to check. */
export async function probeChainId(rpcUrl: string, timeoutMs = 5000): Promise<bigint> {
  let url: URL;
  try {
    url = new URL(rpcUrl);
  } catch {
    throw new Error(`RPC URL ${JSON.stringify(rpcUrl)} is not a URL (expected e.g. http://127.0.0.1:8545)`);
  }
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    throw new Error(
      `RPC ${rpcUrl} unreachable (${cause}): check that the node is running and the URL/port are right`,
    );
  }
  let body: { result?: string; error?: { message?: string } };
  try {
    body = (await res.json()) as typeof body;
  } catch {
    throw new Error(
      `RPC ${rpcUrl} answered HTTP ${res.status} without JSON: is this an Ethereum JSON-RPC endpoint?`,
    );
  }
  if (!body.result) {
    throw new Error(`RPC ${rpcUrl} refused eth_chainId: ${body.error?.message ?? `HTTP ${res.status}`}`);
  }
  return BigInt(body.result);
}

/** A provider pinned to the node's chain id (no background re-detection). */
export async function connectRpc(rpcUrl: string): Promise<{ provider: JsonRpcProvider; chainId: bigint }> {
  const chainId = await probeChainId(rpcUrl);
  const provider = new JsonRpcProvider(rpcUrl, Network.from(chainId), {
    staticNetwork: true,
    cacheTimeout: -1,
  });
  // Local nodes mine at once; poll receipts often rather than every 4 s.
  if (/^https?:\/\/(127\.0\.0\.1|localhost)[:/]/.test(rpcUrl)) provider.pollingInterval = 100;
  return { provider, chainId };
}
