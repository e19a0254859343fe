/**
 * What the bus spends on signatures: an envelope it accepted once is dropped as a replay before
 * its signature is checked again (a QoS 1 redelivery or a replay costs no recovery), and a
 * message for several devices is signed once.
 */
import { describe, expect, it } from 'vitest';
import { Bus, type Incoming } from '../agent/core/bus.js';
import { createLogger } from '../agent/core/log.js';
import { createMetrics } from '../agent/core/metrics.js';
import { addressOf, encode, signatureChecks, signEnvelope } from '../protocol/index.js';
import { VECTOR_DOMAIN } from '../protocol/vectors.js';

const evKey = `0x${'0a'.repeat(32)}`;
const hcsKey = `0x${'0b'.repeat(32)}`;

function bus(privateKey: string) {
  const metrics = createMetrics(false);
  const b = new Bus({
    mqtt: { url: 'mqtt://127.0.0.1:1', topicPrefix: 'p2pev/v1', keepaliveS: 30 },
    address: addressOf(privateKey),
    privateKey,
    domain: VECTOR_DOMAIN,
    isMember: async () => true,
    log: createLogger({ level: 'silent' }),
    metrics,
  });
  return { b, metrics };
}

describe('signature checks in the bus', () => {
  it('an envelope seen before is dropped as a replay without a second check', async () => {
    const { b, metrics } = bus(hcsKey);
    const got: Incoming[] = [];
    b.onMessage((m) => {
      got.push(m);
    });
    const env = signEnvelope(
      encode({
        type: 'request',
        status: 0,
        sender: addressOf(evKey),
        receiver: addressOf(hcsKey),
        // A request carries its send time (the gate refuses a stale one).
        optional: { t: Math.floor(Date.now() / 1000) },
      }),
      evKey,
      VECTOR_DOMAIN,
    );
    const before = signatureChecks.total;
    await b.receive(env);
    expect(signatureChecks.total).toBe(before + 1);
    await b.receive(Uint8Array.from(env));
    expect(signatureChecks.total).toBe(before + 1);
    expect(got.map((m) => m.signer)).toEqual([addressOf(evKey)]);
    expect((await metrics.dropped.get()).values).toEqual([
      expect.objectContaining({ labels: { reason: 'replay' }, value: 1 }),
    ]);
  });

  it('the same message to several devices is signed once: one envelope on every inbox', async () => {
    const { b } = bus(evKey);
    const published: { topic: string; hex: string }[] = [];
    // The MQTT client stands in for the broker: what the bus would publish.
    (b as unknown as { client: unknown }).client = {
      publish: (topic: string, payload: Buffer) => published.push({ topic, hex: payload.toString('hex') }),
    };
    const a = addressOf(hcsKey);
    const c = addressOf(`0x${'0c'.repeat(32)}`);
    const signed = signatureChecks.signed;
    const env = await b.send([a, c], {
      type: 'completion',
      ev: addressOf(evKey),
      hcs: a,
      txid: `0x${'ee'.repeat(32)}`,
    });
    expect(signatureChecks.signed).toBe(signed + 1);
    expect(published.map((p) => p.topic)).toEqual([
      `p2pev/v1/to/${a}/from/${addressOf(evKey)}`,
      `p2pev/v1/to/${c}/from/${addressOf(evKey)}`,
    ]);
    expect(new Set(published.map((p) => p.hex))).toEqual(new Set([Buffer.from(env).toString('hex')]));
  });

  it('a repeat is acknowledged without a second check: queued twice at once, or again later', async () => {
    const edgeKey = `0x${'0d'.repeat(32)}`;
    const metrics = createMetrics(false);
    const edge = addressOf(edgeKey);
    const b = new Bus({
      mqtt: { url: 'mqtt://127.0.0.1:1', topicPrefix: 'p2pev/v1', keepaliveS: 30 },
      address: edge,
      privateKey: edgeKey,
      domain: VECTOR_DOMAIN,
      server: edge,
      isMember: async () => true,
      log: createLogger({ level: 'silent' }),
      metrics,
    });
    const acksTo: string[] = [];
    (b as unknown as { client: unknown }).client = {
      publish: (topic: string) => acksTo.push(topic.slice('p2pev/v1/to/'.length, topic.indexOf('/from/'))),
    };
    const handled: Incoming[] = [];
    b.onMessage((m) => {
      handled.push(m);
    });
    const ev = addressOf(evKey);
    const hcs = addressOf(hcsKey);
    for (const a of [ev, hcs]) await b.members.lookup(a);
    // A completion (either party may sign one), signed by the station.
    const env = signEnvelope(
      encode({ type: 'completion', ev, hcs, txid: `0x${'ef'.repeat(32)}` }),
      hcsKey,
      VECTOR_DOMAIN,
    );
    const before = signatureChecks.total;
    // Resent while the first copy waited its turn: both in the queue at once.
    b.arrive(env, hcs);
    b.arrive(Uint8Array.from(env), hcs);
    await b.idle();
    // And once more later, by the station's topic, then by the car's (a forged topic names the
    // other party of the session: the ack goes there, and nothing is checked or handled again).
    b.arrive(Uint8Array.from(env), hcs);
    await b.idle();
    b.arrive(Uint8Array.from(env), ev);
    await b.idle();
    expect(signatureChecks.total).toBe(before + 1);
    expect(handled.map((m) => m.signer)).toEqual([hcs]);
    expect(acksTo).toEqual([hcs, hcs, hcs, ev]);
    expect(b.stats.duplicates).toBe(3);
  });
});
