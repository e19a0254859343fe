/**
 * MQTT brokers for the sim and the tests: an embedded one (aedes, in-process, in-memory
 * persistence) and Debian's mosquitto as a real external peer. Both listen on loopback only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import { freePort } from './chain.js';

export interface Broker {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startEmbeddedBroker(opts: { port?: number; host?: string } = {}): Promise<Broker> {
  const host = opts.host ?? '127.0.0.1';
  const aedes = await Aedes.createBroker();
  const server = createServer(aedes.handle as never);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `mqtt://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        aedes.close(() => server.close(() => resolve()));
      }),
  };
}

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const sock = createConnection({ port, host: '127.0.0.1' });
      sock.once('connect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > until)
          reject(new Error(`mosquitto did not listen on port ${port} within ${timeoutMs} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export interface MosquittoBroker extends Broker {
  /** The mosquitto process's pid (for a chaos run's kills). */
  readonly pid: number | undefined;
  /** Kills mosquitto (SIGKILL by default: no goodbye to anyone) and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port with the same configuration. */
  restart(): Promise<void>;
}

/**
 * Starts Debian's mosquitto on a free loopback port (apt-get install mosquitto). `config` replaces
 * the default configuration (anonymous, no persistence); it is given the port to listen on.
 */
export async function startMosquitto(
  opts: { port?: number; config?: (port: number) => string; dir?: string } = {},
): Promise<MosquittoBroker> {
  const port = opts.port ?? (await freePort());
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'p2pev-mosquitto-'));
  const conf = join(dir, 'mosquitto.conf');
  // An edge at a thousand sessions a second gets bursts of thousands of messages: mosquitto's
  // default queue for a client (1,000 messages) would drop the rest (bench:edge lost reports).
  writeFileSync(
    conf,
    opts.config?.(port) ??
      // sys_interval 1: its $SYS counters every second (the flood bench reads the broker's rate).
      `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 100\nsys_interval 1\n`,
  );
  let child: ChildProcess;
  let stderr = '';
  const start = async () => {
    stderr = '';
    child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<never>((_, reject) => {
      child.once('error', (err) =>
        reject(new Error(`cannot start mosquitto (${err.message}): apt-get install mosquitto`)),
      );
      child.once('exit', (code) => reject(new Error(`mosquitto exited with ${code}: ${stderr.trim()}`)));
    });
    exited.catch(() => {});
    await Promise.race([waitForPort(port, 10_000), exited]);
  };
  await start();
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const stop = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await gone;
    }
  };
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    get pid() {
      return child.pid;
    },
    kill: (signal = 'SIGKILL') => stop(signal),
    restart: start,
    close: async () => {
      process.off('exit', kill);
      await stop('SIGTERM');
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The PUBLISH packets a mosquitto received, as its $SYS tree reports them (sys_interval 1). */
export interface PublishCounter {
  /** [ms since the epoch when the figure arrived, publishes received since the broker started]. */
  readonly samples: (readonly [number, number])[];
  /** Publishes a second between two moments, from the samples nearest inside them. */
  rate(fromMs: number, toMs: number): { perSecond: number; minPerSecond: number; seconds: number };
  stop(): Promise<void>;
}

/**
 * Publishes a second between two moments from a broker's running count ([ms, count] samples): the
 * average from the first to the last sample inside the window, and the slowest interval.
 */
export function publishRate(
  samples: readonly (readonly [number, number])[],
  fromMs: number,
  toMs: number,
): { perSecond: number; minPerSecond: number; seconds: number } {
  const inside = samples.filter(([t]) => t >= fromMs && t <= toMs);
  if (inside.length < 2) return { perSecond: Number.NaN, minPerSecond: Number.NaN, seconds: 0 };
  const [t0, c0] = inside[0]!;
  const [t1, c1] = inside[inside.length - 1]!;
  let min = Number.POSITIVE_INFINITY;
  for (let i = 1; i < inside.length; i++) {
    const [ta, ca] = inside[i - 1]!;
    const [tb, cb] = inside[i]!;
    if (tb > ta) min = Math.min(min, ((cb - ca) * 1000) / (tb - ta));
  }
  return { perSecond: ((c1 - c0) * 1000) / (t1 - t0), minPerSecond: min, seconds: (t1 - t0) / 1000 };
}

/** Subscribes to mosquitto's `$SYS/broker/publish/messages/received`: the rate the broker saw. */
export async function watchPublishes(brokerUrl: string): Promise<PublishCounter> {
  const { default: mqtt } = await import('mqtt');
  const client = await mqtt.connectAsync(brokerUrl, { clientId: `sys-${process.pid}-${Date.now()}` });
  const samples: [number, number][] = [];
  client.on('message', (_topic, payload) => samples.push([Date.now(), Number(payload.toString())]));
  await client.subscribeAsync('$SYS/broker/publish/messages/received');
  return {
    samples,
    rate: (fromMs, toMs) => publishRate(samples, fromMs, toMs),
    stop: () => client.endAsync(),
  };
}
