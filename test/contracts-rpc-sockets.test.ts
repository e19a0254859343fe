/**
 * The raw JSON-RPC client keeps a bounded number of connections to its node (contracts/rpc.ts):
 * unbounded, each request made while others were in flight opened a socket of its own and kept it
 * alive, and a world of 6,000 agents held 20,000 connections to one anvil. A real HTTP server that
 * answers slowly counts the connections it is given.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEVICE_MAX_SOCKETS, EDGE_MAX_SOCKETS, jsonRpc } from '../contracts/rpc.js';

describe('the raw JSON-RPC client', () => {
  let server: Server;
  let url: string;
  let connections = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        const { id, params } = JSON.parse(body) as { id: number; params: unknown[] };
        // A slow node: every request in flight at once needs a connection of its own.
        setTimeout(() => {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ jsonrpc: '2.0', id, result: params[0] }));
        }, 30);
      });
    });
    server.on('connection', () => {
      connections++;
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it.each([
    ['a device', DEVICE_MAX_SOCKETS],
    ['an edge', EDGE_MAX_SOCKETS],
  ])(
    'as %s, opens at most %i connections however many requests go at once, and answers each',
    async (_who, max) => {
      connections = 0;
      const rpc = jsonRpc(url, 5000, max);
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => rpc.send('eth_echo', [i])));
      expect(answers).toEqual(Array.from({ length: 40 }, (_, i) => i));
      expect(connections).toBeGreaterThan(0);
      expect(connections).toBeLessThanOrEqual(max);
      // Kept alive: a second round opens none.
      const before = connections;
      await Promise.all(Array.from({ length: 10 }, (_, i) => rpc.send('eth_echo', [i])));
      expect(connections).toBe(before);
    },
  );
});
