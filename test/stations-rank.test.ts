/**
 * The ranking of the paper's Section 4.5 (agent/core/stations.ts rankStations): distance and mean
 * rating, ties to the lower price, only stations within the radius, the first `limit`; taken
 * stations skipped. Held to the plain rule (every station in the radius ranked, sorted, cut) on
 * random worlds with many ties, since the edge keeps only the best few as it goes.
 */
import { describe, expect, it } from 'vitest';
import { distanceM, rankStations, type Station } from '../agent/core/stations.js';

/** The rule as written: rank every station in the radius, a stable sort, the first `limit`. */
function plainRanking(
  stations: Station[],
  at: { latitude: number; longitude: number; radiusM: number },
  limit: number,
  skip: (hcs: string) => boolean = () => false,
) {
  return stations
    .filter((s) => !skip(s.hcs))
    .map((s) => {
      const d = distanceM(at.latitude, at.longitude, s.latitude, s.longitude);
      const stars = s.ratingCount > 0 ? s.meanRating / 100 : 3;
      return { ...s, distanceM: Math.round(d), score: d * (1 + (5 - stars) / 5) };
    })
    .filter((s) => s.distanceM <= at.radiusM)
    .sort(
      (a, b) =>
        a.score - b.score ||
        (a.priceWeiPerKWh < b.priceWeiPerKWh ? -1 : a.priceWeiPerKWh > b.priceWeiPerKWh ? 1 : 0),
    )
    .slice(0, limit);
}

/** A small deterministic generator: the same worlds on every run. */
function rng(seed: number) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
}

const station = (i: number, lat: number, lon: number, price: bigint, rating = 0, count = 0): Station => ({
  hcs: `0x${i.toString(16).padStart(40, '0')}`,
  latitude: lat,
  longitude: lon,
  priceWeiPerKWh: price,
  powerW: 11_000,
  meanRating: rating,
  ratingCount: count,
});

describe('rankStations', () => {
  it('ranks by distance and rating, ties to the lower price, within the radius', () => {
    const at = { latitude: 48.1, longitude: 11.5, radiusM: 5000 };
    const km = 1000 / 111_195; // a kilometre north, in degrees
    const unrated = station(1, 48.1 + km, 11.5, 3n); // 1 km, unrated (3 stars): 1,400
    const cheaper = station(2, 48.1 + km, 11.5, 2n); // the same, cheaper: before it
    const five = station(3, 48.1 + 2 * km, 11.5, 3n, 500, 4); // 2 km, 5 stars: 2,000
    const zero = station(4, 48.1 + 1.2 * km, 11.5, 1n, 0, 4); // 1.2 km, 0 stars: 2,400
    const far = station(5, 48.1 + 6 * km, 11.5, 1n, 500, 9); // outside the radius
    const all = [far, zero, five, unrated, cheaper];
    const ranked = rankStations(all, at, 5);
    expect(ranked.map((r) => r.hcs)).toEqual([cheaper.hcs, unrated.hcs, five.hcs, zero.hcs]);
    expect(ranked.map((r) => r.distanceM)).toEqual([1000, 1000, 2000, 1200]);
    expect(ranked.map((r) => Math.round(r.score))).toEqual([1400, 1400, 2000, 2400]);
    expect(rankStations(all, at, 2).map((r) => r.hcs)).toEqual([cheaper.hcs, unrated.hcs]);
    expect(rankStations(all, at, 2, (h) => h === cheaper.hcs).map((r) => r.hcs)).toEqual([
      unrated.hcs,
      five.hcs,
    ]);
    expect(rankStations(all, at, 0)).toEqual([]);
  });

  it('gives the plain rule’s answer on random worlds, with ties and taken stations', () => {
    const next = rng(42);
    for (let world = 0; world < 200; world++) {
      // Stations on a coarse grid (many at the same distance), few prices and ratings (many ties).
      const stations = Array.from({ length: 1 + Math.floor(next() * 60) }, (_, i) =>
        station(
          i,
          48.1 + Math.floor(next() * 9 - 4) * 0.009,
          11.5 + Math.floor(next() * 9 - 4) * 0.013,
          BigInt(1 + Math.floor(next() * 3)),
          Math.floor(next() * 3) * 100,
          Math.floor(next() * 2),
        ),
      );
      const at = {
        latitude: 48.1 + Math.floor(next() * 5 - 2) * 0.009,
        longitude: 11.5 + Math.floor(next() * 5 - 2) * 0.013,
        radiusM: [500, 2000, 5000, 20_000][Math.floor(next() * 4)] as number,
      };
      const taken = new Set(stations.filter(() => next() < 0.3).map((s) => s.hcs));
      const skip = (hcs: string) => taken.has(hcs);
      for (const limit of [1, 3, 5, 100]) {
        expect(rankStations(stations, at, limit, skip)).toEqual(plainRanking(stations, at, limit, skip));
        expect(rankStations(stations, at, limit)).toEqual(plainRanking(stations, at, limit));
      }
    }
  });
});
