/**
 * The gate in front of the bus: what a message must pass before it costs the receiver a signer
 * recovery (~1.3 ms of CPU, the dominant cost of every message), and everything a stranger could
 * make grow, bounded. Cheap checks come first:
 *
 * 1. size and framing: at most MAX_ENVELOPE_BYTES, and the payload decodes (the generated fast
 *    path, microseconds);
 * 2. the claimed sender (the message's own sender field, read without recovering anything) against
 *    a bounded cache of members; an address not in the cache is looked up on chain, a few at a time
 *    (the rest are dropped `lookup-busy`), and the answer is cached either way;
 * 3. a bounded inbound queue with a share per claimed sender, so that spam in one member's name
 *    (or forged in it) cannot crowd out the others;
 * 4. the replay cache (an envelope seen before, byte for byte: bounded, forgets its oldest half when
 *    full), and a per-member budget of signature checks;
 * 5. then the signature (bus.ts), freshness of what starts a session (`search`, `request` carry
 *    `t`, unix seconds, in optional data), and a per-member token bucket on `search` and `request`.
 *
 * Every refusal is a drop with a reason (`DropReason`), counted by the bus.
 */
import * as nodeCrypto from 'node:crypto';
import { type Domain, decode, type Message, SENDER_FIELDS, SIGNATURE_BYTES } from '../../protocol/index.js';

export type DropReason =
  | 'size'
  | 'decode'
  | 'signature'
  | 'sender-mismatch'
  | 'optional'
  | 'not-member'
  | 'lookup-busy'
  | 'overload'
  | 'replay'
  | 'stale'
  | 'rate'
  | 'not-for-us';

export const DROP_REASONS: readonly DropReason[] = [
  'size',
  'decode',
  'signature',
  'sender-mismatch',
  'optional',
  'not-member',
  'lookup-busy',
  'overload',
  'replay',
  'stale',
  'rate',
  'not-for-us',
];

/**
 * The largest envelope any honest device sends: a suggestion of 255 stations (42 + 58 × 255 bytes)
 * with 1,024 bytes of optional data and the signature, 15,921 bytes; 16 KiB holds it.
 */
export const MAX_ENVELOPE_BYTES = 16 * 1024;

export interface GateLimits {
  /** Addresses whose membership answer is cached (members and strangers alike). */
  memberCache: number;
  /** How long a member's / a stranger's answer is trusted. */
  memberTtlMs: number;
  strangerTtlMs: number;
  /** Chain lookups of unknown claimed senders at once, and waiting their turn; more are dropped (`lookup-busy`). */
  lookupsInFlight: number;
  lookupQueue: number;
  /** Messages waiting for the handler, in all and per claimed sender. */
  queueTotal: number;
  queuePerSender: number;
  /** Envelopes remembered against replay (the oldest half is forgotten when full). */
  replayCache: number;
  /** How old (or how far ahead) a `search`/`request`'s `t` may be. */
  freshnessS: number;
  /** Per member: `search` and `request` allowed in a burst, and refilled per second. */
  burst: number;
  perSecond: number;
  /** Members tracked by the rate limiter. */
  rateMembers: number;
  /**
   * Per member: signature checks allowed in a burst, and refilled per second, before the check. A
   * member (or a forger in its name, on an open broker) that sends more has the rest dropped
   * (`rate`) for the price of a token-bucket lookup, not of a signer recovery.
   */
  verifyBurst: number;
  verifyPerSecond: number;
}

export const DEFAULT_LIMITS: GateLimits = {
  memberCache: 4096,
  memberTtlMs: 60_000,
  strangerTtlMs: 60_000,
  lookupsInFlight: 4,
  lookupQueue: 256,
  queueTotal: 2000,
  queuePerSender: 64,
  replayCache: 20_000,
  freshnessS: 300,
  burst: 10,
  perSecond: 1,
  rateMembers: 4096,
  verifyBurst: 40,
  verifyPerSecond: 20,
};

/**
 * An edge's limits where they differ: it hears from every member it serves, not from a few peers.
 * With a device's 4,096 answers and 4 lookups at a time, an edge of 6,001 members forgot answers
 * before it needed them again and dropped 10,181 messages `lookup-busy` (docs/BENCHMARKS.md,
 * Bigger worlds). ~150 B an entry: 64 k answers and buckets are ~20 MB of a server's memory.
 */
export const EDGE_LIMITS: Partial<GateLimits> = {
  memberCache: 65_536,
  rateMembers: 65_536,
  lookupsInFlight: 16,
  lookupQueue: 1024,
};

/** Message types that start something at the receiver: they carry `t`, and are rate limited. */
export const STARTERS = new Set(['search', 'request']);

export interface Screened {
  msg: Message;
  payload: Uint8Array;
  signature: Uint8Array;
  /** Lowercase addresses the message names as its sender (the signer must be one of them). */
  claimed: string[];
}

/** The addresses a message claims to come from: its sender fields, or the server where it has none. */
export function claimedSenders(msg: Message, server?: string): string[] {
  const fields = SENDER_FIELDS[msg.type];
  if (fields.length === 0) return server ? [server] : [];
  const values = msg as unknown as Record<string, unknown>;
  const out: string[] = [];
  for (const f of fields) if (typeof values[f] === 'string') out.push((values[f] as string).toLowerCase());
  return out;
}

/** Step 1: size and framing, no cryptography. Returns the message and whom it claims to come from. */
export function screen(envelope: Uint8Array, server?: string): Screened | DropReason {
  if (envelope.length > MAX_ENVELOPE_BYTES) return 'size';
  if (envelope.length <= SIGNATURE_BYTES) return 'signature';
  const payload = envelope.subarray(0, envelope.length - SIGNATURE_BYTES);
  const signature = envelope.subarray(envelope.length - SIGNATURE_BYTES);
  const v = signature[64];
  if (v !== 27 && v !== 28) return 'signature';
  let msg: Message;
  try {
    msg = decode(payload);
  } catch {
    return 'decode';
  }
  const claimed = claimedSenders(msg, server);
  if (claimed.length === 0) return 'sender-mismatch';
  return { msg, payload, signature, claimed };
}

/**
 * Cache lifetimes and token buckets run on the monotonic clock: a wall-clock step (NTP after boot)
 * must neither empty every bucket for as long as the step (a step back) nor expire every answer.
 */
const monotonic = () => performance.now();

/** A map that forgets its oldest entries beyond `limit` (insertion order). */
class Bounded<V> extends Map<string, V> {
  constructor(private readonly limit: number) {
    super();
  }
  override set(key: string, value: V): this {
    if (!this.has(key) && this.size >= this.limit) {
      const oldest = this.keys().next().value;
      if (oldest !== undefined) this.delete(oldest);
    }
    return super.set(key, value);
  }
}

/** The membership cache and the bounded lookups in front of it. */
export class MemberCache {
  private readonly answers: Bounded<{ ok: boolean; until: number }>;
  private readonly pending = new Map<string, Promise<boolean>>();

  constructor(
    private readonly isMember: (address: string) => Promise<boolean>,
    private readonly limits: GateLimits,
    private readonly trusted: (address: string) => boolean,
    private readonly now: () => number = monotonic,
  ) {
    this.answers = new Bounded(limits.memberCache);
  }

  /** The cached answer, if fresh; undefined when unknown. */
  known(address: string): boolean | undefined {
    if (this.trusted(address)) return true;
    const hit = this.answers.get(address);
    return hit && hit.until > this.now() ? hit.ok : undefined;
  }

  private running = 0;
  private readonly turns: (() => void)[] = [];

  /**
   * Looks `address` up (one lookup per address at a time, `lookupsInFlight` at once, the rest in
   * turn); 'busy' when `lookupQueue` are already waiting (a flood of made-up senders).
   */
  lookup(address: string): Promise<boolean> | 'busy' {
    const known = this.known(address);
    if (known !== undefined) return Promise.resolve(known);
    const already = this.pending.get(address);
    if (already) return already;
    if (this.pending.size >= this.limits.lookupsInFlight + this.limits.lookupQueue) return 'busy';
    const turn =
      this.running < this.limits.lookupsInFlight
        ? Promise.resolve()
        : new Promise<void>((r) => {
            this.turns.push(r);
          });
    const p = turn
      .then(() => {
        this.running++;
        return this.isMember(address);
      })
      .then((ok) => {
        this.answers.set(address, {
          ok,
          until: this.now() + (ok ? this.limits.memberTtlMs : this.limits.strangerTtlMs),
        });
        return ok;
      })
      .finally(() => {
        this.running--;
        this.pending.delete(address);
        this.turns.shift()?.();
      });
    this.pending.set(address, p);
    return p;
  }

  /** Forgets an address (a member suspended on chain). */
  forget(address: string): void {
    this.answers.delete(address);
  }
}

/**
 * SHA-256 of `data`: node's one-shot `crypto.hash` where it is there (Node ≥ 20.12: ~1.2 against
 * ~2.5 µs for an envelope, no Hash object per message; the edge keys every message it receives),
 * else a Hash object.
 */
const oneShot = (nodeCrypto as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => Buffer }).hash;
export const sha256: (data: Uint8Array) => Uint8Array = oneShot
  ? (data) => oneShot('sha256', data, 'buffer')
  : (data) => nodeCrypto.createHash('sha256').update(data).digest();

/** The replay cache: signatures of accepted envelopes; forgets the oldest half when full. */
/**
 * Envelopes seen before, byte for byte, as two generations of a fixed-size table: a new key goes
 * into the current generation; when it holds half the limit, the older generation is wiped and
 * the current one becomes the older. So between half the limit and the limit of the newest keys
 * are remembered ("forgets the oldest half when full"), in memory allocated once at start: a
 * `Set` of strings grew ~90 B per accepted message up to the limit, which the soak counted as
 * growth for hours.
 *
 * A key is the first 128 bits of the envelope's SHA-256: a collision takes ~2^64 tries, and would
 * only make a message look like a repeat of another (never accept a message not checked).
 * Each generation is an open-addressing table with linear probing at most ~60 % full.
 */
export class ReplayCache {
  private readonly perGeneration: number;
  private readonly mask: number;
  private current: Generation;
  private older: Generation;
  /** Times the oldest half was forgotten. */
  evictions = 0;

  constructor(limit: number) {
    this.perGeneration = Math.max(1, Math.ceil(limit / 2));
    const slots = 2 ** Math.ceil(Math.log2(Math.ceil(this.perGeneration / 0.6) + 1));
    this.mask = slots - 1;
    this.current = generation(slots);
    this.older = generation(slots);
  }

  /** The whole envelope's digest: a repeat is the same bytes, so it needs no signature check. */
  static key(envelope: Uint8Array): Uint8Array {
    return sha256(envelope);
  }

  has(key: Uint8Array): boolean {
    const w = words(key);
    return this.find(this.current, w) >= 0 || this.find(this.older, w) >= 0;
  }

  add(key: Uint8Array): void {
    const w = words(key);
    if (this.find(this.current, w) >= 0) return;
    if (this.current.count >= this.perGeneration) {
      if (this.older.count > 0) this.evictions++;
      const wiped = this.older;
      wiped.keys.fill(0);
      wiped.used.fill(0);
      wiped.count = 0;
      this.older = this.current;
      this.current = wiped;
    }
    let i = (w[0] ?? 0) & this.mask;
    while (this.current.used[i]) i = (i + 1) & this.mask;
    this.current.used[i] = 1;
    this.current.keys.set(w, i * 4);
    this.current.count++;
  }

  /** Forgets everything (tests of what a replay can do once the cache has moved on). */
  clear(): void {
    for (const g of [this.current, this.older]) {
      g.keys.fill(0);
      g.used.fill(0);
      g.count = 0;
    }
  }

  get size(): number {
    return this.current.count + this.older.count;
  }

  /** The slot holding `w` in `g`, or -1. */
  private find(g: Generation, w: Uint32Array): number {
    let i = (w[0] ?? 0) & this.mask;
    while (g.used[i]) {
      const at = i * 4;
      if (
        g.keys[at] === w[0] &&
        g.keys[at + 1] === w[1] &&
        g.keys[at + 2] === w[2] &&
        g.keys[at + 3] === w[3]
      )
        return i;
      i = (i + 1) & this.mask;
    }
    return -1;
  }
}

interface Generation {
  /** Four 32-bit words of key per slot. */
  keys: Uint32Array;
  used: Uint8Array;
  count: number;
}

const generation = (slots: number): Generation => ({
  keys: new Uint32Array(slots * 4),
  used: new Uint8Array(slots),
  count: 0,
});

/** The key's first 128 bits as four words (any byte offset and alignment). */
function words(key: Uint8Array): Uint32Array {
  if (key.length < 16) throw new Error('a replay key is a digest of at least 16 bytes');
  const v = new DataView(key.buffer, key.byteOffset, 16);
  return Uint32Array.of(v.getUint32(0), v.getUint32(4), v.getUint32(8), v.getUint32(12));
}

/** Token buckets per member for the messages that start something. */
export class RateLimiter {
  private readonly buckets: Bounded<{ tokens: number; at: number }>;

  constructor(
    private readonly limits: Pick<GateLimits, 'burst' | 'perSecond' | 'rateMembers'>,
    private readonly now: () => number = monotonic,
  ) {
    this.buckets = new Bounded(limits.rateMembers);
  }

  /** Takes one token for `address`; false when its bucket is empty. */
  take(address: string): boolean {
    const now = this.now();
    const b = this.buckets.get(address) ?? { tokens: this.limits.burst, at: now };
    b.tokens = Math.min(this.limits.burst, b.tokens + ((now - b.at) / 1000) * this.limits.perSecond);
    b.at = now;
    this.buckets.set(address, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** The inbound queue's bounds: in all, and per claimed sender. */
export class QueueShares {
  private total = 0;
  private readonly per = new Map<string, number>();

  constructor(private readonly limits: GateLimits) {}

  /** Takes a place for a message claimed by `sender`; false when the queue (or its share) is full. */
  enter(sender: string): boolean {
    const n = this.per.get(sender) ?? 0;
    if (this.total >= this.limits.queueTotal || n >= this.limits.queuePerSender) return false;
    this.per.set(sender, n + 1);
    this.total++;
    return true;
  }

  leave(sender: string): void {
    const n = (this.per.get(sender) ?? 1) - 1;
    if (n <= 0) this.per.delete(sender);
    else this.per.set(sender, n);
    this.total--;
  }

  get size(): number {
    return this.total;
  }
}

/** Whether a `search`/`request` is fresh: its `t` (unix seconds, optional data) within the window. */
export function isFresh(msg: Message, limits: GateLimits, nowMs = Date.now()): boolean {
  if (!STARTERS.has(msg.type)) return true;
  const t = (msg.optional as { t?: unknown } | undefined)?.t;
  if (typeof t !== 'number' || !Number.isFinite(t)) return false;
  return Math.abs(nowMs / 1000 - t) <= limits.freshnessS;
}

export type { Domain };
