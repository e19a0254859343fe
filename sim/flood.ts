/**
 * A flood against one agent's inbox (the edge's, in the flood test and bench): garbage bytes (some
 * beyond the size limit), messages signed by strangers, a member's valid but useless searches, and
 * replays of one of them, at up to `rate` messages a second, over loopback only, for `durationMs`.
 * Every message is made before the flood starts (signing is not what is measured), and the loop is
 * bounded by its duration.
 */
import { randomBytes } from 'node:crypto';
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
}

export interface FloodResult {
  sent: number;
  byKind: Record<string, number>;
  seconds: number;
}

export async function flood(opts: FloodOptions): Promise<FloodResult> {
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
  const started = performance.now();
  const stepMs = 10;
  const perStep = Math.max(1, Math.round((opts.rate * stepMs) / 1000));
  try {
    while (performance.now() - started < opts.durationMs) {
      const stepStart = performance.now();
      for (let i = 0; i < perStep; i++) {
        const m = pool[(sent * 7919) % pool.length]!;
        client.publish(m.topic, m.payload, { qos: 0 });
        byKind[m.kind] = (byKind[m.kind] ?? 0) + 1;
        sent++;
      }
      const wait = stepMs - (performance.now() - stepStart);
      await new Promise((r) => setTimeout(r, Math.max(0, wait)));
    }
  } finally {
    await client.endAsync();
  }
  return { sent, byKind, seconds: (performance.now() - started) / 1000 };
}
