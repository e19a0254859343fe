/**
 * Which stations the edge suggests (agent/roles/edge.ts, takenStations), in-process through its
 * narrow context with a directory of three stations: the first station of a suggestion is held for
 * that car (and only for it, one hold per car), a station charging under an agreement is not
 * suggested until its report, nor an agreement without the EV's consent once the consent's wait is
 * over, and a search that finds every station taken waits and is answered when one frees.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EdgeRole } from '../agent/roles/edge.js';
import type { Station } from '../agent/core/stations.js';
import { REQUEST_STATUS } from '../protocol/index.js';
import { fakeContext, incoming, type Party, party } from './fakes/context.js';

const PRICE = 300_000_000_000_000n;

function world() {
  const fake = fakeContext('edge', { edge: { batchSize: 10, batchMaxWaitMs: 60_000, suggestions: 3 } });
  const edge = new EdgeRole(fake.ctx);
  // Three stations in a row, 1, 2 and 3 km north of the cars.
  const stations = [party(), party(), party()];
  const directory: Station[] = stations.map((s, i) => ({
    hcs: s.address,
    latitude: 48 + (i + 1) * 0.009,
    longitude: 11,
    priceWeiPerKWh: PRICE,
    powerW: 11_000,
    meanRating: 0,
    ratingCount: 0,
  }));
  (edge as unknown as { stations: { list(): Promise<Station[]> } }).stations = {
    list: async () => directory,
  };
  let n = 0;
  const search = async (car: Party) => {
    const before = fake.sent.length;
    await edge.onMessage(
      incoming(car, {
        type: 'search',
        requester: car.address,
        server: fake.me.address,
        latitude: 48,
        longitude: 11,
        radiusM: 10_000,
        optional: { n: `q${++n}`, t: Math.floor(Date.now() / 1000) },
      }),
    );
    return suggestionsSince(before, car);
  };
  const suggestionsSince = (before: number, car: Party) =>
    fake.sent
      .slice(before)
      .filter((m) => m.to === car.address && m.msg.type === 'suggestion')
      .map((m) => (m.msg as { stations: { hcs: string }[] }).stations.map((s) => s.hcs));
  /** The station accepts the car's request: the edge forms the agreement (no consent yet). */
  const agree = async (car: Party, station: Party, seq: number) => {
    await edge.onMessage(
      incoming(station, {
        type: 'response',
        status: REQUEST_STATUS.accept,
        sender: station.address,
        receiver: car.address,
        optional: {
          seq: String(seq),
          price: PRICE.toString(),
          maxWh: 10_000,
          settleBy: Math.floor(Date.now() / 1000) + 3600,
        },
      }),
    );
    await edge.agreements();
    const mutual = fake.sent.filter((m) => m.msg.type === 'mutual' && m.to === car.address).at(-1);
    if (mutual?.msg.type !== 'mutual') throw new Error('no agreement formed');
    return mutual.msg.txid;
  };
  /** A car agreed at each station (no consent yet), and one more car searching: it waits. */
  const takeEvery = async () => {
    const cars = stations.map(() => party());
    const txids: string[] = [];
    for (const [i, car] of cars.entries()) {
      await search(car);
      txids.push(await agree(car, stations[i]!, 1));
    }
    const waiting = party();
    expect(await search(waiting)).toEqual([]);
    return { cars, txids, waiting };
  };
  return { fake, edge, stations, search, agree, suggestionsSince, takeEvery };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('the stations the edge suggests', () => {
  it('holds the first one for the car it was suggested to, and only for it', async () => {
    const w = world();
    const [a, b, c] = w.stations.map((s) => s.address);
    const car1 = party();
    const car2 = party();
    expect(await w.search(car1)).toEqual([[a, b, c]]);
    // The nearest is held for car 1: car 2 is sent to the next, which is then held for it.
    expect(await w.search(car2)).toEqual([[b, c]]);
    // Car 1 asking again still has its own hold (and is given no second one).
    expect(await w.search(car1)).toEqual([[a, c]]);
  });

  it('a car that agreed is given a hold on its next search at once; one that only searched is not', async () => {
    const w = world();
    const [, b, c] = w.stations.map((s) => s.address);
    const car1 = party();
    const car2 = party();
    await w.search(car1);
    await w.agree(car1, w.stations[0]!, 1);
    // Its charge at A formed: car 1's next search (its next charge) holds B for it at once,
    // so car 2, asking right after, is not sent to B to be refused.
    expect(await w.search(car1)).toEqual([[b, c]]);
    expect(await w.search(car2)).toEqual([[c]]);
    // A under an agreement, B held for car 1, C for car 2: car 3 waits for one to free.
    const car3 = party();
    expect(await w.search(car3)).toEqual([]);
  });

  it('does not suggest a station charging under an agreement until its report', async () => {
    const w = world();
    const [a, b, c] = w.stations.map((s) => s.address);
    const [sa] = w.stations;
    const car1 = party();
    const car2 = party();
    await w.search(car1);
    const txid = await w.agree(car1, sa!, 1);
    // The consent makes the charge count until the window, however long the wait.
    await w.edge.onMessage(
      incoming(car1, {
        type: 'chargeReceived',
        ev: car1.address,
        hcs: a!,
        txid,
        energyWh: 0n,
        optional: { i: 0 },
      }),
    );
    const later = Date.now() + 3_000_000;
    vi.spyOn(Date, 'now').mockReturnValue(later);
    expect(await w.search(car2)).toEqual([[b, c]]);
    vi.restoreAllMocks();
    // The station's report: the charge is over, A is free again.
    await w.edge.onMessage(
      incoming(sa!, { type: 'chargeProvided', ev: car1.address, hcs: a!, txid, energyWh: 1000n }),
    );
    const car3 = party();
    expect((await w.search(car3))[0]?.[0]).toBe(a);
  });

  it('frees a station whose agreement never got the consent once the wait is over', async () => {
    const w = world();
    const [a, b, c] = w.stations.map((s) => s.address);
    const car1 = party();
    await w.search(car1);
    await w.agree(car1, w.stations[0]!, 1);
    const car2 = party();
    expect(await w.search(car2)).toEqual([[b, c]]);
    // Two reply times and the slack later: the driver declined; A counts as free.
    const replyMs = w.fake.ctx.cfg.timeouts.replyMs;
    vi.spyOn(Date, 'now').mockReturnValue(Date.now() + 2 * replyMs + 11_000);
    const car3 = party();
    expect((await w.search(car3))[0]).toContain(a);
  });

  it('a search that finds every station taken is answered when one frees', async () => {
    const w = world();
    const [a] = w.stations.map((s) => s.address);
    const { cars, txids, waiting } = await w.takeEvery();
    const before = w.fake.sent.length;
    await w.edge.onMessage(
      incoming(w.stations[0]!, {
        type: 'chargeProvided',
        ev: cars[0]!.address,
        hcs: a!,
        txid: txids[0]!,
        energyWh: 1000n,
      }),
    );
    expect(w.suggestionsSince(before, waiting)).toEqual([[a]]);
  });

  it("the car's final report frees its station for a waiting car (the car sends the edge no termination)", async () => {
    const w = world();
    const [a] = w.stations.map((s) => s.address);
    const { cars, txids, waiting } = await w.takeEvery();
    const before = w.fake.sent.length;
    // An interim receipt says nothing of the end; the final report (no `i`) does.
    const report = (i?: number) =>
      incoming(cars[0]!, {
        type: 'chargeReceived',
        ev: cars[0]!.address,
        hcs: a!,
        txid: txids[0]!,
        energyWh: 990n,
        ...(i === undefined ? {} : { optional: { i } }),
      });
    await w.edge.onMessage(report(1));
    expect(w.suggestionsSince(before, waiting)).toEqual([]);
    await w.edge.onMessage(report());
    expect(w.suggestionsSince(before, waiting)).toEqual([[a]]);
  });
});
