/**
 * The short soak of CI (the long one: `p2pev sim --duration 1800`, docs/AGENT.md): every agent its
 * own `p2pev run` process, sessions one after another; after a warm-up the open file descriptors of
 * each process must not grow with the sessions (a socket or file left open per session would end a
 * device that runs for years).
 */
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionRecord } from '../agent/core/session.js';
import { type AgentProcess, control, spawnAgent, waitReady } from '../sim/agents.js';
import type { World } from '../sim/world.js';
import { device, smallWorld, waitFor } from './helpers/world.js';

describe('no descriptor leak over sessions', () => {
  let world: World;
  const agents: AgentProcess[] = [];

  beforeAll(async () => {
    world = await smallWorld({ edge: true });
    for (const name of ['EDGE', 'HCS1', 'EV1']) {
      const a = await spawnAgent(device(world, name), () => {});
      await waitReady(a);
      agents.push(a);
    }
  }, 120_000);

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await world?.close();
  });

  const fds = () =>
    Object.fromEntries(agents.map((a) => [a.device.name, readdirSync(`/proc/${a.child.pid}/fd`).length]));

  async function session(): Promise<void> {
    const ev = device(world, 'EV1');
    const { id } = await control<{ id: string }>(ev, 'charge', { targetWh: 1500 });
    await waitFor(
      'the session settled',
      async () => {
        const s = (await control<SessionRecord[]>(ev, 'sessions')).find((x) => x.id === id);
        if (s?.state === 'failed') throw new Error(`session failed: ${s.error}`);
        return s?.state === 'done';
      },
      60_000,
    );
  }

  it('each process holds as many descriptors after 8 sessions as after 2', async () => {
    await session();
    await session();
    const warm = fds();
    for (let i = 0; i < 6; i++) await session();
    const after = fds();
    process.stdout.write(
      `descriptors after warm-up ${JSON.stringify(warm)}, after 8 sessions ${JSON.stringify(after)}\n`,
    );
    // A few for a connection being replaced at the moment of sampling; one per session would be 6.
    for (const [name, n] of Object.entries(after)) expect(n, name).toBeLessThanOrEqual(warm[name]! + 3);
  }, 300_000);

  it("each agent collects its garbage on request and says what it keeps (the soak run's --force-gc)", async () => {
    for (const a of agents) {
      const { memory } = await control<{
        memory: { heapAfterGcMb: number; heapUsedMb: number; rssMb: number };
      }>(a.device, 'gc', {});
      expect(memory.heapAfterGcMb, a.device.name).toBeGreaterThan(1);
      expect(memory.heapAfterGcMb, a.device.name).toBeLessThanOrEqual(memory.heapUsedMb);
      expect(memory.rssMb, a.device.name).toBeGreaterThan(memory.heapAfterGcMb);
    }
  });
});
