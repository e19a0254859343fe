/**
 * The stations an edge suggests, read from the chain (agent/core/stations.ts): after the first
 * read, a refresh reads again only the stations whose events came since (a new profile, a price, a
 * status, a rating), and must still see every such change.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StationDirectory } from '../agent/core/stations.js';
import { PRICE, registerHcs, type SettlementFixture, setupSettlement } from './helpers/anvilSettlement.js';

describe('the station directory, refreshed from events', () => {
  let fx: SettlementFixture;
  let directory: StationDirectory;
  const fresh = async () => {
    directory.invalidate();
    const list = await directory.list();
    return new Map(list.map((s) => [s.hcs, s]));
  };

  beforeAll(async () => {
    fx = await setupSettlement({ evs: 1, hcss: 2, strangers: 1 });
    directory = new StationDirectory({
      retry: (_what, fn) => fn(),
      client: fx.operator.client,
      deployment: fx.deployment,
    } as ConstructorParameters<typeof StationDirectory>[0]);
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });

  it('sees suspensions, prices, new stations and reinstatements after the first read', async () => {
    const [a, b] = fx.hcss.map((h) => h.address.toLowerCase());
    let stations = await fresh();
    expect([...stations.keys()].sort()).toEqual([a, b].sort());
    expect(stations.get(b!)?.priceWeiPerKWh).toBe(PRICE);

    await fx.operator.client.suspend(fx.hcss[0]!.address);
    stations = await fresh();
    expect([...stations.keys()]).toEqual([b]);

    await fx.hcss[1]!.client.setPrice(PRICE * 2n);
    stations = await fresh();
    expect(stations.get(b!)?.priceWeiPerKWh).toBe(PRICE * 2n);

    const newcomer = fx.strangers[0]!;
    await registerHcs(newcomer, 7);
    expect((await fresh()).has(newcomer.address.toLowerCase())).toBe(false); // not verified yet
    await fx.operator.client.verify(newcomer.address);
    await fx.operator.client.verify(fx.hcss[0]!.address);
    stations = await fresh();
    expect([...stations.keys()].sort()).toEqual([a, b, newcomer.address.toLowerCase()].sort());
  });

  it('reads every station at the first refresh and every 20th after, the changed ones between', async () => {
    let reads = 0;
    const client = fx.operator.client;
    const counting = new Proxy(client, {
      get(target, prop) {
        if (prop === 'isVerified')
          return (...args: Parameters<typeof client.isVerified>) => {
            reads++;
            return target.isVerified(...args);
          };
        const value = Reflect.get(target, prop);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const dir = new StationDirectory({
      retry: (_what, fn) => fn(),
      client: counting,
      deployment: fx.deployment,
    } as ConstructorParameters<typeof StationDirectory>[0]);
    const refresh = async () => {
      dir.invalidate();
      await dir.list();
    };
    await refresh();
    const all = reads;
    expect(all).toBeGreaterThanOrEqual(2);
    // Nothing changed since: refreshes 2 to 20 read no station again.
    for (let i = 2; i <= 20; i++) await refresh();
    expect(reads).toBe(all);
    // The 21st reads them all (a reorganised chain may have dropped an event).
    await refresh();
    expect(reads).toBe(2 * all);
  }, 60_000);
});
