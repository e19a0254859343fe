/**
 * A TCP proxy in front of a peer (the chain node) that a chaos run can cut (connections dropped
 * and refused) or pause (connections held open, nothing forwarded: a hung node or a black-holed
 * link), and restore, on the same port.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface FaultyProxy {
  url: string;
  port: number;
  state: 'up' | 'cut' | 'paused';
  cut(): Promise<void>;
  pause(): void;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startProxy(target: URL): Promise<FaultyProxy> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  let paused = false;
  const listen = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => {});
          if (paused) s.pause();
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  await listen();
  const proxy: FaultyProxy = {
    url: `http://127.0.0.1:${port}`,
    port,
    state: 'up',
    async cut() {
      if (proxy.state === 'cut') return;
      if (proxy.state === 'paused') await proxy.restore();
      const closed = new Promise<void>((r) => server!.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
      proxy.state = 'cut';
    },
    pause() {
      if (proxy.state !== 'up') return;
      paused = true;
      for (const s of sockets) s.pause();
      proxy.state = 'paused';
    },
    async restore() {
      if (proxy.state === 'paused') {
        paused = false;
        for (const s of sockets) s.resume();
      } else if (proxy.state === 'cut') await listen();
      proxy.state = 'up';
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => (server?.listening ? server.close(() => r()) : r()));
    },
  };
  return proxy;
}
