/**
 * An edge's member cache holds the members it serves (agent/core/gate.ts EDGE_LIMITS): with a
 * device's 4,096 answers, an edge of 6,001 members forgot answers before it needed them again and
 * asked the chain about the same members over and over (10,181 messages dropped `lookup-busy` in
 * the 5,000 × 1,000 world). The bus as the runtime builds it, its chain lookup counted.
 */
import { describe, expect, it } from 'vitest';
import { Bus } from '../agent/core/bus.js';
import { createLogger } from '../agent/core/log.js';
import { createMetrics } from '../agent/core/metrics.js';
import { DOMAIN, party } from './fakes/context.js';

function busOf(role: 'edge' | 'device') {
  const me = party();
  const edge = role === 'edge' ? me : party();
  let asked = 0;
  const bus = new Bus({
    mqtt: { url: 'mqtt://127.0.0.1:1', topicPrefix: 'p2pev/v1', keepaliveS: 30 } as never,
    address: me.address,
    privateKey: me.key,
    domain: DOMAIN,
    server: edge.address,
    isMember: async () => {
      asked++;
      return true;
    },
    log: createLogger({ level: 'silent', pretty: false }),
    metrics: createMetrics(false),
  });
  return { bus, asked: () => asked };
}

/** Looks every address up, a few at a time as the bus's limits allow. */
async function lookUp(bus: Bus, addresses: string[]): Promise<void> {
  for (let i = 0; i < addresses.length; i += 4) {
    await Promise.all(
      addresses.slice(i, i + 4).map((a) => {
        const answer = bus.members.lookup(a);
        if (answer === 'busy') throw new Error('busy');
        return answer;
      }),
    );
  }
}

describe("the members' answers a bus keeps", () => {
  const members = Array.from({ length: 6000 }, (_, i) => `0x${(i + 1).toString(16).padStart(40, '0')}`);

  it('an edge keeps 6,000 members answered: the second round asks the chain nothing', async () => {
    const { bus, asked } = busOf('edge');
    await lookUp(bus, members);
    expect(asked()).toBe(6000);
    await lookUp(bus, members);
    expect(asked()).toBe(6000);
  });

  it('a device keeps its few thousand (a station meets a few peers a day)', async () => {
    const { bus, asked } = busOf('device');
    await lookUp(bus, members);
    await lookUp(bus, members);
    expect(asked()).toBe(12_000);
  });
});
