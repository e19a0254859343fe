/**
 * The edge (its own `p2pev run` process) on Debian's mosquitto, flooded with garbage, strangers'
 * messages, a member's valid spam and replays (sim/flood.ts), while an EV charges at a station
 * again and again. Every honest session must settle; the edge must have dropped each kind of
 * flood for its reason; its memory stays bounded. The full figures (30 s at 10,000 messages/s, p95
 * plug-out → settled, peak RSS) are `npm run bench:flood`.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/core/runtime.js';
import { type AgentProcess, control, type LogLine, spawnAgent, waitReady } from '../sim/agents.js';
import { type MosquittoBroker, startMosquitto, watchPublishes } from '../sim/broker.js';
import { anvilAccounts } from '../sim/chain.js';
import { flood } from '../sim/flood.js';
import { waitFor } from '../sim/meter/testing.js';
import type { World } from '../sim/world.js';
import { device, sessionDone, smallWorld, startAgent } from './helpers/world.js';

/** Peak resident set of a process (VmHWM), MB. */
function peakRssMb(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

describe('the edge under a flood', () => {
  let broker: MosquittoBroker;
  let world: World;
  let edge: AgentProcess;
  const agents = new Map<string, Agent>();
  const edgeLog: LogLine[] = [];

  beforeAll(async () => {
    broker = await startMosquitto();
    world = await smallWorld({
      edge: true,
      broker: broker.url,
      // The defaults' reply time (a car's search may wait for a station another member holds).
      overrides: {
        timeouts: { replyMs: 10_000, reportMs: 5000, chargeIdleMs: 20000, settleFallbackMs: 30000 },
      },
      evs: [
        { name: 'EV1', latitude: 52.521, longitude: 13.41, profile: 'sdm120' },
        // A member that never runs an agent: the flood's valid spam is signed with its key.
        { name: 'SPAM', latitude: 52.6, longitude: 13.5, profile: 'sdm120' },
      ],
    });
    edge = await spawnAgent(device(world, 'EDGE'), (line) => {
      if (line.level >= 40 && line.msg !== 'message dropped') edgeLog.push(line);
    });
    await waitReady(edge);
    for (const name of ['HCS1', 'EV1']) agents.set(name, await startAgent(device(world, name)));
  }, 120_000);

  afterAll(async () => {
    for (const a of agents.values()) await a.stop().catch(() => {});
    await edge?.stop();
    await world?.close();
    await broker?.close();
  });

  it('every honest session settles while the flood goes on, and each kind is dropped for its reason', async () => {
    const ev = agents.get('EV1')!;
    const spamKey = anvilAccounts(5)[4]!.privateKey;
    const edgeDevice = device(world, 'EDGE');
    const counter = await watchPublishes(broker.url);
    // The broker's count of publishes received so far (waitFor wants a truthy value: 0 is one too).
    const { before } = await waitFor(() => {
      const last = counter.samples.at(-1);
      if (!last) throw new Error('no $SYS figure from mosquitto yet');
      return { before: last[1] };
    }, 10_000);
    const flooding = flood({
      brokerUrl: broker.url,
      target: edgeDevice.address,
      server: edgeDevice.address,
      domain: ev.chain.domain,
      memberKey: spamKey,
      rate: Number(process.env.P2PEV_FLOOD_RATE ?? 3000),
      durationMs: Number(process.env.P2PEV_FLOOD_MS ?? 12_000),
      // Two publisher threads, as the bench floods at 10,000/s (one client tops out near 9,000/s).
      publishers: 2,
    });
    let sessions = 0;
    const failed: string[] = [];
    let stop = false;
    const honest = (async () => {
      while (!stop || sessions === 0) {
        const { id } = (await ev.control('charge', { targetWh: 1500 })) as { id: string };
        await sessionDone(ev, id, 120_000).then(
          () => sessions++,
          (err: Error) => failed.push(err.message),
        );
      }
    })();
    const result = await flooding;
    stop = true;
    await honest;
    const status = await control<{ messages: { droppedBy: Record<string, number>; queued: number } }>(
      edgeDevice,
      'status',
    );
    const dropped = status.messages.droppedBy;
    process.stdout.write(
      `flood: dropped at the edge ${JSON.stringify(dropped)}; honest failures ${JSON.stringify(failed)}\n`,
    );
    if (failed.length) process.stdout.write(`edge warnings: ${JSON.stringify(edgeLog.slice(-20))}\n`);
    expect(failed).toEqual([]);
    expect(sessions).toBeGreaterThan(0);
    expect(result.sent).toBeGreaterThan(1000);
    expect(result.publishers).toBe(2);
    expect(Object.keys(result.byKind).sort()).toEqual(['garbage', 'member', 'replay', 'stranger']);
    // Every message the publishers counted reached the broker (its own counter, honest traffic on top).
    await waitFor(() => {
      const received = counter.samples.at(-1)![1] - before;
      if (received < result.sent) throw new Error(`broker received ${received} of ${result.sent}`);
      return true;
    }, 10_000);
    await counter.stop();
    // Garbage: too big, or no valid framing / no message.
    expect((dropped.size ?? 0) > 0 && (dropped.signature ?? 0) + (dropped.decode ?? 0) > 0).toBe(true);
    // Strangers: refused by the member cache (or while their lookups were busy).
    expect((dropped['not-member'] ?? 0) + (dropped['lookup-busy'] ?? 0)).toBeGreaterThan(0);
    // The member's spam: its queue share full, its rate spent, its replays seen.
    expect((dropped.overload ?? 0) + (dropped.rate ?? 0)).toBeGreaterThan(0);
    expect(dropped.replay ?? 0).toBeGreaterThan(0);
    const rss = peakRssMb(edge.child.pid!);
    process.stdout.write(
      `flood: ${result.sent} messages in ${result.seconds.toFixed(1)} s (${JSON.stringify(result.byKind)}); ${sessions} honest sessions settled; edge peak RSS ${rss.toFixed(1)} MB; dropped ${JSON.stringify(dropped)}\n`,
    );
    // Bounded: the agent's own heap limit is 192 MB (agent/install/p2pev.service).
    expect(rss).toBeLessThan(256);
  }, 300_000);
});
