/**
 * A flood against one agent's inbox (the edge's, in the flood test and bench): garbage bytes (some
 * beyond the size limit), messages signed by strangers, a member's valid but useless searches, and
 * replays of one of them, at up to `rate` messages a second, over loopback only, for `durationMs`.
 * Every message is made before the flood starts (signing is not what is measured), and the loop is
 * bounded by its duration.
 *
 * One MQTT client in one thread tops out near 9,000 messages/s here; `publishers` > 1 splits the
 * rate over that many worker threads, each its own client (the threads run on all cores, beside
 * the broker and the agents).
 */
import { randomBytes } from 'node:crypto';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import mqtt from 'mqtt';
import { addressOf, type Domain, encode, signEnvelope } from '../protocol/index.js';

export interface FloodOptions {
  brokerUrl: string;
  target: string;
  /** The target's edge (the searches name it as server). */
  server: string;
  domain: Domain;
  /** A member's key: its valid searches are the spam a compromised member sends. */
  memberKey: string;
  rate: number;
  durationMs: number;
  prefix?: string;
  /** Worker threads publishing in parallel, each `rate / publishers` (default 1: this thread). */
  publishers?: number;
}

export interface FloodResult {
  sent: number;
  byKind: Record<string, number>;
  seconds: number;
  /** When the publishing began and ended, ms since the epoch. */
  startedAt: number;
  endedAt: number;
  /** How many threads published. */
  publishers: number;
}

/**
 * Floods with `opts.publishers` worker threads (or in this thread for one) and adds up their counts.
 * The threads make their messages and connect first; all start publishing together once every one
 * is ready, so `startedAt`…`endedAt` is the flood itself.
 */
export async function flood(opts: FloodOptions): Promise<FloodResult> {
  const n = Math.max(1, Math.floor(opts.publishers ?? 1));
  if (n === 1) return floodFromHere(opts);
  const entry = new URL(
    import.meta.url.endsWith('.js') ? './flood.js' : './flood-worker.mjs',
    import.meta.url,
  );
  const workers: Worker[] = [];
  const ready: Promise<void>[] = [];
  const done: Promise<FloodResult>[] = [];
  for (let i = 0; i < n; i++) {
    const worker = new Worker(entry, {
      workerData: { flood: { ...opts, rate: opts.rate / n, publishers: 1 } },
    });
    workers.push(worker);
    const failed = new Promise<never>((_, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`flood publisher exited with ${code}`)));
    });
    failed.catch(() => {});
    const messages = (want: string) =>
      Promise.race([
        new Promise<FromPublisher>((resolve) => {
          const on = (m: FromPublisher) => {
            if (m.kind !== want) return;
            worker.off('message', on);
            resolve(m);
          };
          worker.on('message', on);
        }),
        failed,
      ]);
    ready.push(messages('ready').then(() => {}));
    done.push(messages('done').then((m) => (m as { result: FloodResult }).result));
  }
  try {
    await Promise.all(ready);
  } catch (err) {
    for (const w of workers) await w.terminate();
    throw err;
  }
  for (const w of workers) w.postMessage('go');
  const results = await Promise.all(done);
  const byKind: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.byKind)) byKind[k] = (byKind[k] ?? 0) + v;
  const startedAt = Math.min(...results.map((r) => r.startedAt));
  const endedAt = Math.max(...results.map((r) => r.endedAt));
  return {
    sent: results.reduce((a, r) => a + r.sent, 0),
    byKind,
    seconds: (endedAt - startedAt) / 1000,
    startedAt,
    endedAt,
    publishers: n,
  };
}

type FromPublisher = { kind: 'ready' } | { kind: 'done'; result: FloodResult };

/** One publisher: makes its messages, connects, awaits `ready` (the go of all), then publishes. */
async function floodFromHere(opts: FloodOptions, ready?: () => Promise<void>): Promise<FloodResult> {
  const prefix = opts.prefix ?? 'p2pev/v1';
  if (!/^mqtts?:\/\/(127\.0\.0\.1|localhost)[:/]/.test(opts.brokerUrl))
    throw new Error(`flood: loopback brokers only, not ${opts.brokerUrl}`);
  const now = () => Math.floor(Date.now() / 1000);
  const member = addressOf(opts.memberKey);
  const search = (key: string, requester: string) =>
    signEnvelope(
      encode({
        type: 'search',
        requester,
        server: opts.server,
        latitude: 52.52,
        longitude: 13.4,
        radiusM: 1000,
        optional: { n: randomBytes(6).toString('hex'), t: now() },
      }),
      key,
      opts.domain,
    );
  const strangers = Array.from({ length: 64 }, () => `0x${randomBytes(32).toString('hex')}`);
  const pool: { kind: string; topic: string; payload: Buffer }[] = [];
  const inbox = `${prefix}/to/${opts.target}`;
  for (let i = 0; i < 200; i++) {
    const garbage = randomBytes(i % 20 === 0 ? 20_000 : 40 + (i % 200));
    pool.push({ kind: 'garbage', topic: inbox, payload: garbage });
  }
  for (const key of strangers) {
    const who = addressOf(key);
    pool.push({ kind: 'stranger', topic: `${inbox}/from/${who}`, payload: Buffer.from(search(key, who)) });
  }
  for (let i = 0; i < 200; i++)
    pool.push({
      kind: 'member',
      topic: `${inbox}/from/${member}`,
      payload: Buffer.from(search(opts.memberKey, member)),
    });
  const replayed = Buffer.from(search(opts.memberKey, member));
  for (let i = 0; i < 100; i++)
    pool.push({ kind: 'replay', topic: `${inbox}/from/${member}`, payload: replayed });

  const client = await mqtt.connectAsync(opts.brokerUrl, {
    clientId: `flood-${randomBytes(4).toString('hex')}`,
  });
  const byKind: Record<string, number> = {};
  let sent = 0;
  await ready?.();
  const startedAt = Date.now();
  const started = performance.now();
  const stepMs = 5;
  let endedAt = 0;
  try {
    for (let elapsed = 0; elapsed < opts.durationMs; elapsed = performance.now() - started) {
      // Catch up to rate × elapsed (a late timer or a slow step does not lower the rate), but never
      // more than 100 ms' worth at once.
      const due = Math.min(Math.floor((opts.rate * elapsed) / 1000) - sent, Math.ceil(opts.rate / 10));
      for (let i = 0; i < due; i++) {
        const m = pool[(sent * 7919) % pool.length]!;
        client.publish(m.topic, m.payload, { qos: 0 });
        byKind[m.kind] = (byKind[m.kind] ?? 0) + 1;
        sent++;
      }
      // Written to the socket before the next step (qos 0 has no other back-pressure).
      if (client.stream.writableNeedDrain)
        await new Promise<void>((r) => {
          const t = setTimeout(r, 100);
          client.stream.once('drain', () => {
            clearTimeout(t);
            r();
          });
        });
      await new Promise((r) => setTimeout(r, stepMs));
    }
    endedAt = Date.now();
  } finally {
    await client.endAsync();
  }
  return { sent, byKind, seconds: (endedAt - startedAt) / 1000, startedAt, endedAt, publishers: 1 };
}

// A publisher thread (see `flood`): floods with its share and hands back its counts.
if (!isMainThread && workerData?.flood && parentPort) {
  const port = parentPort;
  const result = await floodFromHere(
    workerData.flood,
    () =>
      new Promise<void>((go) => {
        port.once('message', () => go());
        port.postMessage({ kind: 'ready' } satisfies FromPublisher);
      }),
  );
  port.postMessage({ kind: 'done', result } satisfies FromPublisher);
}
