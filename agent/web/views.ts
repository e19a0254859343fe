/**
 * What the page shows, derived from the indexed events alone (pure functions, no I/O): the
 * stations, the sessions with each side's energy and the rating, and a member's statement.
 */
import { big } from '../core/json.js';
import { type RankedStation, rankStations, type Station } from '../core/stations.js';
import type { SettlementInput } from './calldata.js';
import type { IndexedEvent } from './indexer.js';

export const STATUS_NAMES = ['none', 'pending', 'verified', 'suspended', 'revoked'] as const;
export const ROLE_NAMES = ['none', 'ev', 'hcs'] as const;

export interface StationView extends Station {
  status: (typeof STATUS_NAMES)[number];
  /** Sessions settled at this station. */
  sessions: number;
}

export interface SessionView {
  txid: string;
  ev: string;
  hcs: string;
  outcome: 'settled' | 'disputed' | 'expired';
  block: number;
  txHash: string;
  time: number;
  seq?: bigint;
  priceWeiPerKWh?: bigint;
  /** What each side signed for; undefined where the settling call could not be read. */
  evEnergyWh?: bigint;
  hcsEnergyWh?: bigint;
  billedWh: bigint;
  amountWei: bigint;
  /** Unix seconds from the meters' audit data (the EV's report). */
  chargedFrom?: number;
  chargedTo?: number;
  rating?: number;
  comment?: string;
  ratedTxHash?: string;
}

export interface SessionFilter {
  member?: string;
  ev?: string;
  hcs?: string;
  outcome?: SessionView['outcome'];
  rated?: boolean;
  fromTime?: number;
  toTime?: number;
}

export interface StatementLine {
  time: number;
  block: number;
  txHash: string;
  kind: 'deposit' | 'payment' | 'earning' | 'withdrawal' | 'withdrawal-requested' | 'withdrawal-cancelled';
  /** Change of the member's balance in the contract (deposit for an EV, earnings for an HCS). */
  deltaWei: bigint;
  balanceWei: bigint;
  /** The session (payment, earning) or the announced amount (withdrawal request). */
  txid?: string;
  noteWei?: bigint;
}

export interface Statement {
  member: string;
  role: (typeof ROLE_NAMES)[number];
  fromTime: number;
  toTime: number;
  openingWei: bigint;
  depositsWei: bigint;
  paymentsWei: bigint;
  earningsWei: bigint;
  withdrawalsWei: bigint;
  closingWei: bigint;
  lines: StatementLine[];
}

const str = (v: unknown) => String(v);
/** min() for bigints (Math.min throws on them). */

/** bytes10 → text: UTF-8 up to the first zero byte. */
export function commentText(hex: string): string {
  const bytes = Buffer.from(hex.slice(2), 'hex');
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end < 0 ? bytes.length : end).toString('utf8');
}

/** The contract's mean: hundredths of a star, rounded down, 0 when unrated. */
function mean(sum: number, count: number): number {
  return count === 0 ? 0 : Math.floor((sum * 100) / count);
}

/**
 * The stations' figures, kept up to date one event at a time: what the page shows of the
 * network as a whole (profiles, statuses, ratings' means, session counts) is a few figures per
 * member, never a row per session, so it stays in memory whatever the network has settled.
 */
export class StationTally {
  private readonly stations = new Map<string, StationView>();
  private readonly status = new Map<string, StationView['status']>();
  private readonly ratings = new Map<string, { sum: number; count: number }>();
  private readonly sessions = new Map<string, number>();

  apply(e: IndexedEvent): void {
    const a = e.args;
    if (e.name === 'HcsProfileSet') {
      const hcs = str(a.hcs);
      this.stations.set(hcs, {
        hcs,
        latitude: Number(a.latMicroDeg) / 1e6,
        longitude: Number(a.lonMicroDeg) / 1e6,
        priceWeiPerKWh: big(a.priceWeiPerKWh),
        powerW: Number(a.powerW),
        meanRating: 0,
        ratingCount: 0,
        status: 'pending',
        sessions: 0,
      });
    } else if (e.name === 'PriceChanged') {
      const s = this.stations.get(str(a.hcs));
      if (s) s.priceWeiPerKWh = big(a.priceWeiPerKWh);
    } else if (e.name === 'MemberStatusChanged') {
      this.status.set(str(a.member), STATUS_NAMES[Number(a.status)] ?? 'none');
    } else if (e.name === 'Rated') {
      const r = this.ratings.get(str(a.hcs)) ?? { sum: 0, count: 0 };
      r.sum += Number(a.rating);
      r.count += 1;
      this.ratings.set(str(a.hcs), r);
    } else if (e.name === 'Settled' || e.name === 'SettledDisputed') {
      this.sessions.set(str(a.hcs), (this.sessions.get(str(a.hcs)) ?? 0) + 1);
    }
  }

  view(): StationView[] {
    return [...this.stations.values()].map((station) => {
      const r = this.ratings.get(station.hcs) ?? { sum: 0, count: 0 };
      return {
        ...station,
        meanRating: mean(r.sum, r.count),
        ratingCount: r.count,
        status: this.status.get(station.hcs) ?? 'pending',
        sessions: this.sessions.get(station.hcs) ?? 0,
      };
    });
  }

  /** Entries held (for the bound's test): members and stations, never sessions. */
  get size(): number {
    return this.stations.size + this.status.size + this.ratings.size + this.sessions.size;
  }

  clone(): StationTally {
    return StationTally.fromJSON(this.toJSON());
  }

  toJSON(): Record<string, [string, unknown][]> {
    return {
      stations: [...this.stations],
      status: [...this.status],
      ratings: [...this.ratings],
      sessions: [...this.sessions],
    };
  }

  static fromJSON(json: ReturnType<StationTally['toJSON']>): StationTally {
    const t = new StationTally();
    const fill = <V>(map: Map<string, V>, rows: [string, unknown][] | undefined) => {
      for (const [k, v] of rows ?? []) map.set(k, structuredClone(v) as V);
    };
    fill(t.stations, json.stations);
    fill(t.status, json.status);
    fill(t.ratings, json.ratings);
    fill(t.sessions, json.sessions);
    return t;
  }
}

export function stationsOf(events: IndexedEvent[]): StationView[] {
  const tally = new StationTally();
  for (const e of events) tally.apply(e);
  return tally.view();
}

/** The suggestion an EV at `at` would get: verified stations only, as the edge ranks them. */
export function suggestionFor(
  stations: StationView[],
  at: { latitude: number; longitude: number; radiusM: number },
  limit = 5,
): RankedStation[] {
  return rankStations(
    stations.filter((s) => s.status === 'verified'),
    at,
    limit,
  );
}

/**
 * Every session that reached an outcome on chain, newest first. `older` (oldest first) are
 * sessions already derived from earlier events: the ratings among `events` still apply to them.
 */
export function sessionsOf(
  events: IndexedEvent[],
  inputs: ReadonlyMap<string, SettlementInput>,
  older: readonly SessionView[] = [],
): SessionView[] {
  const out = new Map<string, SessionView>(older.map((s) => [s.txid, { ...s }]));
  for (const e of events) {
    const a = e.args;
    const txid = str(a.txid);
    if (e.name === 'Settled' || e.name === 'SettledDisputed') {
      const input = inputs.get(txid);
      const disputed = e.name === 'SettledDisputed';
      const evWh = disputed ? big(a.evEnergyWh) : input?.evReport.energyWh;
      const hcsWh = disputed ? big(a.hcsEnergyWh) : input?.hcsReport.energyWh;
      out.set(txid, {
        txid,
        ev: str(a.ev),
        hcs: str(a.hcs),
        outcome: disputed ? 'disputed' : 'settled',
        block: e.block,
        txHash: e.txHash,
        time: e.time,
        ...(input ? { seq: input.seq, priceWeiPerKWh: input.priceWeiPerKWh } : {}),
        ...(evWh !== undefined ? { evEnergyWh: evWh } : {}),
        ...(hcsWh !== undefined ? { hcsEnergyWh: hcsWh } : {}),
        billedWh: big(a.energyWh),
        amountWei: big(a.amountWei),
        ...(input?.evReport.audit.t0 !== undefined ? { chargedFrom: input.evReport.audit.t0 } : {}),
        ...(input?.evReport.audit.t1 !== undefined ? { chargedTo: input.evReport.audit.t1 } : {}),
      });
    } else if (e.name === 'SessionReleased') {
      // The window closed unsettled: the reservation went back to the EV, nobody was billed.
      out.set(txid, {
        txid,
        ev: str(a.ev),
        hcs: str(a.hcs),
        outcome: 'expired',
        block: e.block,
        txHash: e.txHash,
        time: e.time,
        billedWh: 0n,
        amountWei: 0n,
      });
    } else if (e.name === 'Rated') {
      const s = out.get(txid);
      if (s)
        Object.assign(s, {
          rating: Number(a.rating),
          comment: commentText(str(a.comment)),
          ratedTxHash: e.txHash,
        });
    }
  }
  return [...out.values()].reverse();
}

export function filterSessions(sessions: SessionView[], f: SessionFilter): SessionView[] {
  const m = f.member?.toLowerCase();
  return sessions.filter(
    (s) =>
      (!m || s.ev === m || s.hcs === m) &&
      (!f.ev || s.ev === f.ev.toLowerCase()) &&
      (!f.hcs || s.hcs === f.hcs.toLowerCase()) &&
      (!f.outcome || s.outcome === f.outcome) &&
      (f.rated === undefined || (s.rating !== undefined) === f.rated) &&
      (f.fromTime === undefined || s.time >= f.fromTime) &&
      (f.toTime === undefined || s.time <= f.toTime),
  );
}

/**
 * A member's balance in the contract (an EV's deposit, an HCS's earnings) over a period: the
 * opening balance from everything before it, each movement in it, the closing balance. The same
 * arithmetic the contract does, so the closing balance at the tip equals depositOf / earningsOf.
 */
export function statementOf(
  events: IndexedEvent[],
  member: string,
  fromTime: number,
  toTime: number,
): Statement {
  const me = member.toLowerCase();
  let role: Statement['role'] = 'none';
  let balance = 0n;
  let opening = 0n;
  const totals = { depositsWei: 0n, paymentsWei: 0n, earningsWei: 0n, withdrawalsWei: 0n };
  const lines: StatementLine[] = [];
  for (const e of events) {
    if (e.time > toTime) break;
    const a = e.args;
    let line: Omit<StatementLine, 'balanceWei' | 'time' | 'block' | 'txHash'> | undefined;
    if (e.name === 'MemberRegistered' && a.member === me) role = ROLE_NAMES[Number(a.role)] ?? 'none';
    else if (e.name === 'Deposited' && a.ev === me) line = { kind: 'deposit', deltaWei: big(a.amount) };
    else if ((e.name === 'Settled' || e.name === 'SettledDisputed') && a.ev === me)
      line = { kind: 'payment', deltaWei: -big(a.amountWei), txid: str(a.txid) };
    else if ((e.name === 'Settled' || e.name === 'SettledDisputed') && a.hcs === me)
      line = { kind: 'earning', deltaWei: big(a.amountWei), txid: str(a.txid) };
    else if ((e.name === 'Withdrawn' && a.ev === me) || (e.name === 'EarningsWithdrawn' && a.hcs === me))
      line = { kind: 'withdrawal', deltaWei: -big(a.amount) };
    else if (e.name === 'WithdrawalRequested' && a.ev === me)
      line = { kind: 'withdrawal-requested', deltaWei: 0n, noteWei: big(a.amount) };
    else if (e.name === 'WithdrawalCancelled' && a.ev === me)
      line = { kind: 'withdrawal-cancelled', deltaWei: 0n };
    if (!line) continue;
    balance += line.deltaWei;
    if (e.time < fromTime) {
      opening = balance;
      continue;
    }
    if (line.kind === 'deposit') totals.depositsWei += line.deltaWei;
    if (line.kind === 'payment') totals.paymentsWei -= line.deltaWei;
    if (line.kind === 'earning') totals.earningsWei += line.deltaWei;
    if (line.kind === 'withdrawal') totals.withdrawalsWei -= line.deltaWei;
    lines.push({ ...line, time: e.time, block: e.block, txHash: e.txHash, balanceWei: balance });
  }
  return { member: me, role, fromTime, toTime, openingWei: opening, ...totals, closingWei: balance, lines };
}

export interface MonthFigures {
  /** "YYYY-MM" (UTC). */
  month: string;
  sessions: number;
  energyWh: bigint;
  /** Paid as an EV (payments) and earned as a station, in the month. */
  paidWei: bigint;
  earnedWei: bigint;
}

/** A member's energy and money per calendar month (UTC), oldest first, from its sessions. */
export function monthlyOf(sessions: SessionView[], member: string): MonthFigures[] {
  const m = member.toLowerCase();
  const months = new Map<string, MonthFigures>();
  for (const s of sessions) {
    if (s.outcome === 'expired' || (s.ev !== m && s.hcs !== m)) continue;
    const month = new Date(s.time * 1000).toISOString().slice(0, 7);
    const f = months.get(month) ?? { month, sessions: 0, energyWh: 0n, paidWei: 0n, earnedWei: 0n };
    f.sessions++;
    f.energyWh += s.billedWh;
    if (s.ev === m) f.paidWei += s.amountWei;
    if (s.hcs === m) f.earnedWei += s.amountWei;
    months.set(month, f);
  }
  return [...months.values()].sort((a, b) => (a.month < b.month ? -1 : 1));
}

/** One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180). */
function csvField(v: unknown): string {
  const s = v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A statement as CSV (RFC 4180, CRLF): a header, the opening line, each movement, the closing line; wei exact. */
export function statementCsv(s: Statement): string {
  const iso = (t: number) => new Date(t * 1000).toISOString();
  const rows: unknown[][] = [
    ['time_utc', 'block', 'tx_hash', 'kind', 'session_txid', 'change_wei', 'balance_wei', 'note_wei'],
    [
      iso(s.fromTime === 0 ? (s.lines[0]?.time ?? 0) : s.fromTime),
      '',
      '',
      'opening',
      '',
      '',
      s.openingWei,
      '',
    ],
    ...s.lines.map((l) => [
      iso(l.time),
      l.block,
      l.txHash,
      l.kind,
      l.txid ?? '',
      l.deltaWei,
      l.balanceWei,
      l.noteWei ?? '',
    ]),
    ['', '', '', 'closing', '', '', s.closingWei, ''],
  ];
  return rows.map((r) => r.map(csvField).join(',')).join('\r\n') + '\r\n';
}
