/**
 * Connecting to a JSON-RPC node with a clear one-line error when it is not there. ethers'
 * JsonRpcProvider alone retries network detection forever; we probe once and pin the network.
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { JsonRpcProvider, Network } from 'ethers';

/**
 * One JSON-RPC POST over node:http(s), the modules ethers' provider uses anyway. Not the global
 * `fetch`: its first call loads undici and compiles its WebAssembly HTTP parser, which costs an
 * agent ~13 MB resident for good and ~30 MB more at its peak (docs/BENCHMARKS.md).
 */
function postJson(
  url: URL,
  body: string,
  timeoutMs: number,
  agent?: HttpAgent,
): Promise<{ status: number; text: string }> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: timeoutMs,
        ...(agent ? { agent } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'TimeoutError' })));
    req.on('error', reject);
    req.end(body);
  });
}

/** The chain id a node reports, or an Error that says which URL failed and what to check. */
export async function probeChainId(rpcUrl: string, timeoutMs = 5000): Promise<bigint> {
  let url: URL;
  try {
    url = new URL(rpcUrl);
  } catch {
    throw new Error(`RPC URL ${JSON.stringify(rpcUrl)} is not a URL (expected e.g. http://127.0.0.1:8545)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(
      `RPC URL ${JSON.stringify(rpcUrl)} is not an http(s) URL (expected e.g. http://127.0.0.1:8545)`,
    );
  let res: { status: number; text: string };
  try {
    res = await postJson(
      url,
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      timeoutMs,
    );
  } catch (err) {
    const cause = (err as { code?: string }).code ?? (err as Error).name;
    throw new Error(
      `RPC ${rpcUrl} unreachable (${cause}): check that the node is running and the URL/port are right`,
    );
  }
  let body: { result?: string; error?: { message?: string } };
  try {
    body = JSON.parse(res.text) as typeof body;
  } catch {
    throw new Error(
      `RPC ${rpcUrl} answered HTTP ${res.status} without JSON: is this an Ethereum JSON-RPC endpoint?`,
    );
  }
  if (!body?.result) {
    throw new Error(`RPC ${rpcUrl} refused eth_chainId: ${body?.error?.message ?? `HTTP ${res.status}`}`);
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

/** A JSON-RPC answer's error, as ethers shapes it (`error.code` a number: the node answered). */
export class JsonRpcError extends Error {
  constructor(
    readonly method: string,
    readonly error: { code: number; message: string; data?: unknown },
  ) {
    super(`${method}: ${error.message}`);
    this.name = 'JsonRpcError';
  }
}

/** Connections a device's agent keeps to its node at most: its reads are a few at a time. */
export const DEVICE_MAX_SOCKETS = 4;
/** An edge's: its batches, their receipts and the deposit reads of many sessions go at once. */
export const EDGE_MAX_SOCKETS = 16;

/**
 * One JSON-RPC call at a time per request, straight over node:http(s) with kept-alive connections:
 * for the edge's batch transactions and their receipts (tens of kB of hex each way), where ethers'
 * provider copied and re-encoded every body in JavaScript (bench:edge). A network failure throws
 * the socket's error (its `code`, e.g. ECONNREFUSED); the node's refusal a JsonRpcError.
 */
export function jsonRpc(
  rpcUrl: string,
  timeoutMs = 30_000,
  maxSockets = DEVICE_MAX_SOCKETS,
): { send(method: string, params: unknown[]): Promise<unknown> } {
  const url = new URL(rpcUrl);
  // At most `maxSockets` connections to the node; more requests at once wait their turn. Unbounded,
  // every request made while others were in flight opened a socket of its own and kept it alive:
  // ~9 a station when the node was slow, and a world of 6,000 agents held 20,000 connections to
  // one anvil (its descriptor limit) and ran out of 127.0.0.1's ports (docs/BENCHMARKS.md).
  const options = { keepAlive: true, maxSockets };
  const agent = url.protocol === 'https:' ? new HttpsAgent(options) : new HttpAgent(options);
  let id = 0;
  return {
    async send(method, params) {
      const res = await postJson(
        url,
        JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }),
        timeoutMs,
        agent,
      );
      let body: { result?: unknown; error?: { code: number; message: string; data?: unknown } };
      try {
        body = JSON.parse(res.text) as typeof body;
      } catch {
        throw Object.assign(new Error(`${method}: HTTP ${res.status} without JSON from ${rpcUrl}`), {
          code: 'SERVER_ERROR',
        });
      }
      if (body.error) throw new JsonRpcError(method, body.error);
      return body.result ?? null;
    },
  };
}
