/**
 * Forged, replayed and garbage MQTT messages change nothing: each is dropped with its reason
 * counted, and no session, journal entry or chain state moves. A raw MQTT client plays the
 * attacker on the same broker the agents use.
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/core/runtime.js';
import { addressOf, encode, type MessageInput, signEnvelope } from '../protocol/index.js';
import type { World } from '../sim/world.js';
import { smallWorld, startAgent, waitFor } from './helpers/world.js';

describe('the bus drops what it must not believe', () => {
  let world: World;
  let agents: Agent[] = [];
  let attacker: MqttClient;
  const captured: Buffer[] = [];
  const hcs = () => agents.find((a) => a.cfg.role === 'hcs')!;
  const ev = () => agents.find((a) => a.cfg.role === 'ev')!;

  beforeAll(async () => {
    world = await smallWorld({ edge: true });
    for (const d of world.devices) agents.push(await startAgent(d));
    attacker = await mqtt.connectAsync(world.brokerUrl, { clientId: 'attacker' });
    // The attacker listens to the station's inbox and keeps what the EV sends it.
    await attacker.subscribeAsync(`p2pev/v1/to/${hcs().address}/#`, { qos: 1 });
    attacker.on('message', (_t, payload) => captured.push(Buffer.from(payload)));
    const { id } = (await ev().control('charge', { targetWh: 1500 })) as { id: string };
    const done = await waitFor(
      'a settled session to replay from',
      () => {
        const s = ev().sessions.get(id);
        return s?.state === 'done' ? s : undefined;
      },
      60_000,
    );
    await waitFor('the station to finish too', () =>
      [...hcs().sessions.values()].find((s) => s.txid === done.txid && s.state === 'done'),
    );
  }, 120_000);

  afterAll(async () => {
    await attacker?.endAsync();
    for (const a of agents) await a.stop();
    agents = [];
    await world?.close();
  });

  async function dropsFor(a: Agent): Promise<Record<string, number>> {
    const metric = await a.metrics.dropped.get();
    return Object.fromEntries(metric.values.map((v) => [String(v.labels.reason), v.value]));
  }

  /** Publishes to `target`'s inbox and waits until its drop counter for `reason` moved. */
  async function expectDropped(target: Agent, payload: Uint8Array, reason: string): Promise<void> {
    const before = (await dropsFor(target))[reason] ?? 0;
    const sessions = JSON.stringify([...target.sessions.values()]);
    const journalBytes = target.journal.fileBytes;
    await attacker.publishAsync(`p2pev/v1/to/${target.address}`, Buffer.from(payload), { qos: 1 });
    await waitFor(`a ${reason} drop`, async () => ((await dropsFor(target))[reason] ?? 0) > before, 10_000);
    await target.bus.idle();
    expect(JSON.stringify([...target.sessions.values()])).toBe(sessions);
    expect(target.journal.fileBytes).toBe(journalBytes);
  }

  it('garbage bytes', async () => {
    const garbage = randomBytes(40);
    garbage[39] = 29; // no valid v
    await expectDropped(hcs(), garbage, 'signature');
    // A well-signed envelope around bytes that are no message (type code 0xF is reserved).
    const payload = Uint8Array.of(0xf0, ...randomBytes(100));
    await expectDropped(
      hcs(),
      signEnvelope(payload, `0x${randomBytes(32).toString('hex')}`, hcs().chain.domain),
      'decode',
    );
  });

  it('a message signed by a key that is not a member', async () => {
    const stranger = `0x${randomBytes(32).toString('hex')}`;
    const request: MessageInput = {
      type: 'request',
      status: 0,
      sender: addressOf(stranger),
      receiver: hcs().address,
      optional: { wh: 1000, n: 'x' },
    };
    await expectDropped(hcs(), signEnvelope(encode(request), stranger, hcs().chain.domain), 'not-member');
  });

  it('a message that names the EV as sender but is signed by someone else', async () => {
    const stranger = `0x${randomBytes(32).toString('hex')}`;
    const forged: MessageInput = {
      type: 'request',
      status: 0,
      sender: ev().address,
      receiver: hcs().address,
      optional: { wh: 1000, n: 'y' },
    };
    await expectDropped(hcs(), signEnvelope(encode(forged), stranger, hcs().chain.domain), 'sender-mismatch');
  });

  it('a signature made for another deployment (chain id) recovers someone else', async () => {
    // The EV's own key, for the wrong chain: the claimed sender is a member, the signer is not.
    const key = `0x${randomBytes(32).toString('hex')}`;
    const msg: MessageInput = {
      type: 'request',
      status: 0,
      sender: ev().address,
      receiver: hcs().address,
      optional: { t: Math.floor(Date.now() / 1000) },
    };
    const otherChain = { ...hcs().chain.domain, chainId: 1n };
    await expectDropped(hcs(), signEnvelope(encode(msg), key, otherChain), 'sender-mismatch');
  });

  it("the EV's own request, captured and replayed", async () => {
    const request = captured.find((p) => p[0]! >> 4 === 0x6);
    expect(request, 'the attacker saw the EV request').toBeDefined();
    await expectDropped(hcs(), request!, 'replay');
  });

  it('the worst an old request can do once the replay cache has forgotten it: an offer no car joins; no money moves', async () => {
    const request = captured.find((p) => p[0]! >> 4 === 0x6)!;
    const station = hcs();
    const evSessions = JSON.stringify([...ev().sessions.values()]);
    const deposit = await ev().chain.client.availableDeposit(ev().address);
    const seq = BigInt(station.journal.get<string>('seq') ?? '0') + 1n;
    // As if 20,000 later messages had pushed it out of the cache (docs/AGENT.md, The bus).
    station.bus.replays.clear();
    await attacker.publishAsync(`p2pev/v1/to/${station.address}`, request, { qos: 1 });
    // The station offers (the request is within its freshness window) and the edge agrees; but the
    // charger switches on only once the EV's consent is reserved on chain, and the car never
    // consents: the offer times out, nothing metered.
    const ghost = await waitFor(
      'the replayed offer to end',
      () => {
        const s = station.sessions.get(String(seq));
        return s && s.state !== 'offered' && s.state !== 'charging' ? s : undefined;
      },
      60_000,
    );
    expect(ghost.startWh === undefined || ghost.endWh === ghost.startWh).toBe(true);
    // The car never joined: no session of its own, no report of its own, and its deposit is whole.
    expect(JSON.stringify([...ev().sessions.values()])).toBe(evSessions);
    expect(await ev().chain.client.availableDeposit(ev().address)).toBe(deposit);
    expect(await station.chain.client.sessionState(station.address, seq)).toBe(0);
    // The station is free again for the next car.
    expect(station.openSessions().filter((s) => s.state === 'offered' || s.state === 'charging')).toEqual([]);
  }, 90_000);

  it('a forged mutual agreement for a session that does not exist changes nothing at the EV', async () => {
    const stranger = `0x${randomBytes(32).toString('hex')}`;
    const mutual: MessageInput = {
      type: 'mutual',
      server: addressOf(stranger),
      ev: ev().address,
      hcs: hcs().address,
      txid: `0x${randomBytes(32).toString('hex')}`,
    };
    await expectDropped(ev(), signEnvelope(encode(mutual), stranger, ev().chain.domain), 'not-member');
  });
});
