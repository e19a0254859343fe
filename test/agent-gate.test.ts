/**
 * The bus's gate (agent/core/gate.ts) on its own: cheap checks before the signature, everything a
 * stranger can grow bounded, drops counted by reason. A Bus without a broker: `arrive` is what the
 * MQTT client calls for every message.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { Bus, type Incoming } from '../agent/core/bus.js';
import {
  DEFAULT_LIMITS,
  type GateLimits,
  MAX_ENVELOPE_BYTES,
  RateLimiter,
  ReplayCache,
} from '../agent/core/gate.js';
import { createLogger } from '../agent/core/log.js';
import { createMetrics } from '../agent/core/metrics.js';
import { addressOf, encode, type MessageInput, signEnvelope } from '../protocol/index.js';

const domain = { chainId: 31337n, verifyingContract: `0x${'11'.repeat(20)}` };
const key = () => `0x${randomBytes(32).toString('hex')}`;
const now = () => Math.floor(Date.now() / 1000);

function gateWorld(limits: Partial<GateLimits> = {}, isMember?: (a: string) => Promise<boolean>) {
  const meKey = key();
  const memberKeys = [key(), key(), key()];
  const members = new Set(memberKeys.map(addressOf));
  const lookups: string[] = [];
  const handled: Incoming[] = [];
  let hold: Promise<void> | undefined;
  const bus = new Bus({
    mqtt: { url: 'mqtt://unused', topicPrefix: 'p2pev/v1', keepaliveS: 30 },
    address: addressOf(meKey),
    privateKey: meKey,
    domain,
    isMember:
      isMember ??
      (async (a) => {
        lookups.push(a);
        return members.has(a);
      }),
    log: createLogger({ level: 'silent' }),
    metrics: createMetrics(false),
    limits,
  });
  bus.onMessage(async (m) => {
    handled.push(m);
    await hold;
  });
  const request = (signer: string, extra: Record<string, unknown> = {}, sender = addressOf(signer)) =>
    signEnvelope(
      encode({
        type: 'request',
        status: 0,
        sender,
        receiver: bus.inbox.split('/').pop()!,
        // A key given as null is left out (an unstamped request).
        optional: Object.fromEntries(
          Object.entries({ wh: 1000, n: randomBytes(6).toString('hex'), t: now(), ...extra }).filter(
            ([, v]) => v !== null,
          ),
        ),
      } as MessageInput),
      signer,
      domain,
    );
  return {
    bus,
    memberKeys,
    lookups,
    handled,
    request,
    block: () => {
      let release!: () => void;
      hold = new Promise((r) => {
        release = r;
      });
      return () => {
        hold = undefined;
        release();
      };
    },
    settle: async () => {
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setImmediate(r));
        await bus.idle();
      }
    },
  };
}

describe('the gate', () => {
  it('drops oversized and unframed bytes before anything else', async () => {
    const w = gateWorld();
    w.bus.arrive(new Uint8Array(MAX_ENVELOPE_BYTES + 1));
    const garbage = randomBytes(200);
    garbage[199] = 27; // a plausible v: framing passes, the payload does not decode
    garbage[0] = 0xf0;
    w.bus.arrive(garbage);
    w.bus.arrive(randomBytes(10));
    await w.settle();
    expect(w.bus.droppedBy).toEqual({ size: 1, decode: 1, signature: 1 });
    expect(w.lookups).toEqual([]);
    expect(w.handled).toEqual([]);
  });

  it('checks the claimed sender against the member cache before the signature', async () => {
    const w = gateWorld();
    const stranger = key();
    const msg = w.request(stranger);
    // A broken signature (high s) from a stranger is refused as a stranger: no recovery was tried.
    const broken = Uint8Array.from(msg);
    broken.fill(0xff, broken.length - 33, broken.length - 1);
    w.bus.arrive(broken);
    await w.settle();
    expect(w.bus.droppedBy).toEqual({ 'not-member': 1 });
    // The answer is cached: 100 more in the same name cost no lookup at all.
    for (let i = 0; i < 100; i++) w.bus.arrive(w.request(stranger));
    await w.settle();
    expect(w.lookups).toEqual([addressOf(stranger)]);
    expect(w.bus.droppedBy['not-member']).toBe(101);
    // A member's message is handled.
    w.bus.arrive(w.request(w.memberKeys[0]!));
    await w.settle();
    expect(w.handled.map((h) => h.signer)).toEqual([addressOf(w.memberKeys[0]!)]);
  });

  it('a member named by someone else is refused at the signature', async () => {
    const w = gateWorld();
    w.bus.arrive(w.request(key(), {}, addressOf(w.memberKeys[0]!)));
    await w.settle();
    expect(w.bus.droppedBy).toEqual({ 'sender-mismatch': 1 });
  });

  it('bounds the lookups of unknown senders, and the member cache', async () => {
    const never = new Promise<boolean>(() => {});
    const w = gateWorld({ lookupsInFlight: 3, lookupQueue: 4, memberCache: 50 }, () => never);
    for (let i = 0; i < 10; i++) w.bus.arrive(w.request(key()));
    await w.settle();
    // Three under way, four waiting their turn, three refused.
    expect(w.bus.droppedBy['lookup-busy']).toBe(3);
    const cached = gateWorld({ memberCache: 50, lookupsInFlight: 1000 });
    for (let i = 0; i < 500; i++) cached.bus.arrive(cached.request(key()));
    await cached.settle();
    expect(cached.bus.droppedBy['not-member']).toBe(500);
    // The cache never holds more than its limit (entries live in a private map: count what's known).
    expect((cached.bus.members as unknown as { answers: Map<string, unknown> }).answers.size).toBe(50);
  });

  it('bounds the queue per claimed sender, so one name cannot crowd out another', async () => {
    const w = gateWorld({ queuePerSender: 3, queueTotal: 100 });
    // Warm the member cache, then hold the handler.
    w.bus.arrive(w.request(w.memberKeys[0]!));
    w.bus.arrive(w.request(w.memberKeys[1]!));
    await w.settle();
    const release = w.block();
    for (let i = 0; i < 10; i++) w.bus.arrive(w.request(w.memberKeys[0]!));
    w.bus.arrive(w.request(w.memberKeys[1]!));
    expect(w.bus.queued).toBe(4);
    expect(w.bus.droppedBy.overload).toBe(7);
    release();
    await w.settle();
    expect(w.handled.filter((h) => h.signer === addressOf(w.memberKeys[1]!))).toHaveLength(2);
    expect(w.bus.queued).toBe(0);
  });

  it('replays, stale and unstamped starters, and a member beyond its rate are dropped', async () => {
    const w = gateWorld();
    const m = w.memberKeys[0]!;
    const once = w.request(m);
    w.bus.arrive(once);
    w.bus.arrive(once);
    w.bus.arrive(w.request(m, { t: now() - DEFAULT_LIMITS.freshnessS - 5 }));
    w.bus.arrive(w.request(m, { t: null }));
    w.bus.arrive(w.request(m, { t: 'yesterday' }));
    await w.settle();
    expect(w.bus.droppedBy).toEqual({ replay: 1, stale: 2, optional: 1 });
    // The burst is 10 starters; one was used.
    for (let i = 0; i < 12; i++) w.bus.arrive(w.request(m));
    await w.settle();
    expect(w.bus.droppedBy.rate).toBe(3);
    expect(w.handled).toHaveLength(10);
  });

  it('the largest honest envelope fits the size limit', () => {
    const a = addressOf(key());
    const big = signEnvelope(
      encode({
        type: 'suggestion',
        server: a,
        requester: a,
        stations: Array.from({ length: 255 }, () => ({
          hcs: a,
          distanceM: 2 ** 32 - 1,
          meanRating: 500,
          priceWeiPerKWh: 2n ** 256n - 1n,
        })),
        optional: { pad: 'x'.repeat(1000) },
      }),
      key(),
      domain,
    );
    expect(big.length).toBeGreaterThan(15_800);
    expect(big.length).toBeLessThanOrEqual(MAX_ENVELOPE_BYTES);
  });

  it("a wall-clock step back does not empty a member's bucket (monotonic time)", () => {
    const rate = new RateLimiter(DEFAULT_LIMITS);
    expect(rate.take('a')).toBe(true);
    const real = Date.now();
    const spy = vi.spyOn(Date, 'now').mockReturnValue(real - 600_000);
    try {
      for (let i = 1; i < DEFAULT_LIMITS.burst; i++) expect(rate.take('a')).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });

  it('the replay cache forgets its oldest half when full', () => {
    const cache = new ReplayCache(10);
    const k = (i: number) => ReplayCache.key(Buffer.from(`k${i}`));
    for (let i = 0; i < 11; i++) cache.add(k(i));
    expect(cache.size).toBe(6);
    expect(cache.has(k(0))).toBe(false);
    expect(cache.has(k(4))).toBe(false);
    expect(cache.has(k(5))).toBe(true);
    expect(cache.has(k(10))).toBe(true);
    expect(cache.evictions).toBe(1);
    cache.add(k(10));
    expect(cache.size).toBe(6);
  });

  it('the replay cache remembers between half its limit and its limit of the newest keys, in a fixed table', () => {
    const limit = 2_000;
    const cache = new ReplayCache(limit);
    const k = (i: number) => ReplayCache.key(Buffer.from(`envelope ${i}`));
    for (let i = 0; i < 5 * limit; i++) {
      cache.add(k(i));
      expect(cache.size).toBeLessThanOrEqual(limit);
    }
    // The newest half of the limit is always there; everything older than the limit is gone.
    for (let i = 5 * limit - limit / 2; i < 5 * limit; i++) expect(cache.has(k(i))).toBe(true);
    for (let i = 0; i < 4 * limit; i++) expect(cache.has(k(i))).toBe(false);
    // Ten generations filled: nine swaps, the first of which wiped an empty one.
    expect(cache.evictions).toBe(8);
    // Keys differing past their 16th byte are the same key; those differing in any of the 16 are not.
    const a = new Uint8Array(32).fill(7);
    const b = Uint8Array.from(a);
    b[31] = 8;
    const c = Uint8Array.from(a);
    c[15] = 8;
    cache.add(a);
    expect(cache.has(b)).toBe(true);
    expect(cache.has(c)).toBe(false);
  });
});
