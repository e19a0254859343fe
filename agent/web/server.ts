/**
 * The members' page over HTTP: the static page (public/, served as is: no build step) and a small
 * read-only JSON API over the indexer. Only GET; nothing here signs or sends a transaction (the
 * rating is signed in the member's own wallet; `/api/rate-call` only encodes the call for it).
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Contract, isAddress } from 'ethers';
import { commentBytes10 } from '../../contracts/client.js';
import { toHttpJson } from '../core/json.js';
import type { DeviceState } from './device.js';
import type { ChainIndexer } from './indexer.js';
import {
  filterSessions,
  type SessionFilter,
  type SessionView,
  type StationView,
  sessionsOf,
  statementOf,
  stationsOf,
  suggestionFor,
} from './views.js';

export interface WebAppOptions {
  indexer: ChainIndexer;
  /** The live devices this page can see (the agent itself, or the control ports it was given). */
  devices?: () => Promise<DeviceState[]>;
}

export type WebHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

const PUBLIC = new URL('./public/', import.meta.url);
/** The page's files, by URL path: a fixed list, so no path from a request ever reaches the disk. */
const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/format.js': { file: 'format.js', type: 'text/javascript; charset=utf-8' },
  '/map.js': { file: 'map.js', type: 'text/javascript; charset=utf-8' },
  '/wallet.js': { file: 'wallet.js', type: 'text/javascript; charset=utf-8' },
};
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Everything comes from this origin; wallets inject their provider from the extension.
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
};
const MAX_PAGE_SIZE = 100;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res
    .writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      ...SECURITY_HEADERS,
    })
    .end(toHttpJson(body));
}

function address(q: URLSearchParams, key: string, required = false): string | undefined {
  const v = q.get(key)?.trim();
  if (!v) {
    if (required) throw new HttpError(400, `${key} is required (a 0x address)`);
    return undefined;
  }
  if (!isAddress(v)) throw new HttpError(400, `${key} is not an address: ${v}`);
  return v.toLowerCase();
}

function number(q: URLSearchParams, key: string): number | undefined {
  const v = q.get(key);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new HttpError(400, `${key} must be a number`);
  return n;
}

export function createWebApp(opts: WebAppOptions): { handle: WebHandler; close(): void } {
  const { indexer } = opts;
  const files = new Map<string, Buffer>();
  const contract = new Contract(indexer.address, indexer.iface, undefined);
  let cache: { version: number; sessions: SessionView[]; stations: StationView[] } | undefined;

  /** Derived once per indexer change, not per request (a Pi serves several members). */
  function derived() {
    if (cache?.version !== indexer.version) {
      cache = {
        version: indexer.version,
        sessions: sessionsOf(indexer.events, indexer.settlements),
        stations: stationsOf(indexer.events),
      };
    }
    return cache;
  }

  async function view(contractView: string, args: unknown[]): Promise<unknown> {
    const runner = indexer.provider;
    const fn = contract.connect(runner).getFunction(contractView);
    return fn.staticCall(...args, { blockTag: indexer.tip?.number ?? 'latest' });
  }

  async function api(path: string, q: URLSearchParams): Promise<unknown> {
    await indexer.start();
    switch (path) {
      case '/api/info':
        return {
          contract: indexer.address,
          chainId: indexer.chainId,
          indexedBlock: indexer.tip?.number,
          head: indexer.head,
          confirmations: indexer.confirmationsNeeded,
          reorgs: indexer.reorgs,
          events: indexer.events.length,
          lastError: indexer.lastError,
          devices: Boolean(opts.devices),
        };
      case '/api/stations': {
        const { stations } = derived();
        const lat = number(q, 'lat');
        const lon = number(q, 'lon');
        const radiusM = number(q, 'radiusM') ?? 10_000;
        const suggestion =
          lat !== undefined && lon !== undefined
            ? suggestionFor(stations, { latitude: lat, longitude: lon, radiusM }, number(q, 'limit') ?? 5)
            : undefined;
        return { stations, suggestion };
      }
      case '/api/sessions': {
        const rated = q.get('rated');
        const outcome = q.get('outcome');
        if (outcome && !['settled', 'disputed', 'expired'].includes(outcome))
          throw new HttpError(400, 'outcome must be settled, disputed or expired');
        const filter: SessionFilter = {
          ...(address(q, 'member') ? { member: address(q, 'member') } : {}),
          ...(address(q, 'ev') ? { ev: address(q, 'ev') } : {}),
          ...(address(q, 'hcs') ? { hcs: address(q, 'hcs') } : {}),
          ...(outcome ? { outcome: outcome as SessionFilter['outcome'] } : {}),
          ...(rated === 'yes' || rated === 'no' ? { rated: rated === 'yes' } : {}),
          ...(number(q, 'from') !== undefined ? { fromTime: number(q, 'from') } : {}),
          ...(number(q, 'to') !== undefined ? { toTime: number(q, 'to') } : {}),
        };
        const all = filterSessions(derived().sessions, filter);
        const pageSize = Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(number(q, 'pageSize') ?? 20)));
        const pages = Math.max(1, Math.ceil(all.length / pageSize));
        const page = Math.min(pages, Math.max(1, Math.floor(number(q, 'page') ?? 1)));
        const sum = (f: (s: SessionView) => bigint) => all.reduce((t, s) => t + f(s), 0n);
        return {
          total: all.length,
          page,
          pages,
          pageSize,
          totals: { billedWh: sum((s) => s.billedWh), amountWei: sum((s) => s.amountWei) },
          items: all.slice((page - 1) * pageSize, page * pageSize),
        };
      }
      case '/api/statement': {
        const member = address(q, 'member', true)!;
        const from = number(q, 'from') ?? 0;
        const to = number(q, 'to') ?? Number.MAX_SAFE_INTEGER;
        const statement = statementOf(indexer.events, member, from, to);
        // The contract's own view at the indexed block: the statement balances iff they agree.
        const tipTime = indexer.events.at(-1)?.time ?? 0;
        let onChainWei: bigint | undefined;
        if (to >= tipTime && statement.role !== 'none') {
          onChainWei =
            statement.role === 'ev'
              ? // The deposit with its announced withdrawal: both still in the contract.
                ((d) => d[0]! + d[2]!)((await view('depositOf', [member])) as bigint[])
              : ((await view('earningsOf', [member])) as bigint);
        }
        return { ...statement, atBlock: indexer.tip?.number, onChainWei };
      }
      case '/api/device':
        if (!opts.devices) throw new HttpError(404, 'no device is attached to this page');
        return { devices: await opts.devices() };
      case '/api/rate-call': {
        const txid = q.get('txid')?.toLowerCase() ?? '';
        const input = indexer.settlements.get(txid);
        const session = derived().sessions.find((s) => s.txid === txid);
        if (!input || !session) throw new HttpError(404, 'no settled session with this txid');
        const rating = Number(q.get('rating'));
        if (!Number.isInteger(rating) || rating < 1 || rating > 5)
          throw new HttpError(400, 'rating must be 1..5');
        let comment: string;
        try {
          comment = commentBytes10(q.get('comment') ?? '');
        } catch (err) {
          throw new HttpError(400, (err as Error).message);
        }
        const terms = {
          ev: session.ev,
          hcs: session.hcs,
          seq: input.seq,
          priceWeiPerKWh: input.priceWeiPerKWh,
          maxEnergyWh: input.maxEnergyWh,
          settleBy: input.settleBy,
        };
        const data = indexer.iface.encodeFunctionData('rate', [terms, rating, comment]);
        return { from: session.ev, to: indexer.address, chainId: indexer.chainId, data };
      }
      default:
        throw new HttpError(404, `no such API: ${path}`);
    }
  }

  const handle: WebHandler = async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const url = new URL(req.url ?? '/', 'http://page');
    const file = STATIC[url.pathname];
    if (file) {
      let body = files.get(file.file);
      if (!body) {
        body = readFileSync(new URL(file.file, PUBLIC));
        files.set(file.file, body);
      }
      res
        .writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache', ...SECURITY_HEADERS })
        .end(body);
      return true;
    }
    if (!url.pathname.startsWith('/api/')) return false;
    try {
      json(res, 200, await api(url.pathname, url.searchParams));
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 502;
      json(res, status, { error: (err as Error).message });
    }
    return true;
  };
  return { handle, close: () => indexer.stop() };
}

/** The page on its own port (the edge's `web.port`, or `p2pev web`). */
export async function serveWeb(handle: WebHandler, host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    handle(req, res)
      .then((done) => {
        if (!done) json(res, 404, { error: 'not found' });
      })
      .catch((err) => json(res, 500, { error: (err as Error).message }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

export function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}
