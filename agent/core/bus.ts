/**
 * The message bus: signed envelopes over MQTT.
 *
 * Topics (documented in docs/AGENT.md): every device subscribes to its own inbox
 * `<prefix>/to/<address>`; a message for a device is published there, QoS 1, with a persistent
 * session (clean: false, a fixed client id), so the broker keeps what arrives while the device is
 * offline. Payloads are the raw envelopes: packed message ‖ 65-byte signature.
 *
 * A message is accepted only if it decodes, its signature recovers to a sender the message names,
 * its optional data holds what protocol/peerdata.ts says, the signer is a verified member (or our
 * server), and it was not seen before. Anything else is
 * dropped with one log line and a counter, and changes no state.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import {
  DecodeError,
  type Domain,
  decode,
  encode,
  type Message,
  type MessageInput,
  openEnvelope,
  optionalProblem,
  signEnvelope,
  signerMayHaveSent,
} from '../../protocol/index.js';
import type { AgentConfig } from './config.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { Backoff } from '../../drivers/index.js';

export type DropReason =
  | 'decode'
  | 'signature'
  | 'sender-mismatch'
  | 'optional'
  | 'not-member'
  | 'replay'
  | 'not-for-us';

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
}

const RECENT_LIMIT = 20_000;

/**
 * The broker login and TLS files of the config, as MQTT client options: the one place that reads
 * them (the agent's bus and `p2pev doctor` connect alike). The password comes from the environment.
 */
export function mqttCredentials(
  m: AgentConfig['mqtt'],
): Pick<IClientOptions, 'username' | 'password' | 'ca' | 'cert' | 'key'> {
  return {
    ...(m.username ? { username: m.username } : {}),
    ...(m.passwordEnv && process.env[m.passwordEnv] ? { password: process.env[m.passwordEnv] } : {}),
    ...(m.caFile ? { ca: readFileSync(m.caFile) } : {}),
    ...(m.certFile ? { cert: readFileSync(m.certFile) } : {}),
    ...(m.keyFile ? { key: readFileSync(m.keyFile) } : {}),
  };
}

export class Bus {
  private client?: MqttClient;
  private readonly recent = new Set<string>();
  private handler: (incoming: Incoming) => Promise<void> | void = () => {};
  /** Reconnect waits while the broker (or the cellular link) is away: 2 s doubling up to 30 s. */
  private readonly backoff = new Backoff({ baseMs: 2000, maxMs: 30_000 });
  /** Sent and received counts, for the session figures. */
  readonly stats = { sent: 0, sentBytes: 0, received: 0, dropped: 0 };
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: BusOptions) {}

  get inbox(): string {
    return `${this.opts.mqtt.topicPrefix}/to/${this.opts.address}`;
  }

  onMessage(handler: (incoming: Incoming) => Promise<void> | void): void {
    this.handler = handler;
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
    client.on('message', (_topic, payload) => {
      // One message at a time, in arrival order: handlers change session state.
      this.chain = this.chain
        .then(() => this.receive(new Uint8Array(payload)))
        .catch((err) => {
          this.opts.log.error({ err }, 'message handler failed');
        });
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
    await client.subscribeAsync(this.inbox, { qos: 1 });
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
    this.client.publish(
      `${this.opts.mqtt.topicPrefix}/to/${to.toLowerCase()}`,
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

  private drop(reason: DropReason, detail: Record<string, unknown>): void {
    this.stats.dropped++;
    this.opts.metrics.dropped.inc({ reason });
    this.opts.log.warn({ reason, ...detail }, 'message dropped');
  }

  /** Checks one envelope and hands it to the handler; exported for tests of the drop rules. */
  async receive(envelope: Uint8Array): Promise<void> {
    // An envelope accepted before (a QoS 1 redelivery, a replay) is dropped before its signature
    // is checked again: the key is its signature, which only its own payload and signer can have.
    const key =
      envelope.length > 65 ? Buffer.from(envelope.subarray(envelope.length - 65)).toString('base64') : '';
    if (key && this.recent.has(key)) {
      this.drop('replay', { bytes: envelope.length });
      return;
    }
    let signer: string;
    let msg: Message;
    try {
      const opened = openEnvelope(envelope, this.opts.domain);
      signer = opened.signer;
      msg = decode(opened.payload);
    } catch (err) {
      if (err instanceof DecodeError) {
        this.drop(err.field === 'signature' || err.field === 'envelope' ? 'signature' : 'decode', {
          error: err.message,
          bytes: envelope.length,
        });
        return;
      }
      throw err;
    }
    if (!signerMayHaveSent(msg, signer, this.opts.server)) {
      this.drop('sender-mismatch', { type: msg.type, signer });
      return;
    }
    const badOptional = optionalProblem(msg);
    if (badOptional) {
      this.drop('optional', { type: msg.type, signer, problem: badOptional });
      return;
    }
    if (signer !== this.opts.server && msg.type !== 'registration' && !(await this.opts.isMember(signer))) {
      this.drop('not-member', { type: msg.type, signer });
      return;
    }
    this.remember(key);
    this.stats.received++;
    this.opts.metrics.messagesIn.inc({ type: msg.type });
    await this.handler({ msg, signer, envelope });
  }

  private remember(key: string): void {
    this.recent.add(key);
    if (this.recent.size > RECENT_LIMIT) {
      // Sets iterate in insertion order: forget the oldest half.
      let n = RECENT_LIMIT / 2;
      for (const k of this.recent) {
        if (n-- <= 0) break;
        this.recent.delete(k);
      }
    }
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
