/**
 * The bus's boundary checks, without a broker: an envelope handed to Bus.receive as the MQTT
 * client would. Optional data that breaks protocol/peerdata.ts is dropped where it arrives.
 */
import { describe, expect, it, vi } from 'vitest';
import { Bus, type Incoming } from '../agent/core/bus.js';
import type { GateLimits } from '../agent/core/gate.js';
import { createLogger } from '../agent/core/log.js';
import { createMetrics } from '../agent/core/metrics.js';
import { encode, type MessageInput, optionalOf, optionalProblem, signEnvelope } from '../protocol/index.js';
import { DOMAIN, incoming, party } from './fakes/context.js';

/** A bus handed envelopes directly; `isMember` answers (and records) each chain lookup. */
function bus(opts: { me?: ReturnType<typeof party>; member?: boolean; limits?: Partial<GateLimits> } = {}) {
  const me = opts.me ?? party();
  const got: Incoming[] = [];
  const asked: string[] = [];
  const b = new Bus({
    mqtt: { url: 'mqtt://127.0.0.1:1', topicPrefix: 'p2pev/v1', keepaliveS: 30 } as never,
    address: me.address,
    privateKey: me.key,
    domain: DOMAIN,
    isMember: async (a) => {
      asked.push(a);
      return opts.member ?? true;
    },
    log: createLogger({ level: 'silent', pretty: false }),
    metrics: createMetrics(false),
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
  b.onMessage((m) => {
    got.push(m);
  });
  return { b, me, got, asked };
}

describe('optional data from peers', () => {
  const ev = party();
  const hcs = party();
  const request = (optional: Record<string, unknown>): MessageInput => ({
    type: 'request',
    status: 0,
    sender: ev.address,
    receiver: hcs.address,
    optional,
  });

  it('a request asking for a number of Wh passes, typed', async () => {
    const { b, got } = bus();
    await b.receive(
      signEnvelope(encode(request({ wh: 1500, n: 'abc', t: Math.floor(Date.now() / 1000) })), ev.key, DOMAIN),
    );
    expect(got).toHaveLength(1);
    const msg = got[0]?.msg;
    if (msg?.type !== 'request') throw new Error('not a request');
    expect(optionalOf(msg).wh).toBe(1500);
    expect(b.stats.dropped).toBe(0);
  });

  it.each([
    [{ wh: 'lots' }, 'wh must be a number'],
    [{ wh: -1 }, 'wh must be at least 0'],
    [{ n: 'x'.repeat(33) }, 'n is longer than 32'],
  ])('a request with %j is dropped at the bus (%s)', async (optional, why) => {
    const { b, got } = bus();
    expect(optionalProblem(incoming(ev, request(optional)).msg)).toBe(why);
    await b.receive(signEnvelope(encode(request(optional)), ev.key, DOMAIN));
    expect(got).toHaveLength(0);
    expect(b.stats.dropped).toBe(1);
  });

  it.each([
    [{ seq: '1', price: '300', maxWh: 5000, settleBy: 1_800_000_000, kw: 11 }, undefined],
    [{ seq: 1, price: '300' }, undefined],
    [{ price: 300 }, 'price must be a decimal string'],
    [{ maxWh: 1.5 }, 'maxWh must be an integer'],
    [{ kw: 'fast' }, 'kw must be a number'],
    [{ seq: -1 }, 'seq must be a whole number'],
    [{ future: { anything: true } }, undefined],
  ])('a response with %j: %s', (optional, why) => {
    const msg = incoming(hcs, {
      type: 'response',
      status: 0,
      sender: hcs.address,
      receiver: ev.address,
      optional,
    }).msg;
    expect(optionalProblem(msg)).toBe(why);
  });
});

/**
 * A member's answer checked when its message arrived may be gone by the message's turn (its
 * lifetime over while the message waited in a loaded agent's queue, or evicted from a full cache):
 * the member is asked about again, not taken for a stranger. Lifetimes of 0 make every answer
 * gone by then. Before, the 6,000-agent world's stations dropped hundreds of cars' requests as
 * `not-member`.
 */
describe("a member's answer gone by the message's turn", () => {
  const ev = party();
  const hcs = party();
  const request = () =>
    signEnvelope(
      encode({
        type: 'request',
        status: 0,
        sender: ev.address,
        receiver: hcs.address,
        optional: { wh: 1500, t: Math.floor(Date.now() / 1000) },
      }),
      ev.key,
      DOMAIN,
    );
  // Answers that expire at once: gone from the cache by the time the message's turn comes.
  const expiringBus = (member: boolean) =>
    bus({ me: hcs, member, limits: { memberTtlMs: 0, strangerTtlMs: 0 } });

  it('is asked for again at the check, and the message handled', async () => {
    const { b, got, asked } = expiringBus(true);
    await b.receive(request());
    expect(got.map((m) => m.msg.type)).toEqual(['request']);
    expect(b.droppedBy['not-member'] ?? 0).toBe(0);
    expect(asked).toEqual([ev.address.toLowerCase(), ev.address.toLowerCase()]);
  });

  it('through the queue too: the answer of the lookup on arrival counts, not the cache read after it', async () => {
    const { b, got } = expiringBus(true);
    b.arrive(request(), ev.address.toLowerCase());
    await vi.waitFor(() => expect(got).toHaveLength(1));
    expect(b.droppedBy['not-member'] ?? 0).toBe(0);
  });

  it('a stranger is still dropped as not-member', async () => {
    const { b, got } = expiringBus(false);
    await b.receive(request());
    b.arrive(request(), ev.address.toLowerCase());
    await vi.waitFor(() => expect(b.droppedBy['not-member']).toBe(2));
    expect(got).toHaveLength(0);
  });
});
