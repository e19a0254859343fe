/**
 * The message bus: signed envelopes over MQTT.
 *
 * Topics (documented in docs/AGENT.md): every device subscribes to its own inbox
 * `<prefix>/to/<address>/#`; a message for a device is published to
 * `<prefix>/to/<recipient>/from/<sender>` (a closed broker's ACL lets a member publish only under
 * its own `from/`: agent/ops/broker.ts), QoS 1, with a persistent
 * session (clean: false, a fixed client id), so the broker keeps what arrives while the device is
 * offline. Payloads are the raw envelopes: packed message ‖ 65-byte signature.
 *
 * A message is accepted only if it passes the gate (agent/core/gate.ts: size, framing, the claimed
 * sender a member, a place in the bounded queue), its signature recovers to a sender the message
 * names, its optional data holds what protocol/peerdata.ts says, the signer is a verified member (or our server), it was not seen before, and what starts a
 * session is fresh and within its sender's rate. Anything else is dropped with a counter by reason
 * (and a log line, at most ten per reason a minute), and changes no state.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import {
  type Domain,
  encode,
  type Message,
  type MessageInput,
  optionalProblem,
  recoverSigner,
  signEnvelope,
  signerMayHaveSent,
} from '../../protocol/index.js';
import type { AgentConfig } from './config.js';
import {
  DEFAULT_LIMITS,
  EDGE_LIMITS,
  type DropReason,
  type GateLimits,
  isFresh,
  MemberCache,
  QueueShares,
  RateLimiter,
  ReplayCache,
  type Screened,
  STARTERS,
  screen,
} from './gate.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { ackIdOf, ackMessage, ackOf, needsAck } from './outbox.js';
import { Backoff } from '../../drivers/index.js';

export type { DropReason } from './gate.js';

export interface Incoming {
  msg: Message;
  signer: string;
  envelope: Uint8Array;
}

export interface BusOptions {
  mqtt: AgentConfig['mqtt'];
  address: string;
  privateKey: string;
  domain: Domain;
  server?: string;
  /** Whether an address is a verified, not suspended member (cached by the caller). */
  isMember: (address: string) => Promise<boolean>;
  log: Logger;
  metrics: Metrics;
  clientId?: string;
  /** The gate's bounds (agent/core/gate.ts); tests shrink them. */
  limits?: Partial<GateLimits>;
  /**
   * Called before anything this bus wrote leaves the process: the agent's journal flushes what it
   * staged (agent/core/journal.ts, group commit), so that nothing is sent or acknowledged before the
   * record it depends on is on disk. Throws if that cannot be done: the writes then wait.
   */
  beforeSend?: () => void;
}

/** Drops logged per reason per minute at most: a flood must not become a flood of log lines. */
const DROP_LOGS_PER_MINUTE = 10;

/** The publisher a topic `<prefix>/to/<recipient>/from/<sender>` names, if it names one. */
export function senderOfTopic(topic: string): string | undefined {
  const at = topic.lastIndexOf('/from/');
  return at < 0 ? undefined : topic.slice(at + 6).toLowerCase();
}

/**
 * The broker login and TLS files of the config, as MQTT client options: the one place that reads
 * them (the agent's bus and `p2pev doctor` connect alike). The password comes from the environment,
 * or from `passwordFile` (`p2pev broker config` writes one per member).
 */
export function mqttCredentials(
  m: AgentConfig['mqtt'],
): Pick<IClientOptions, 'username' | 'password' | 'ca' | 'cert' | 'key'> {
  return {
    ...(m.username ? { username: m.username } : {}),
    ...(m.passwordEnv && process.env[m.passwordEnv] ? { password: process.env[m.passwordEnv] } : {}),
    ...(m.passwordFile ? { password: readFileSync(m.passwordFile, 'utf8').trim() } : {}),
    ...(m.caFile ? { ca: readFileSync(m.caFile) } : {}),
    ...(m.certFile ? { cert: readFileSync(m.certFile) } : {}),
    ...(m.keyFile ? { key: readFileSync(m.keyFile) } : {}),
  };
}

export class Bus {
  private client?: MqttClient;
  private handler: (incoming: Incoming) => Promise<void> | void = () => {};
  /** Reconnect waits while the broker (or the cellular link) is away: 2 s doubling up to 30 s. */
  private readonly backoff = new Backoff({ baseMs: 2000, maxMs: 30_000 });
  /** Sent and received counts, for the session figures. */
  readonly stats = { sent: 0, sentBytes: 0, received: 0, dropped: 0, acks: 0, duplicates: 0 };
  /** Called with each ack that arrives (agent/core/outbox.ts): the id it names and its signer. */
  private ackHandler: (id: string, from: string) => void = () => {};
  /** Drops by reason (also the metric `p2pev_messages_dropped_total{reason}`), for the status. */
  readonly droppedBy: Partial<Record<DropReason, number>> = {};
  private chain: Promise<void> = Promise.resolve();
  readonly limits: GateLimits;
  readonly members: MemberCache;
  readonly replays: ReplayCache;
  private readonly rate: RateLimiter;
  private readonly verifyBudget: RateLimiter;
  private readonly queue: QueueShares;
  private readonly dropLogs = new Map<DropReason, { minute: number; n: number }>();

  constructor(private readonly opts: BusOptions) {
    // An edge (its own address the server's) hears from every member it serves: EDGE_LIMITS.
    const edge = opts.server?.toLowerCase() === opts.address.toLowerCase();
    this.limits = { ...DEFAULT_LIMITS, ...(edge ? EDGE_LIMITS : {}), ...opts.limits };
    this.members = new MemberCache(opts.isMember, this.limits, (a) => a === opts.server);
    this.replays = new ReplayCache(this.limits.replayCache);
    this.rate = new RateLimiter(this.limits);
    this.verifyBudget = new RateLimiter({
      burst: this.limits.verifyBurst,
      perSecond: this.limits.verifyPerSecond,
      rateMembers: this.limits.rateMembers,
    });
    this.queue = new QueueShares(this.limits);
  }

  get inbox(): string {
    return `${this.opts.mqtt.topicPrefix}/to/${this.opts.address}`;
  }

  onMessage(handler: (incoming: Incoming) => Promise<void> | void): void {
    this.handler = handler;
  }

  onAck(handler: (id: string, from: string) => void): void {
    this.ackHandler = handler;
  }

  async connect(): Promise<void> {
    const m = this.opts.mqtt;
    const options: IClientOptions = {
      clientId: this.opts.clientId ?? `p2pev-${this.opts.address.slice(2, 14)}`,
      clean: false,
      keepalive: m.keepaliveS,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      // mqtt-packet would otherwise build a cache of 65,536 two-byte Buffers (one per packet id)
      // at the first publish: ~6 MB of heap for good, for a device that sends a message a second.
      writeCache: false,
      ...mqttCredentials(m),
    };
    const client = mqtt.connect(m.url, options);
    this.client = client;
    client.on('message', (topic, payload) => {
      // The PUBACK mqtt.js writes for it, and what handling it sends, go out with this turn's writes.
      this.corkUntilNextTurn();
      this.arrive(new Uint8Array(payload), senderOfTopic(topic));
    });
    client.on('connect', () => {
      this.backoff.reset();
      client.options.reconnectPeriod = 1000;
      this.opts.log.info({ broker: m.url }, 'broker connected');
    });
    client.on('offline', () => {
      const retryMs = this.backoff.next();
      client.options.reconnectPeriod = retryMs;
      this.opts.log.warn({ broker: m.url, retryMs }, 'broker unreachable; retrying');
    });
    client.on('error', (err) => this.opts.log.warn({ err: err.message }, 'mqtt error'));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`no answer from the MQTT broker at ${m.url} within 15 s: is it running and reachable?`),
          ),
        15_000,
      );
      client.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    // The inbox and everything under it: `<inbox>/from/<sender>` (the broker's ACL checks the sender).
    await client.subscribeAsync(`${this.inbox}/#`, { qos: 1 });
    // A persistent session of an older version subscribed to the inbox alone: one is enough.
    await client.unsubscribeAsync(this.inbox).catch(() => {});
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Encodes and signs `msg` with the device key, without sending it. */
  async sign(msg: MessageInput): Promise<Uint8Array> {
    return signEnvelope(encode(msg), this.opts.privateKey, this.opts.domain);
  }

  /**
   * Encodes, signs and publishes `msg` to `to`'s inbox (QoS 1); to several inboxes, signed once (a
   * signature costs more than the rest of a send). Returns the envelope.
   */
  async send(to: string | readonly string[], msg: MessageInput): Promise<Uint8Array> {
    const envelope = await this.sign(msg);
    for (const dest of typeof to === 'string' ? [to] : to)
      await this.publishEnvelope(dest, envelope, msg.type);
    return envelope;
  }

  /**
   * Publishes an envelope (also one signed earlier: a journaled report sent again), QoS 1, without
   * waiting for the broker's acknowledgement. The client keeps the message until it is acknowledged
   * and sends it again after a reconnect; waiting here would hold the agent's lock for a network
   * round trip (or, with the broker away, for as long as it is away), and every message behind it.
   * What must survive a crash is journaled before it is sent, and sent again on restart.
   */
  async publishEnvelope(to: string, envelope: Uint8Array, type = 'envelope'): Promise<void> {
    if (!this.client) throw new Error('bus is not connected');
    // Held until the end of the turn, when the journal is flushed; without a socket to hold (the
    // broker away: mqtt.js keeps the message for the reconnect) the journal is flushed now.
    if (!this.corkUntilNextTurn()) this.opts.beforeSend?.();
    this.client.publish(
      `${this.opts.mqtt.topicPrefix}/to/${to.toLowerCase()}/from/${this.opts.address}`,
      Buffer.from(envelope),
      { qos: 1 },
      (err) => {
        if (err) this.opts.log.warn({ err: err.message, to, type }, 'publish failed');
      },
    );
    this.stats.sent++;
    this.stats.sentBytes += envelope.length;
    this.opts.metrics.messagesOut.inc({ type });
    this.opts.metrics.bytesOut.inc(envelope.length);
  }

  /** The socket whose writes are held until the end of this turn, if any. */
  private corked: MqttClient['stream'] | undefined;

  /**
   * Holds the broker socket's writes until this turn of the event loop ends, then sends them in one
   * system call: a busy edge writes ~20 MQTT packets a session (its publishes, the PUBACKs of what
   * it receives), and one write per packet was ~6 % of its CPU (bench:edge). mqtt.js corks each
   * packet only until the next tick; the writes wait here at most until the loop's check phase
   * (setImmediate), after the messages read in the same turn are handled.
   */
  private corkUntilNextTurn(): boolean {
    const stream = this.client?.stream;
    if (!stream || typeof stream.cork !== 'function') return false;
    if (this.corked === stream) return true;
    // Another socket is still held (a reconnect within the turn): this one is not.
    if (this.corked) return false;
    this.corked = stream;
    stream.cork();
    const release = () => {
      try {
        // What the writes depend on goes to disk first (the journal's group commit).
        this.opts.beforeSend?.();
      } catch (err) {
        this.opts.log.error({ err }, 'journal not written; nothing is sent until it is');
        setTimeout(release, 1000);
        return;
      }
      this.corked = undefined;
      stream.uncork();
    };
    setImmediate(release);
    return true;
  }

  private drop(reason: DropReason, detail: Record<string, unknown>): void {
    this.stats.dropped++;
    this.droppedBy[reason] = (this.droppedBy[reason] ?? 0) + 1;
    this.opts.metrics.dropped.inc({ reason });
    const minute = Math.floor(Date.now() / 60_000);
    const logged = this.dropLogs.get(reason);
    if (logged?.minute !== minute) this.dropLogs.set(reason, { minute, n: 1 });
    else if (++logged.n > DROP_LOGS_PER_MINUTE) return;
    this.opts.log.warn({ reason, ...detail }, 'message dropped');
  }

  /**
   * A message from the broker: the cheap checks now (size, framing, the claimed sender against the
   * member cache, a place in the queue), the signature later, in turn. Nothing here waits on
   * anything but a bounded member lookup.
   */
  arrive(envelope: Uint8Array, topicSender?: string) {
    const s = screen(envelope, this.opts.server);
    if (typeof s === 'string') return this.drop(s, { bytes: envelope.length });
    // The topic names its publisher (the broker's ACL makes it true on a closed broker): it must be
    // a sender the message claims.
    if (topicSender !== undefined && !s.claimed.includes(topicSender))
      return this.drop('sender-mismatch', { type: s.msg.type, topic: topicSender });
    let unknown: string | undefined;
    for (const a of s.claimed) {
      const known = this.members.known(a);
      if (known === false && s.msg.type !== 'registration')
        return this.drop('not-member', { type: s.msg.type, claimed: a });
      if (known === undefined) unknown ??= a;
    }
    // Registrations come from strangers by nature: one budget and one queue share for all of them.
    const by = s.msg.type === 'registration' ? '*registration' : (topicSender ?? s.claimed[0] ?? '');
    if (unknown === undefined || s.msg.type === 'registration')
      return this.admit(envelope, s, by, topicSender);
    const lookups = s.claimed
      .filter((a) => this.members.known(a) === undefined)
      .map((a) => this.members.lookup(a));
    if (lookups.includes('busy')) return this.drop('lookup-busy', { type: s.msg.type, claimed: unknown });
    void Promise.all(lookups as Promise<boolean>[]).then(
      (answers) => {
        // The answers themselves: read back from the cache they may already be gone (a full
        // cache evicts its oldest, an answer's lifetime may end), which made a member a stranger.
        if (!answers.some(Boolean) && !s.claimed.some((a) => this.members.known(a)))
          return this.drop('not-member', { type: s.msg.type, claimed: unknown });
        this.admit(envelope, s, by, topicSender);
      },
      (err: Error) => this.drop('lookup-busy', { type: s.msg.type, claimed: unknown, err: err.message }),
    );
  }

  /**
   * The last cheap checks, then a place in the queue: a repeat of an envelope already accepted is
   * dropped here (or only acknowledged again), and each member has a budget of signature checks.
   * `by`: the publisher the topic names (the first claimed sender where it names none).
   */
  private admit(envelope: Uint8Array, s: Screened, by: string, topicSender?: string) {
    const key = ReplayCache.key(envelope);
    const repeat = this.replays.has(key);
    if (repeat && !needsAck(s.msg)) return this.drop('replay', { type: s.msg.type, claimed: by });
    if (!repeat && !this.verifyBudget.take(by)) return this.drop('rate', { type: s.msg.type, claimed: by });
    if (!this.queue.enter(by)) return this.drop('overload', { type: s.msg.type, claimed: by });
    // One message at a time, in arrival order: handlers change session state.
    this.chain = this.chain
      .then(() =>
        repeat ? this.reacknowledge(envelope, s, topicSender) : this.check(envelope, s, key, topicSender),
      )
      .catch((err) => {
        this.opts.log.error({ err }, 'message handler failed');
      })
      .finally(() => this.queue.leave(by));
  }

  /**
   * A message resent because our ack was lost: the same bytes as one accepted (so signed by whom it
   * says), acknowledged again, not handled again, nor checked again. The ack goes to the sender it
   * names, or of two (a completion or termination: either party may sign it) to the one whose
   * topic it came by (checked against the claimed senders on arrival); the signature is recovered
   * only where neither says (`publisher` undefined: a message read from elsewhere). On an open
   * broker a forged topic sends the ack to the other party of the session: an ack only stops a
   * resend, and the signer's own resends come by its own topic and are acknowledged to it.
   */
  private async reacknowledge(envelope: Uint8Array, s: Screened, publisher?: string): Promise<void> {
    this.stats.duplicates++;
    const named = s.claimed.length === 1 ? s.claimed[0] : s.claimed.find((a) => a === publisher);
    const signer = named ?? recoverSigner(s.payload, s.signature, this.opts.domain);
    await this.acknowledge(s.msg, signer, envelope);
  }

  /** Checks one envelope and hands it to the handler; exported for tests of the drop rules. */
  async receive(envelope: Uint8Array): Promise<void> {
    const s = screen(envelope, this.opts.server);
    if (typeof s === 'string') return this.drop(s, { bytes: envelope.length });
    if (s.msg.type !== 'registration') {
      for (const a of s.claimed) {
        const answer = this.members.lookup(a);
        if (answer !== 'busy') await answer.catch(() => false);
      }
    }
    const key = ReplayCache.key(envelope);
    if (this.replays.has(key)) {
      if (needsAck(s.msg)) return this.reacknowledge(envelope, s);
      return this.drop('replay', { type: s.msg.type });
    }
    return this.check(envelope, s, key);
  }

  /**
   * The expensive half, in turn: the signature, the signer's membership, freshness, rate.
   * `publisher`: the sender the topic names, if any.
   */
  private async check(envelope: Uint8Array, s: Screened, key: Uint8Array, publisher?: string): Promise<void> {
    const { msg } = s;
    // Two copies of one envelope in the queue at once (a resend while the first waited its turn):
    // the second is the same bytes as one accepted meanwhile, a repeat, not checked again.
    if (this.replays.has(key)) {
      if (needsAck(msg)) return this.reacknowledge(envelope, s, publisher);
      return this.drop('replay', { type: msg.type, claimed: publisher ?? s.claimed[0] });
    }
    let signer: string;
    try {
      signer = recoverSigner(s.payload, s.signature, this.opts.domain);
    } catch (err) {
      return this.drop('signature', { type: msg.type, error: (err as Error).message });
    }
    if (!signerMayHaveSent(msg, signer, this.opts.server))
      return this.drop('sender-mismatch', { type: msg.type, signer });
    if (msg.type !== 'registration') {
      const member = await this.isMemberNow(signer);
      if (member === 'busy') return this.drop('lookup-busy', { type: msg.type, signer });
      if (!member) return this.drop('not-member', { type: msg.type, signer });
    }
    const badOptional = optionalProblem(msg);
    if (badOptional) return this.drop('optional', { type: msg.type, signer, problem: badOptional });
    const ack = ackOf(msg);
    if (ack) {
      // An ack is never handled as what its type says, nor remembered, nor acknowledged.
      this.stats.acks++;
      this.ackHandler(ack, signer);
      return;
    }
    if (!isFresh(msg, this.limits)) return this.drop('stale', { type: msg.type, signer });
    // Registrations come from strangers by nature: one bucket for all of them.
    const bucket = msg.type === 'registration' ? '*registration' : signer;
    if (
      (STARTERS.has(msg.type) || msg.type === 'reqAuthInfo' || msg.type === 'registration') &&
      !this.rate.take(bucket)
    )
      return this.drop('rate', { type: msg.type, signer });
    this.replays.add(key);
    this.stats.received++;
    this.opts.metrics.messagesIn.inc({ type: msg.type });
    await this.handler({ msg, signer, envelope });
    // After the handler: what it learnt is journaled before the sender stops resending.
    if (needsAck(msg)) await this.acknowledge(msg, signer, envelope);
  }

  /**
   * Whether the signer is a member, when its turn comes: the cached answer, or, where the answer
   * checked on arrival has since expired or been evicted (the message waited in a long queue: a
   * loaded station's, or an edge with more members than its cache holds), asked again. Before,
   * such a message from a verified member was dropped as `not-member` (the 6,000-agent world
   * dropped hundreds of cars' requests so at its busy stations).
   */
  private async isMemberNow(signer: string): Promise<boolean | 'busy'> {
    const known = this.members.known(signer);
    if (known !== undefined) return known;
    const answer = this.members.lookup(signer);
    return answer === 'busy' ? 'busy' : answer.catch(() => 'busy' as const);
  }

  private async acknowledge(msg: Message, signer: string, envelope: Uint8Array): Promise<void> {
    const me = this.opts.address;
    const ack = ackMessage(me, this.opts.server === me, msg, ackIdOf(envelope));
    if (!ack) return;
    await this.send(signer, ack).catch((err: Error) =>
      this.opts.log.warn({ to: signer, err: err.message }, 'ack not sent'),
    );
  }

  /** Messages waiting for their turn (bounded by the gate). */
  get queued(): number {
    return this.queue.size;
  }

  /** Waits for messages already received to be handled. */
  idle(): Promise<void> {
    return this.chain;
  }

  /** Lets messages in flight be acknowledged (for up to 3 s: the broker may be away), then closes. */
  async close(): Promise<void> {
    const client = this.client;
    if (!client) return;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), 3000);
    });
    if (await Promise.race([client.endAsync().then(() => false), gaveUp])) await client.endAsync(true);
    clearTimeout(timer);
  }
}
