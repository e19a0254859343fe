/**
 * The control port's guard over real HTTP: a cross-origin page, a rebound DNS name, a form post
 * (no JSON) and a request without the token are refused before any action runs; the token file
 * is the owner's alone; the page served on the port carries the token for its own POSTs.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveControl } from '../agent/core/control.js';
import { portOf, TOKEN_FILE } from '../agent/core/http.js';
import { big, toHttpJson } from '../agent/core/json.js';

interface Answer {
  status: number;
  body: string;
}

function call(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, headers: { host: `127.0.0.1:${port}`, ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('the control port', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'p2pev-control-'));
  const actions: { action: string; body: Record<string, unknown> }[] = [];
  let server: Server;
  let port: number;
  let token: string;

  beforeAll(async () => {
    server = await serveControl(
      { host: '127.0.0.1', port: 0, dataDir },
      {
        status: () => ({ name: 'ev1', balanceWei: 12345678901234567890123n }),
        sessions: () => [],
        control: async (action, body) => {
          if (action === 'stop') throw new Error('no charge in progress');
          actions.push({ action, body });
          return { id: 'abc', state: 'searching' };
        },
        page: async (req, res, ctx) => {
          if (req.url !== '/') return false;
          res.writeHead(200, { 'content-type': 'text/html' }).end(`<meta content="${ctx.token}">`);
          return true;
        },
      },
    );
    port = portOf(server);
    token = readFileSync(join(dataDir, TOKEN_FILE), 'utf8').trim();
  });
  afterAll(() => server?.close());

  const json = { 'content-type': 'application/json' };
  const auth = () => ({ authorization: `Bearer ${token}` });

  it('keeps the token in a file only its owner can read', () => {
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(join(dataDir, TOKEN_FILE)).mode & 0o777).toBe(0o600);
  });

  it('answers a same-origin GET, bigints as decimal strings', async () => {
    const r = await call(port, 'GET', '/status');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ name: 'ev1', balanceWei: '12345678901234567890123' });
    expect(big(JSON.parse(toHttpJson({ v: 5n })).v)).toBe(5n);
  });

  it('takes a JSON POST with the token', async () => {
    const r = await call(port, 'POST', '/charge', { ...json, ...auth() }, '{"targetWh":2000}');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ id: 'abc', state: 'searching' });
    expect(actions).toEqual([{ action: 'charge', body: { targetWh: 2000 } }]);
    // The same from the page's own origin.
    const same = await call(
      port,
      'POST',
      '/charge',
      { ...json, ...auth(), origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' },
      '{"targetWh":1}',
    );
    expect(same.status).toBe(200);
    // A refused action is the caller's to fix (400), with the role's words.
    const stop = await call(port, 'POST', '/stop', { ...json, ...auth() }, '{}');
    expect(stop.status).toBe(400);
    expect(JSON.parse(stop.body).error).toBe('no charge in progress');
  });

  it('refuses a POST without the token, or with a wrong one', async () => {
    const before = actions.length;
    const none = await call(port, 'POST', '/charge', json, '{"targetWh":2000}');
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body).error).toMatch(/control\.token/);
    const wrong = await call(
      port,
      'POST',
      '/charge',
      { ...json, authorization: `Bearer ${'0'.repeat(64)}` },
      '{}',
    );
    expect(wrong.status).toBe(401);
    expect(actions.length).toBe(before);
  });

  it('refuses a POST that is not JSON (a form a foreign page could send)', async () => {
    const before = actions.length;
    for (const type of ['application/x-www-form-urlencoded', 'text/plain', undefined]) {
      const r = await call(
        port,
        'POST',
        '/charge',
        { ...auth(), ...(type ? { 'content-type': type } : {}) },
        'targetWh=2000',
      );
      expect(r.status).toBe(415);
    }
    const notObject = await call(port, 'POST', '/charge', { ...json, ...auth() }, '[1]');
    expect(notObject.status).toBe(400);
    const broken = await call(port, 'POST', '/charge', { ...json, ...auth() }, '{"targetWh":');
    expect(broken.status).toBe(400);
    expect(actions.length).toBe(before);
  });

  it('refuses a cross-origin request, even with the token', async () => {
    const before = actions.length;
    const post = await call(
      port,
      'POST',
      '/charge',
      { ...json, ...auth(), origin: 'http://evil.example' },
      '{"targetWh":2000}',
    );
    expect(post.status).toBe(403);
    const site = await call(
      port,
      'POST',
      '/charge',
      { ...json, ...auth(), 'sec-fetch-site': 'cross-site' },
      '{}',
    );
    expect(site.status).toBe(403);
    const get = await call(port, 'GET', '/status', { origin: 'http://evil.example' });
    expect(get.status).toBe(403);
    expect(actions.length).toBe(before);
  });

  it('refuses a foreign Host (DNS rebinding)', async () => {
    const r = await call(port, 'GET', '/status', { host: `evil.example:${port}` });
    expect(r.status).toBe(421);
    const post = await call(
      port,
      'POST',
      '/charge',
      { ...json, ...auth(), host: `rebind.evil.example:${port}` },
      '{}',
    );
    expect(post.status).toBe(421);
    expect((await call(port, 'GET', '/status', { host: `localhost:${port}` })).status).toBe(200);
  });

  it('serves the page with the token for its own POSTs, also when a link elsewhere opens it', async () => {
    const r = await call(port, 'GET', '/');
    expect(r.body).toContain(token);
    const linked = await call(port, 'GET', '/', {
      'sec-fetch-site': 'cross-site',
      'sec-fetch-mode': 'navigate',
    });
    expect(linked.status).toBe(200);
  });
});

describe('the metrics port, through the same HTTP layer', () => {
  it('answers /metrics in the Prometheus format and 404 with a hint elsewhere', async () => {
    const { createMetrics, serveMetrics } = await import('../agent/core/metrics.js');
    const server = await serveMetrics(createMetrics(true), '127.0.0.1', 0);
    try {
      const port = portOf(server);
      const metrics = await call(port, 'GET', '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/^# HELP /m);
      const other = await call(port, 'GET', '/');
      expect(other.status).toBe(404);
      expect(JSON.parse(other.body).error).toMatch(/\/metrics/);
    } finally {
      server.close();
    }
  });
});

describe('p2pev control', () => {
  it("posts an action with the token from the agent's data directory, and says what the agent refused", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'p2pev-cli-'));
    const seen: { action: string; body: Record<string, unknown> }[] = [];
    const server = await serveControl(
      { host: '127.0.0.1', port: 0, dataDir },
      {
        status: () => ({}),
        sessions: () => [],
        control: async (action, body) => {
          if (action === 'stop') throw new Error('no charge in progress');
          seen.push({ action, body });
          return { id: 'abc', state: 'searching' };
        },
      },
    );
    const config = join(dataDir, 'agent.config.json');
    writeFileSync(
      config,
      JSON.stringify({
        role: 'edge',
        dataDir: '.',
        keystore: { path: 'key.json' },
        chain: { rpcUrl: 'http://127.0.0.1:1', deploymentFile: 'deployment.json' },
        mqtt: { url: 'mqtt://127.0.0.1:1' },
        control: { port: portOf(server) },
      }),
    );
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [new URL('../bin/p2pev.mjs', import.meta.url).pathname, ...args, '--config', config],
          { timeout: 30_000 },
          (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
        );
      });
    try {
      const ok = await cli(['control', 'charge', '{"targetWh":500}']);
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.stdout)).toEqual({ id: 'abc', state: 'searching' });
      expect(seen).toEqual([{ action: 'charge', body: { targetWh: 500 } }]);
      const refused = await cli(['control', 'stop']);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/stop: no charge in progress/);
      const bad = await cli(['control', 'charge', '{targetWh:500}']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/not JSON/);
      expect(seen.length).toBe(1);
    } finally {
      server.close();
    }
  }, 60_000);
});
