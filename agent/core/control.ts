/**
 * The control port (loopback by default): `GET /status`, `GET /sessions`, `POST /<action>` with a
 * JSON body and the control token, and the members' page for every other GET. Every request
 * passes the guard of http.ts (Host, Origin, token), so neither another site in the driver's
 * browser nor a rebound DNS name can start a charge.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import {
  controlToken,
  guardRequest,
  HttpError,
  localHostNames,
  readJsonBody,
  sendJson,
  serveHttp,
} from './http.js';

export interface ControlApp {
  /** The status; a promise when it reads something first (the chain figures, agent/ops/telemetry.ts). */
  status(): unknown | Promise<unknown>;
  sessions(): unknown;
  control(action: string, body: Record<string, unknown>): Promise<unknown>;
  /** The page; true when it answered. It gets the token to embed in the HTML it serves. */
  page?(req: IncomingMessage, res: ServerResponse, ctx: { token: string }): Promise<boolean>;
}

export interface ControlOptions {
  host: string;
  port: number;
  /** Where control.token lives (the agent's data directory). */
  dataDir: string;
  /** More names the port may be reached under (a reverse proxy's, a Pi's LAN name). */
  allowedHosts?: string[];
}

const ACTION = /^\/([a-zA-Z][a-zA-Z0-9-]{0,40})$/;

export async function serveControl(opts: ControlOptions, app: ControlApp): Promise<Server> {
  const guard = { hosts: localHostNames(opts.host, opts.allowedHosts), token: controlToken(opts.dataDir) };
  return serveHttp(opts.host, opts.port, async (req, res) => {
    guardRequest(req, guard);
    const path = new URL(req.url ?? '/', 'http://control').pathname;
    if (req.method === 'GET' && path === '/status') return sendJson(res, 200, await app.status());
    if (req.method === 'GET' && path === '/sessions') return sendJson(res, 200, app.sessions());
    if (req.method === 'POST') {
      const action = ACTION.exec(path)?.[1];
      if (!action) throw new HttpError(404, `no such action: ${path}`);
      const body = await readJsonBody(req);
      try {
        return sendJson(res, 200, await app.control(action, body));
      } catch (err) {
        // A refused action (no charge in progress, a bad target) is the caller's to fix.
        throw new HttpError(400, (err as Error).message);
      }
    }
    if (
      (req.method === 'GET' || req.method === 'HEAD') &&
      (await app.page?.(req, res, { token: guard.token }))
    )
      return;
    throw new HttpError(404, 'not found');
  });
}
