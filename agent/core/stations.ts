/**
 * The stations an EV can be sent to, read from the chain (HcsProfileSet events and views), and
 * the ranking of the paper's Section 4.5: distance and mean rating.
 *
 * Rank rule: only verified HCSs within the search radius; score = distance × (1 + (5 − stars) / 5)
 * where stars is the mean rating (an unrated station counts as 3 stars), lower is better; ties go
 * to the lower price. A 5-star station 2 km away thus ranks level with a 0-star one 1 km away:
 * rating moves a station ahead, but not across town.
 */
import { MemberRole } from '../../contracts/client.js';
import type { Chain } from './chain.js';

export interface Station {
  hcs: string;
  latitude: number;
  longitude: number;
  priceWeiPerKWh: bigint;
  powerW: number;
  /** Hundredths of a star, 0..500; 0 with ratingCount 0 means unrated. */
  meanRating: number;
  ratingCount: number;
}

export interface RankedStation extends Station {
  distanceM: number;
  score: number;
}

const EARTH_RADIUS_M = 6_371_008.8;

/** Great-circle distance (haversine), metres. */
export function distanceM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

/** Whether a station of `score` and `price` ranks strictly before `b`: lower score, ties to the lower price. */
function before(score: number, price: bigint, b: RankedStation): boolean {
  return score < b.score || (score === b.score && price < b.priceWeiPerKWh);
}

/**
 * The best `limit` stations within the radius, best first. `skip`: stations not to rank (taken),
 * asked only about those in the radius's box that would make the first `limit`. The same answer
 * as ranking every station in the radius and keeping the first `limit` (a stable sort: of
 * stations level on score and price, the earlier in `stations` first).
 */
export function rankStations(
  stations: readonly Station[],
  at: { latitude: number; longitude: number; radiusM: number },
  limit: number,
  skip?: (hcs: string) => boolean,
): RankedStation[] {
  // A box around the circle first (a degree of latitude is ≥ 110.5 km; of longitude, that times the
  // cosine at the box's edge nearest a pole): the haversine only for the stations inside it. An
  // edge ranks the stations near a car on every search (bench:edge): only those that make the
  // first `limit` become objects, kept in order as they come, not one object for every station in
  // the radius and a sort of them all.
  const dLat = at.radiusM / 110_500 + 1e-9;
  const edgeLat = Math.min(89.999, Math.abs(at.latitude) + dLat);
  const dLon = Math.min(360, dLat / Math.cos((edgeLat * Math.PI) / 180));
  const best: RankedStation[] = [];
  if (!(limit > 0)) return best;
  for (const s of stations) {
    if (Math.abs(s.latitude - at.latitude) > dLat) continue;
    const lonGap = Math.abs(s.longitude - at.longitude);
    if (Math.min(lonGap, 360 - lonGap) > dLon) continue;
    const d = distanceM(at.latitude, at.longitude, s.latitude, s.longitude);
    if (Math.round(d) > at.radiusM) continue;
    const stars = s.ratingCount > 0 ? s.meanRating / 100 : 3;
    const score = d * (1 + (5 - stars) / 5);
    const price = s.priceWeiPerKWh;
    // Not before the last of a full list (one level with it comes after it): out.
    if (best.length >= limit && !before(score, price, best[best.length - 1] as RankedStation)) continue;
    if (skip?.(s.hcs)) continue;
    // After every one it does not rank strictly before.
    let i = best.length;
    while (i > 0 && before(score, price, best[i - 1] as RankedStation)) i--;
    best.splice(i, 0, { ...s, distanceM: Math.round(d), score });
    if (best.length > limit) best.pop();
  }
  return best;
}

/**
 * Reads the verified stations from the chain; cached for `ttlMs`. Past that, a search is answered
 * from the cache while one refresh runs behind it: registrations and ratings change slowly, and a
 * refresh (a few calls per station) must not hold up the searches queued behind it.
 */
export class StationDirectory {
  private cache: { at: number; stations: Station[] } | undefined;
  private refreshing: Promise<Station[]> | undefined;

  constructor(
    private readonly chain: Pick<Chain, 'retry' | 'client' | 'deployment'>,
    private readonly ttlMs = 3000,
  ) {}

  invalidate(): void {
    this.cache = undefined;
  }

  async list(): Promise<Station[]> {
    if (this.cache && Date.now() - this.cache.at < this.ttlMs) return this.cache.stations;
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = undefined;
    });
    // Stale: the stations we knew are the best answer now (and still, if the node is away).
    if (this.cache) {
      this.refreshing.catch(() => {});
      return this.cache.stations;
    }
    return this.refreshing;
  }

  /** Stations as last read, by address; every address that ever published a profile. */
  private readonly known = new Map<string, Station>();
  private readonly published = new Set<string>();
  /** The last block the events were read to; refreshes since the last full read. */
  private lastBlock: number | undefined;
  private refreshes = 0;

  /**
   * Reads again only the stations whose events (profile, price, status, rating) came since the last
   * refresh: an edge re-read every station (4 calls each) every 15 s, a cost in the number of
   * stations whatever the load (bench:edge). Every 20th refresh reads everything (a reorganised
   * chain may have dropped an event).
   */
  private async refresh(): Promise<Station[]> {
    const stations = await this.chain.retry('stations', async () => {
      const client = this.chain.client;
      const head = await client.contract.runner?.provider?.getBlockNumber();
      // Counted whatever the reason for a full read: the first read is the first of the 20 (counted
      // only after the first, the second was a full read again: 4 calls a station, bench:edge).
      const nth = this.refreshes++;
      const full = this.lastBlock === undefined || head === undefined || nth % 20 === 0;
      const from = full ? this.chain.deployment.block : (this.lastBlock ?? 0) + 1;
      if (head !== undefined && from > head) return [...this.known.values()];
      const lower = (a: string) => a.toLowerCase();
      const profiles = await client.events('HcsProfileSet', from, head);
      for (const e of profiles) this.published.add(lower(e.args.hcs));
      let touched: string[];
      if (full) touched = [...this.published];
      else {
        const [prices, statuses, ratings] = await Promise.all([
          client.events('PriceChanged', from, head),
          client.events('MemberStatusChanged', from, head),
          client.events('Rated', from, head),
        ]);
        const changed = new Set([
          ...profiles.map((e) => lower(e.args.hcs)),
          ...prices.map((e) => lower(e.args.hcs)),
          ...statuses.map((e) => lower(e.args.member)),
          ...ratings.map((e) => lower(e.args.hcs)),
        ]);
        touched = [...changed].filter((a) => this.published.has(a));
      }
      // All at once: the provider batches the calls into a few JSON-RPC round trips.
      const verified = await Promise.all(touched.map((hcs) => client.isVerified(hcs, MemberRole.HCS)));
      const read = await Promise.all(
        touched
          .filter((_, i) => verified[i])
          .map(async (hcs): Promise<Station> => {
            const [p, mean, count] = await Promise.all([
              client.hcsProfile(hcs),
              client.meanRating(hcs),
              client.ratingCount(hcs),
            ]);
            return {
              hcs,
              latitude: p.latMicroDeg / 1e6,
              longitude: p.lonMicroDeg / 1e6,
              priceWeiPerKWh: p.priceWeiPerKWh,
              powerW: p.powerW,
              meanRating: mean,
              ratingCount: count,
            };
          }),
      );
      if (full) this.known.clear();
      for (const hcs of touched) this.known.delete(hcs);
      for (const st of read) this.known.set(st.hcs, st);
      if (head !== undefined) this.lastBlock = head;
      return [...this.known.values()];
    });
    this.cache = { at: Date.now(), stations };
    return stations;
  }
}
