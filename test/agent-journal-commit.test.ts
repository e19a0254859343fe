/**
 * The journal's group commit (agent/core/journal.ts) and the bus's part in it (agent/core/bus.ts):
 * staged changes are read back at once, go to disk together in one write at a flush, a `put`, or
 * the end of the turn; a compaction keeps them; and nothing the bus publishes reaches the broker
 * before the journal has flushed (when the flush fails, it waits until one succeeds). A real
 * broker (aedes) carries the messages.
 */
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../agent/core/bus.js';
import type { AgentConfig } from '../agent/core/config.js';
import { Journal } from '../agent/core/journal.js';
import { createLogger } from '../agent/core/log.js';
import { createMetrics } from '../agent/core/metrics.js';
import { Outbox } from '../agent/core/outbox.js';
import { addressOf, encode, signEnvelope } from '../protocol/index.js';
import { type Broker, startEmbeddedBroker } from '../sim/broker.js';
import { tempDir } from './helpers/world.js';

const turn = () => new Promise((r) => setImmediate(r));
const log = createLogger({ level: 'silent' });

describe('group commit in the journal', () => {
  it('reads staged values at once, and writes them all in one flush', () => {
    const dir = tempDir('journal-commit');
    const j = new Journal(dir);
    j.stage('a', { n: 1 });
    j.stage('b', { n: 2 });
    j.stage('a', { n: 3 });
    j.stageDelete('b');
    expect(j.get('a')).toEqual({ n: 3 });
    expect(j.get('b')).toBeUndefined();
    expect(j.unflushed).toBe(true);
    // Nothing on disk yet.
    expect(Journal.read(dir).size).toBe(0);
    j.flush();
    expect(j.flushes).toBe(1);
    expect(j.unflushed).toBe(false);
    expect(Object.fromEntries(Journal.read(dir))).toEqual({ a: { n: 3 } });
    j.close();
  });

  it('a put writes what was staged before it, in order, with one flush', () => {
    const dir = tempDir('journal-commit');
    const j = new Journal(dir);
    j.stage('x', 1);
    j.put('x', 2);
    j.stage('y', 1);
    expect(j.flushes).toBe(1);
    expect(Object.fromEntries(Journal.read(dir))).toEqual({ x: 2 });
    j.close();
    // Closing flushes the rest.
    expect(Object.fromEntries(Journal.read(dir))).toEqual({ x: 2, y: 1 });
    expect(() => j.stage('z', 1)).toThrow(/closed/);
  });

  it('flushes by itself at the end of the turn', async () => {
    const dir = tempDir('journal-commit');
    const j = new Journal(dir);
    j.stage('late', 'yes');
    await turn();
    expect(Object.fromEntries(Journal.read(dir))).toEqual({ late: 'yes' });
    j.close();
  });

  it('a compaction keeps what was staged and leaves nothing to write twice', () => {
    const dir = tempDir('journal-commit');
    const j = new Journal(dir, { maxBytes: 2000 });
    for (let i = 0; i < 40; i++) j.put(`k${i % 5}`, { i, pad: 'x'.repeat(40) });
    j.stage('staged', 1);
    j.compact();
    expect(j.unflushed).toBe(false);
    const before = j.fileBytes;
    j.flush();
    expect(j.fileBytes).toBe(before);
    expect(Journal.read(dir).get('staged')).toBe(1);
    expect(Journal.read(dir).size).toBe(6);
    j.close();
  });

  it('the outbox writes the entries for both parties in one flush, before it publishes', async () => {
    const dir = tempDir('journal-commit');
    const j = new Journal(dir);
    const domain = { chainId: 31337n, verifyingContract: `0x${'33'.repeat(20)}` };
    const key = `0x${randomBytes(32).toString('hex')}`;
    const ev = addressOf(key);
    const hcs = addressOf(`0x${randomBytes(32).toString('hex')}`);
    const txid = `0x${randomBytes(32).toString('hex')}`;
    const env = signEnvelope(encode({ type: 'completion', ev, hcs, txid }), key, domain);
    const onDisk: number[] = [];
    const outbox = new Outbox(
      j,
      async () => void onDisk.push([...Journal.read(dir).keys()].filter((k) => k.startsWith('o:')).length),
      log,
    );
    j.stage('b:bill', { state: 'queued' });
    await outbox.send([ev, hcs], env, 'completion', txid, Date.now() + 60_000);
    // Both entries (and the bill staged before) were on disk at the first publish: one flush.
    expect(onDisk).toEqual([2, 2]);
    expect(j.flushes).toBe(1);
    expect(Journal.read(dir).has('b:bill')).toBe(true);
    j.close();
  });
});

describe('the bus sends nothing before the journal is flushed', () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startEmbeddedBroker();
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('holds its writes until the flush succeeds', async () => {
    const cfg = { mqtt: { url: broker.url, topicPrefix: 'p2pev/v1', keepaliveS: 30 } as AgentConfig['mqtt'] };
    const key = `0x${randomBytes(32).toString('hex')}`;
    const me = addressOf(key);
    const peer = addressOf(`0x${randomBytes(32).toString('hex')}`);
    const events: string[] = [];
    let failures = 1;
    const bus = new Bus({
      mqtt: cfg.mqtt,
      address: me,
      privateKey: key,
      domain: { chainId: 31337n, verifyingContract: `0x${'33'.repeat(20)}` },
      isMember: async () => true,
      log,
      metrics: createMetrics(false),
      clientId: `commit-${randomBytes(4).toString('hex')}`,
      beforeSend: () => {
        if (failures-- > 0) {
          events.push('flush failed');
          throw new Error('disk full');
        }
        events.push('flushed');
      },
    });
    const listener = await mqtt.connectAsync(broker.url, {
      clientId: `listener-${randomBytes(4).toString('hex')}`,
    });
    await listener.subscribeAsync(`${cfg.mqtt.topicPrefix}/to/${peer}/#`, { qos: 1 });
    const received = new Promise<void>((resolve) =>
      listener.on('message', () => {
        events.push('received');
        resolve();
      }),
    );
    await bus.connect();
    try {
      await bus.send(peer, { type: 'completion', ev: me, hcs: peer, txid: `0x${'ab'.repeat(32)}` });
      events.push('published');
      await received;
      // The publish returned at once; the broker had it only after a flush that succeeded.
      expect(events).toEqual(['published', 'flush failed', 'flushed', 'received']);
    } finally {
      await bus.close();
      await listener.endAsync();
    }
  }, 20_000);

  it("the outbox over the bus only stages: a turn's sends are one flush, on disk before the broker has them", async () => {
    const cfg = { mqtt: { url: broker.url, topicPrefix: 'p2pev/v1', keepaliveS: 30 } as AgentConfig['mqtt'] };
    const dir = tempDir('journal-commit');
    const j = new Journal(dir);
    const key = `0x${randomBytes(32).toString('hex')}`;
    const me = addressOf(key);
    const ev = addressOf(`0x${randomBytes(32).toString('hex')}`);
    const hcs = addressOf(`0x${randomBytes(32).toString('hex')}`);
    const domain = { chainId: 31337n, verifyingContract: `0x${'33'.repeat(20)}` };
    const bus = new Bus({
      mqtt: cfg.mqtt,
      address: me,
      privateKey: key,
      domain,
      isMember: async () => true,
      log,
      metrics: createMetrics(false),
      clientId: `commit-${randomBytes(4).toString('hex')}`,
      beforeSend: () => j.flush(),
    });
    const outbox = new Outbox(j, (to, env, type) => bus.publishEnvelope(to, env, type), log, true);
    const listener = await mqtt.connectAsync(broker.url, {
      clientId: `listener-${randomBytes(4).toString('hex')}`,
    });
    await listener.subscribeAsync(`${cfg.mqtt.topicPrefix}/to/+/from/${me}`, { qos: 1 });
    const onDisk: number[] = [];
    const sends = 20;
    const received = new Promise<void>((resolve) =>
      listener.on('message', () => {
        onDisk.push([...Journal.read(dir).keys()].filter((k) => k.startsWith('o:')).length);
        if (onDisk.length === 2 * sends) resolve();
      }),
    );
    await bus.connect();
    try {
      // A batch's transaction messages, each to both parties, in one turn (as the edge sends them).
      const flushes = j.flushes;
      await Promise.all(
        Array.from({ length: sends }, (_, i) => {
          const txid = `0x${i.toString(16).padStart(64, '0')}`;
          const env = signEnvelope(encode({ type: 'completion', ev, hcs, txid }), key, domain);
          return outbox.send([ev, hcs], env, 'completion', txid, Date.now() + 60_000);
        }),
      );
      await received;
      // Every entry was on disk before the first message reached the broker; one write for all.
      expect(onDisk).toEqual(Array(2 * sends).fill(2 * sends));
      expect(j.flushes - flushes).toBe(1);
      expect(outbox.size).toBe(2 * sends);
    } finally {
      await bus.close();
      await listener.endAsync();
      j.close();
    }
  }, 20_000);
});
