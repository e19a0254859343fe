/**
 * A role's context (agent/core/context.ts) from in-memory parts, for unit tests of the role logic:
 * a real config (parsed with the schema's defaults), a real journal in a temp dir, real signing and
 * decoding, and fakes for what would need a chain node or a broker: the chain port answers from a
 * table, the bus records what is sent.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet } from 'ethers';
import { parseConfig } from '../../agent/core/config.js';
import type { ChainPort, MeteredContext, MeteringPort, RoleContext } from '../../agent/core/context.js';
import type { Incoming } from '../../agent/core/bus.js';
import { Journal } from '../../agent/core/journal.js';
import { createLogger } from '../../agent/core/log.js';
import { createMetrics } from '../../agent/core/metrics.js';
import {
  canMove,
  OPEN_STATES,
  type SessionIn,
  type SessionRecord,
  type MovePatch,
  type NextOf,
} from '../../agent/core/session.js';
import type { Deployment } from '../../contracts/deploy.js';
import {
  addressOf,
  type Domain,
  decode,
  encode,
  type Message,
  type MessageInput,
  SIGNATURE_BYTES,
  signEnvelope,
} from '../../protocol/index.js';

export interface Party {
  key: string;
  address: string;
}

export function party(): Party {
  const key = Wallet.createRandom().privateKey;
  return { key, address: addressOf(key) };
}

export const DOMAIN: Domain = {
  chainId: 31337n,
  verifyingContract: '0x00000000000000000000000000000000000c0ffe',
};

/** Signs `msg` as `from` and gives it as the bus hands it to a role (decoded, signer checked). */
export function incoming(from: Party, msg: MessageInput): Incoming {
  const envelope = signEnvelope(encode(msg), from.key, DOMAIN);
  return {
    msg: decode(envelope.subarray(0, envelope.length - SIGNATURE_BYTES)),
    signer: from.address,
    envelope,
  };
}

/** A message a role sent, as its receiver decodes it. */
export interface Sent {
  to: string;
  msg: Message;
}

export interface FakeChainAnswers {
  availableDeposit?: bigint;
  sessionState?: number;
  /** The highest seq the chain holds for the station (issue 12, H). */
  lastSeq?: bigint;
  /** Reservations the role sent (terms' seq and the EV's consent, hex). */
  reserved?: { seq: bigint; consent: string }[];
}

export interface Fake<C extends RoleContext> {
  ctx: C;
  me: Party;
  sent: Sent[];
  journal: Journal;
  sessions: Map<string, SessionRecord>;
  answers: FakeChainAnswers;
}

/** A context for a role of `role`, with the config `extra` (e.g. `{ edge: {...} }`). */
export function fakeContext(
  role: 'ev' | 'hcs' | 'edge',
  extra: Record<string, unknown> = {},
  tolerance = { absToleranceWh: '10', relToleranceBps: '100' },
): Fake<RoleContext> {
  const dir = mkdtempSync(join(tmpdir(), 'p2pev-role-'));
  const me = party();
  const cfg = parseConfig(
    {
      role,
      name: role.toUpperCase(),
      dataDir: dir,
      keystore: { path: 'key.json', passwordEnv: 'P2PEV_KEY_PASSWORD' },
      chain: { rpcUrl: 'http://127.0.0.1:1', deploymentFile: 'deployment.json' },
      mqtt: { url: 'mqtt://127.0.0.1:1' },
      ...(role === 'edge'
        ? {}
        : { meter: { profile: 'sdm630', transport: { kind: 'tcp', host: 'fake', port: 502 } } }),
      ...extra,
    },
    dir,
  );
  const journal = new Journal(dir);
  const sessions = new Map<string, SessionRecord>();
  const sent: Sent[] = [];
  const answers: FakeChainAnswers = {
    availableDeposit: 10n ** 20n,
    sessionState: 0,
    lastSeq: 0n,
    reserved: [],
  };
  const client = {
    availableDeposit: async () => answers.availableDeposit ?? 0n,
    sessionState: async () => answers.sessionState ?? 0,
    lastSeq: async () => answers.lastSeq ?? 0n,
    reserve: async (terms: { seq: bigint }, consent: string) => {
      answers.reserved?.push({ seq: terms.seq, consent });
    },
  };
  const chain = {
    domain: DOMAIN,
    deployment: {
      address: DOMAIN.verifyingContract,
      chainId: 31337,
      block: 0,
      params: tolerance,
    } as Deployment,
    retry: <T>(_what: string, fn: () => Promise<T>) => fn(),
    // Only a reservation is "sent" (recorded in answers.reserved); anything else is refused.
    send: <T>(what: string, fn: (c: typeof client) => Promise<T>) =>
      what === 'reserve' ? fn(client) : Promise.reject(new Error('the fake chain sends nothing')),
    client,
  } as unknown as ChainPort; // only the client calls listed above are answered
  const log = createLogger({ level: 'silent', pretty: false });
  const ctx: RoleContext = {
    cfg,
    address: me.address,
    log,
    metrics: createMetrics(false),
    journal,
    chain,
    bus: {
      sign: async (msg) => signEnvelope(encode(msg), me.key, DOMAIN),
      publishEnvelope: async () => {},
    },
    sessions,
    openSessions: () => [...sessions.values()].filter((s) => OPEN_STATES.includes(s.state)),
    save: (s) => {
      journal.put(`s:${s.id}`, s);
      sessions.set(s.id, s);
    },
    move<R extends SessionRecord, T extends NextOf<R['state']>>(
      s: R,
      to: T,
      patch: MovePatch<R['state'], T>,
    ) {
      if (!canMove(s, to)) return undefined;
      Object.assign(s, patch, { state: to });
      this.save(s);
      return s as SessionIn<T>;
    },
    prune: () => {},
    send: async (to, msg) => {
      // Several devices: one message each, signed once (as the bus does).
      const bytes = encode(msg);
      for (const dest of typeof to === 'string' ? [to] : to) sent.push({ to: dest, msg: decode(bytes) });
      return signEnvelope(bytes, me.key, DOMAIN);
    },
    // What the outbox would resend until acknowledged: recorded once, as sent.
    sendReliably: async (to, msg) => {
      sent.push({ to, msg: decode(encode(msg)) });
    },
    sendEnvelopeReliably: async (to, envelope) => {
      for (const dest of typeof to === 'string' ? [to] : to)
        sent.push({ to: dest, msg: decode(envelope.subarray(0, envelope.length - 65)) });
    },
    exclusive: (fn) => fn(),
  };
  return { ctx, me, sent, journal, sessions, answers };
}

/** The same with a meter. */
export function fakeMeteredContext(
  role: 'ev' | 'hcs',
  metering: MeteringPort,
  extra: Record<string, unknown> = {},
): Fake<MeteredContext> {
  const f = fakeContext(role, extra);
  return { ...f, ctx: { ...f.ctx, metering } };
}
