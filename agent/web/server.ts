/**
 * The members' page over HTTP: the static page (public/, served as is: no build step), the map
 * and chart libraries from their npm packages (never a CDN: a Pi may be offline), and a JSON API
 * over the indexer. Only GET; nothing here signs or sends a transaction: the wallet actions are
 * encoded here (`/api/call`, `/api/rate-call`) and signed in the member's own wallet, and a charge
 * is started through the control port's POST (agent/core/control.ts), never through this API.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Contract, getAddress, id as keccakText, isAddress } from 'ethers';
import { commentBytes10 } from '../../contracts/client.js';
import { HttpError, SECURITY_HEADERS, sendJson, serveHttp } from '../core/http.js';
import type { DeviceState } from './device.js';
import { errorSentence } from './errors.js';
import type { ChainIndexer } from './indexer.js';
import { LiveFeed } from './live.js';
import {
  filterSessions,
  monthlyOf,
  type SessionFilter,
  type SessionView,
  sessionsOf,
  statementCsv,
  statementOf,
  suggestionFor,
} from './views.js';

export { portOf } from '../core/http.js';

export interface WebAppOptions {
  indexer: ChainIndexer;
  /** The live devices this page can see (the agent itself, or the control ports it was given). */
  devices?: () => Promise<DeviceState[]>;
  /** A charge is running on a device of this page: keep sampling its curve with nobody watching. */
  busy?: () => boolean;
  /** The map's tile URL template ({z}/{x}/{y}) or "none"; OpenStreetMap's by default. */
  tiles?: string;
  tileAttribution?: string;
  /** The device's EV position and search radius, for the map's circle and the charge form. */
  ev?: { latitude: number; longitude: number; radiusM: number };
}

/** Per request: what the port serving it adds (the control port's token, for the page's POSTs). */
export interface WebContext {
  token?: string;
}

export type WebHandler = (req: IncomingMessage, res: ServerResponse, ctx?: WebContext) => Promise<boolean>;

export const OSM_TILES = 'https://tile.openstreetmap.org/{z}/{x}/{y}.png';
export const OSM_ATTRIBUTION = '© OpenStreetMap contributors';

const PUBLIC = new URL('./public/', import.meta.url);
const require = createRequire(import.meta.url);
/** A package's dist folder, found the way Node finds the package (works from dist/ too). */
const dist = (pkg: string) => dirname(require.resolve(pkg));

const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';
/** The page's files, by URL path: a fixed list, so no path from a request ever reaches the disk. */
const STATIC: Record<string, { path: () => string; type: string }> = {
  '/style.css': { path: () => new URL('style.css', PUBLIC).pathname, type: CSS },
  ...Object.fromEntries(
    [
      'app.js',
      'api.js',
      'device.js',
      'account.js',
      'format.js',
      'map.js',
      'wallet.js',
      'charts.js',
      'live.js',
    ].map((f) => [`/${f}`, { path: () => new URL(f, PUBLIC).pathname, type: JS }]),
  ),
  '/vendor/leaflet.js': { path: () => join(dist('leaflet'), 'leaflet.js'), type: JS },
  '/vendor/leaflet.css': { path: () => join(dist('leaflet'), 'leaflet.css'), type: CSS },
  '/vendor/leaflet.markercluster.js': {
    path: () => join(dist('leaflet.markercluster'), 'leaflet.markercluster.js'),
    type: JS,
  },
  '/vendor/MarkerCluster.css': {
    path: () => join(dist('leaflet.markercluster'), 'MarkerCluster.css'),
    type: CSS,
  },
  '/vendor/MarkerCluster.Default.css': {
    path: () => join(dist('leaflet.markercluster'), 'MarkerCluster.Default.css'),
    type: CSS,
  },
  '/vendor/uPlot.js': { path: () => join(dist('uplot'), 'uPlot.iife.min.js'), type: JS },
  '/vendor/uPlot.css': { path: () => join(dist('uplot'), 'uPlot.min.css'), type: CSS },
};
const PAGE = new Set(['/', '/index.html']);
const MAX_PAGE_SIZE = 100;

/** Everything from this origin, but the map's tiles from their server; wallets inject from the extension. */
function contentSecurityPolicy(tiles: string): string {
  const tileOrigin = tiles === 'none' ? '' : ` ${new URL(tiles.replace(/[{}]/g, '')).origin}`;
  return `default-src 'self'; img-src 'self' data:${tileOrigin}; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'`;
}

const escapeAttr = (v: string) =>
  v.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

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

function weiParam(q: URLSearchParams, key: string): bigint {
  const v = q.get(key)?.trim() ?? '';
  if (!/^[0-9]{1,40}$/.test(v) || BigInt(v) === 0n)
    throw new HttpError(400, `${key} must be a positive whole number of wei`);
  return BigInt(v);
}

/** The wallet actions the page offers, and the contract function each one calls. */
export const WALLET_CALLS = [
  'registerEV',
  'deposit',
  'requestWithdrawal',
  'cancelWithdrawal',
  'withdraw',
  'withdrawEarnings',
] as const;

export function createWebApp(opts: WebAppOptions): { handle: WebHandler; close(): void } {
  const { indexer } = opts;
  const tiles = opts.tiles ?? OSM_TILES;
  const csp = contentSecurityPolicy(tiles);
  const files = new Map<string, Buffer>();
  const contract = new Contract(indexer.address, indexer.iface, undefined);
  const feed = opts.devices
    ? new LiveFeed({ sample: opts.devices, ...(opts.busy ? { busy: opts.busy } : {}) })
    : undefined;
  feed?.start();
  async function view(contractView: string, args: unknown[], tag?: string | number): Promise<unknown> {
    const fn = contract.connect(indexer.provider).getFunction(contractView);
    return fn.staticCall(...args, { blockTag: tag ?? indexer.tip?.number ?? 'latest' });
  }

  function statement(q: URLSearchParams) {
    const member = address(q, 'member', true)!;
    const from = number(q, 'from') ?? 0;
    const to = number(q, 'to') ?? Number.MAX_SAFE_INTEGER;
    return {
      member,
      from,
      to,
      statement: statementOf(indexer.memberHistory(member).events, member, from, to),
    };
  }

  async function api(path: string, q: URLSearchParams): Promise<unknown> {
    if (path === '/api/trace') {
      const id = q.get('id') ?? '';
      return { id, points: feed?.trace(id) ?? [] };
    }
    if (path === '/api/device') {
      if (!opts.devices) throw new HttpError(404, 'no device is attached to this page');
      return { devices: await opts.devices() };
    }
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
          events: indexer.eventCount,
          lastError: indexer.lastError,
          devices: Boolean(opts.devices),
          tiles,
          tileAttribution: opts.tileAttribution ?? (tiles === OSM_TILES ? OSM_ATTRIBUTION : ''),
          ...(opts.ev ? { ev: opts.ev } : {}),
        };
      case '/api/stations': {
        const stations = indexer.stations();
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
        // A member's sessions come whole from its rows; the network's from the newest ones kept
        // in memory (`window`: older ones are listed per member), with the network's own totals.
        const who = filter.member ?? filter.ev ?? filter.hcs;
        let all: SessionView[];
        let window: number | undefined;
        let networkTotals: { billedWh: bigint; amountWei: bigint; total: number } | undefined;
        if (who) {
          const h = indexer.memberHistory(who);
          all = filterSessions(sessionsOf(h.events, h.inputs), filter);
        } else {
          const net = indexer.networkSessions();
          all = filterSessions(net.sessions, filter);
          if (!net.complete) window = net.sessions.length;
          const unfiltered = Object.keys(filter).length === 0;
          if (unfiltered) networkTotals = net;
        }
        const pageSize = Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(number(q, 'pageSize') ?? 20)));
        const pages = Math.max(1, Math.ceil(all.length / pageSize));
        const page = Math.min(pages, Math.max(1, Math.floor(number(q, 'page') ?? 1)));
        const sum = (f: (s: SessionView) => bigint) => all.reduce((t, s) => t + f(s), 0n);
        return {
          total: networkTotals?.total ?? all.length,
          page,
          pages,
          pageSize,
          totals: networkTotals
            ? { billedWh: networkTotals.billedWh, amountWei: networkTotals.amountWei }
            : { billedWh: sum((s) => s.billedWh), amountWei: sum((s) => s.amountWei) },
          ...(window !== undefined ? { window } : {}),
          items: all.slice((page - 1) * pageSize, page * pageSize),
        };
      }
      case '/api/statement': {
        const { member, to, statement: st } = statement(q);
        // The contract's own view at the indexed block: the statement balances iff they agree.
        const tipTime = indexer.lastEventTime;
        let onChainWei: bigint | undefined;
        if (to >= tipTime && st.role !== 'none') {
          onChainWei =
            st.role === 'ev'
              ? // The deposit with its announced withdrawal: both still in the contract.
                ((d) => d[0]! + d[2]!)((await view('depositOf', [member])) as bigint[])
              : ((await view('earningsOf', [member])) as bigint);
        }
        return {
          ...st,
          atBlock: indexer.tip?.number,
          onChainWei,
          monthly: ((h) => monthlyOf(sessionsOf(h.events, h.inputs), member))(indexer.memberHistory(member)),
        };
      }
      case '/api/account': {
        // The wallet's account as the contract has it now (latest block: the page shows a new
        // balance as soon as its transaction lands).
        const member = address(q, 'address', true)!;
        const [role, status] = (await view('authInfo', [member], 'latest')) as [bigint, bigint];
        // By the outputs' names: the escrow's layout (balance, reserved, pendingWithdrawal,
        // withdrawableAt) may grow without the page reading the wrong figure.
        const d = (await view('depositOf', [member], 'latest')) as Record<string, bigint | undefined>;
        const earnings = Number(role) === 2 ? ((await view('earningsOf', [member], 'latest')) as bigint) : 0n;
        return {
          address: member,
          role: ['none', 'ev', 'hcs'][Number(role)] ?? 'unknown',
          status: ['none', 'pending', 'verified', 'suspended', 'revoked'][Number(status)] ?? 'unknown',
          depositWei: Number(role) === 1 ? (d.balance ?? 0n) : 0n,
          ...(d.reserved !== undefined ? { reservedWei: d.reserved } : {}),
          earningsWei: earnings,
          pendingWithdrawalWei: d.pendingWithdrawal ?? 0n,
          withdrawableAt: Number(d.withdrawableAt ?? 0n),
          etherWei: await indexer.provider.getBalance(member, 'latest'),
        };
      }
      case '/api/call': {
        // A wallet action encoded for the member's wallet to sign and send.
        const fn = q.get('fn') ?? '';
        if (!(WALLET_CALLS as readonly string[]).includes(fn))
          throw new HttpError(400, `fn must be one of ${WALLET_CALLS.join(', ')}`);
        const from = address(q, 'from', true)!;
        let args: unknown[] = [];
        let value: bigint | undefined;
        if (fn === 'registerEV') {
          const identity = q.get('identity')?.trim() ?? '';
          if (!identity)
            throw new HttpError(400, 'identity is required: the reference of your identity documents');
          // Only its hash goes on chain; the documents stay with the operator.
          args = [keccakText(identity)];
        } else if (fn === 'deposit') value = weiParam(q, 'amountWei');
        else if (fn === 'requestWithdrawal') args = [weiParam(q, 'amountWei')];
        const data = indexer.iface.encodeFunctionData(fn, args);
        return {
          from: getAddress(from).toLowerCase(),
          to: indexer.address,
          chainId: indexer.chainId,
          data,
          ...(value !== undefined ? { value: `0x${value.toString(16)}` } : {}),
        };
      }
      case '/api/error': {
        const data = q.get('data') ?? '';
        if (!/^0x[0-9a-fA-F]{8,}$/.test(data))
          throw new HttpError(400, 'data must be revert data (0x + selector …)');
        return (
          errorSentence(indexer.iface, data) ?? {
            name: 'unknown',
            sentence: 'The contract refused the call for a reason this page does not know.',
          }
        );
      }
      case '/api/rate-call': {
        const txid = q.get('txid')?.toLowerCase() ?? '';
        // The EV's rows hold it (the page sends the connected wallet as `member`).
        const found = indexer.settlementOf(txid, address(q, 'member'));
        if (!found) throw new HttpError(404, 'no settled session with this txid');
        const { input, session } = found;
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

  function staticFile(path: string, type: string, res: ServerResponse, cache = 'no-cache'): void {
    let body = files.get(path);
    if (!body) {
      body = readFileSync(path);
      files.set(path, body);
    }
    res
      .writeHead(200, {
        'content-type': type,
        'cache-control': cache,
        'content-security-policy': csp,
        ...SECURITY_HEADERS,
      })
      .end(body);
  }

  /** index.html with what this port adds: the control token (control port only) and the tiles. */
  function page(res: ServerResponse, ctx: WebContext): void {
    let html = files.get('index.html')?.toString('utf8');
    if (html === undefined) {
      html = readFileSync(new URL('index.html', PUBLIC), 'utf8');
      files.set('index.html', Buffer.from(html));
    }
    const meta = `<meta name="p2pev-control" content="${escapeAttr(ctx.token ?? '')}">`;
    res
      .writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        // The token must not sit in a shared cache.
        'cache-control': 'no-store',
        'content-security-policy': csp,
        ...SECURITY_HEADERS,
      })
      .end(html.replace('<meta name="p2pev-control" content="">', meta));
  }

  const handle: WebHandler = async (req, res, ctx = {}) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const url = new URL(req.url ?? '/', 'http://page');
    if (PAGE.has(url.pathname)) {
      page(res, ctx);
      return true;
    }
    const file = STATIC[url.pathname];
    if (file) {
      // The libraries change only with the package: a phone need not fetch them again for a day.
      staticFile(
        file.path(),
        file.type,
        res,
        url.pathname.startsWith('/vendor/') ? 'public, max-age=86400' : 'no-cache',
      );
      return true;
    }
    if (url.pathname === '/api/live') {
      if (!feed) throw new HttpError(404, 'no device is attached to this page');
      await feed.stream(req, res);
      return true;
    }
    if (url.pathname === '/api/statement.csv') {
      await indexer.start();
      const { member, statement: st } = statement(url.searchParams);
      res
        .writeHead(200, {
          'content-type': 'text/csv; charset=utf-8',
          'content-disposition': `attachment; filename="p2pev-statement-${member}.csv"`,
          'cache-control': 'no-store',
          ...SECURITY_HEADERS,
        })
        .end(statementCsv(st));
      return true;
    }
    if (!url.pathname.startsWith('/api/')) return false;
    try {
      sendJson(res, 200, await api(url.pathname, url.searchParams));
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 502;
      sendJson(res, status, { error: (err as Error).message });
    }
    return true;
  };
  return {
    handle,
    close: () => {
      feed?.close();
      indexer.stop();
    },
  };
}

/** The page on its own port (the edge's `web.port`, or `p2pev web`): read-only, GET only. */
export async function serveWeb(handle: WebHandler, host: string, port: number): Promise<Server> {
  return serveHttp(host, port, async (req, res) => {
    if (!(await handle(req, res))) sendJson(res, 404, { error: 'not found' });
  });
}
