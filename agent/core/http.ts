/**
 * The agent's one HTTP layer: the control port, the members' page on its own port and
 * `p2pev web` all listen through `serveHttp`, answer JSON through `sendJson` (one bigint codec,
 * json.ts) and read request bodies through `readJsonBody`.
 *
 * A port that changes state (the control port) is guarded by `guardRequest`:
 * - Host must name this machine (loopback, the configured host, the machine's own names and
 *   addresses, or `control.allowedHosts`): a DNS-rebinding page reaches us under its own name
 *   and is refused.
 * - Origin, when a browser sends one, must be this same origin, and a POST's Sec-Fetch-Site
 *   same-origin: a page elsewhere can neither post nor read (a plain link may still open the page).
 * - A POST must carry `content-type: application/json` (which a cross-origin form cannot send
 *   without a CORS preflight we never answer) and the control token (`Authorization: Bearer …`).
 * The token is a random secret in `<dataDir>/control.token` (mode 0600): the `p2pev` commands
 * and a curl user read it from there, and the page served on the control port gets it embedded in
 * its HTML, which only a same-origin page can read.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { toHttpJson } from './json.js';

/** An error with the HTTP status it answers with; anything else answers 500. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
} as const;

/** Answers JSON (bigints as decimal strings), never cached. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res
    .writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      ...SECURITY_HEADERS,
      ...headers,
    })
    .end(toHttpJson(body));
}

const MAX_BODY = 65_536;

/**
 * A request body as JSON: `content-type: application/json` required (anything else: 415), at most
 * 64 kB (413), an object or empty (400).
 */
export async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
  if (type !== 'application/json')
    throw new HttpError(
      415,
      `send the body as JSON with "content-type: application/json" (got ${type || 'no content type'})`,
    );
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `the body is over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `the body is not JSON: ${(err as Error).message}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new HttpError(400, 'the body must be a JSON object, e.g. {"targetWh": 2000}');
  return body as Record<string, unknown>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** Listens on host:port (0 = any free port); a handler's throw answers JSON with its status. */
export async function serveHttp(host: string, port: number, handle: Handler): Promise<Server> {
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      sendJson(res, status, { error: (err as Error).message });
    });
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

// ------------------------------------------------------------------ guard

const WILDCARD = new Set(['0.0.0.0', '::', '']);

/** The host names (without port) a request to this machine may carry in its Host header. */
export function localHostNames(configured: string, extra: string[] = []): Set<string> {
  const names = new Set(['localhost', '127.0.0.1', '::1', ...extra.map((h) => h.toLowerCase())]);
  if (!WILDCARD.has(configured)) names.add(configured.toLowerCase());
  else {
    // Listening on every interface: this machine's own names and addresses.
    const me = hostname().toLowerCase();
    names.add(me);
    names.add(`${me}.local`);
    for (const list of Object.values(networkInterfaces()))
      for (const i of list ?? []) names.add(i.address.toLowerCase());
  }
  return names;
}

/** "host:port" or "[v6]:port" → the host part, lowercase. */
function hostPart(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon > 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

export interface Guard {
  /** Host names this port answers to (localHostNames). */
  hosts: Set<string>;
  /** The control token a state-changing request must carry. */
  token: string;
}

/**
 * Refuses what another site or a rebound DNS name could send: a foreign Host (421), a foreign
 * Origin (403), and, for anything but GET/HEAD, a request without the token (401).
 */
export function guardRequest(req: IncomingMessage, guard: Guard): void {
  const host = req.headers.host;
  if (!host || !guard.hosts.has(hostPart(host)))
    throw new HttpError(
      421,
      `this port answers only to ${[...guard.hosts].slice(0, 3).join(', ')}…: use http://127.0.0.1:<port>/ (or list the name in control.allowedHosts)`,
    );
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${host}`)
    throw new HttpError(403, `cross-origin requests are refused (Origin ${origin})`);
  // A link from another site may open the page (a top-level GET: that site cannot read it); only
  // what changes state must come from the page itself.
  if (req.method === 'GET' || req.method === 'HEAD') return;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    throw new HttpError(403, `cross-site requests are refused (Sec-Fetch-Site ${site})`);
  const given = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
  const a = Buffer.from(given);
  const b = Buffer.from(guard.token);
  if (a.length !== b.length || !timingSafeEqual(a, b))
    throw new HttpError(
      401,
      'a control action needs the token: Authorization: Bearer $(cat <dataDir>/control.token)',
    );
}

export const TOKEN_FILE = 'control.token';

/**
 * The control token of a data directory: read, or created (32 random bytes, hex) with mode 0600
 * so only the agent's user (and root) can act through the control port.
 */
export function controlToken(dataDir: string): string {
  const path = join(dataDir, TOKEN_FILE);
  if (existsSync(path)) {
    const token = readFileSync(path, 'utf8').trim();
    if (/^[0-9a-f]{64}$/.test(token)) {
      chmodSync(path, 0o600);
      return token;
    }
  }
  const token = randomBytes(32).toString('hex');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return token;
}

/** The token a `p2pev` command sends to the agent of `dataDir`; an Error that says what to do. */
export function readControlToken(dataDir: string): string {
  const path = join(dataDir, TOKEN_FILE);
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new Error(
      `cannot read ${path} (${(err as NodeJS.ErrnoException).code}): start the agent once (it writes the token), and run this as the agent's user (sudo -u p2pev …)`,
    );
  }
}
