/**
 * Sessions as explicit state machines (docs/AGENT.md has the tables). A session record is
 * journaled at every transition, before the agent sends anything that depends on it; after a
 * crash the agent resumes each open session from its record.
 */
import { SESSION_END, type Terms } from '../../protocol/index.js';
import { big } from './json.js';

export type EvState =
  | 'searching'
  | 'requesting'
  | 'awaitingMutual'
  | 'charging'
  | 'awaitingSettlement'
  | 'done'
  | 'failed';
export type HcsState = 'offered' | 'charging' | 'awaitingSettlement' | 'done' | 'failed';
export type SessionState = EvState | HcsState;

/** Terms as stored in the journal and sent in optional data (decimal strings for the big numbers). */
// A type, not an interface: it goes into optional data (a plain record) as it is.
export type TermsJson = {
  seq: string;
  price: string;
  maxWh: number;
  settleBy: number;
};

/** What every session record may hold, whatever its state (the journal keeps it as JSON). */
export interface SessionBase {
  id: string;
  role: 'ev' | 'hcs';
  /** When the current waiting state times out (ms since epoch); 0 = never. */
  deadline: number;
  ev: string;
  hcs?: string;
  server?: string;
  terms?: TermsJson;
  txid?: string;
  kw?: number;
  targetWh?: number;
  candidates?: { hcs: string; price: string }[];
  /** The station the driver picked (the page's map): asked first, or the charge fails. */
  pick?: string;
  /** EV: the driver accepts the agreed terms before the consent is signed (`POST /accept`). */
  confirmTerms?: boolean;
  /** EV: when the agreement arrived and waits for the driver's acceptance (ms). */
  agreedAt?: number;
  startWh?: number;
  endWh?: number;
  lastWh?: number;
  lastProgressAt?: number;
  t0?: number;
  t1?: number;
  /** When the charge ended (plug-out), ms since epoch. */
  endedAt?: number;
  /** When this side learned the bill was on chain (ms; before the EV's rating, which follows). */
  settledAt?: number;
  endStatus?: number;
  /** The peer announced the end (so we need not announce it again). */
  endedByPeer?: boolean;
  /** Envelopes (hex): this device's signed report, and the peer's. */
  myReport?: string;
  peerReport?: string;
  settledTxHash?: string;
  /** The charger's signed meter values for this session (OCMF documents from an Eichrecht wallbox). */
  chargerSigned?: string[];
  /** The EV's consent (its first receipt, 0 Wh, envelope hex): what reserves the session on chain. */
  consent?: string;
  /** The session's cap × price is reserved on chain (the station may switch on). */
  reserved?: boolean;
  /** Station: the highest energy the EV has signed for so far, its envelope (hex), and when. */
  ackWh?: number;
  ackReport?: string;
  lastAckAt?: number;
  /**
   * The final reading was read (not a failed read) in the session's meter epoch and equals the
   * start: the meter says no energy flowed. Only then does a station close a charge at 0 Wh at
   * once (agent/roles/hcs.ts); a report that is 0 Wh because the meter failed is not this.
   */
  nothingDelivered?: boolean;
  /**
   * Station: a session given up before its charger was ever switched on (nothing can have been
   * delivered for it): its signed chargeProvided at 0 Wh, sent to the edge.
   */
  zeroReport?: string;
  /**
   * Station: the 0 Wh close still to do for such a session: a reservation made with the EV's
   * consent (standing, or on its way) is settled at 0 Wh as soon as the chain shows it, so that
   * the station's ring slot frees now, not at settleBy. The chain is asked at `nextAt` (ms).
   */
  closeAtZero?: { nextAt: number; everyMs: number };
  /** Station: when the charger switched on (ms), for the power seen so far. */
  switchedOnAt?: number;
  /** EV: the last interim receipt it signed (index, own Wh, when). */
  receiptIndex?: number;
  receiptWh?: number;
  receiptAt?: number;
  /** The receipt rule the station asked for: every `wh` or `ms`. */
  receipts?: { wh: number; ms: number };
  /** The meter's discontinuity count at the start: a reset or swap since ends the charge unbilled past it. */
  meterEpoch?: number;
  rating?: { stars: number; comment: string };
  rated?: boolean;
  error?: string;
  createdAt: number;
  updatedAt: number;
}

/** From the offer (station) or the accepted terms (EV) on: the station, the terms, the txid. */
interface Agreed {
  hcs: string;
  terms: TermsJson;
  txid: string;
}
/** From the start of the charge on: the first reading and its time. */
interface Metered {
  startWh: number;
  t0: number;
}
/** From the end of the charge on: the last reading, its time, why it ended, our signed report. */
interface Reported {
  endWh: number;
  t1: number;
  endStatus: number;
  myReport: string;
}

/** What each state guarantees beyond the base: required there, so no assertion is needed. */
interface StateShapes {
  searching: object;
  /** The station asked. */
  requesting: { hcs: string };
  /** Failing can follow any state: it guarantees nothing. */
  failed: object;
  awaitingMutual: Agreed;
  offered: Agreed;
  charging: Agreed & Metered;
  awaitingSettlement: Agreed & Metered & Reported;
  done: Agreed & Metered & Reported;
}

/**
 * A session record, its type keyed on `state`: `s.state === 'charging'` gives the terms and the
 * start reading without assertions.
 */
export type SessionRecord = {
  [K in SessionState]: SessionBase & StateShapes[K] & { state: K };
}[SessionState];

/** The record in one of the states `S`. */
export type SessionIn<S extends SessionState> = Extract<SessionRecord, { state: S }>;

/** Each role's table, checked by the compiler: only that role's states, in and out. */
type Table<S extends string> = { readonly [From in S]?: readonly S[] };

export const TRANSITIONS = {
  ev: {
    searching: ['requesting', 'failed'],
    requesting: ['requesting', 'awaitingMutual', 'failed'],
    awaitingMutual: ['charging', 'requesting', 'failed'],
    charging: ['awaitingSettlement', 'failed'],
    awaitingSettlement: ['done', 'failed'],
  },
  hcs: {
    offered: ['charging', 'failed'],
    charging: ['awaitingSettlement', 'failed'],
    awaitingSettlement: ['done', 'failed'],
  },
} as const satisfies { ev: Table<EvState>; hcs: Table<HcsState> };

type EvTable = (typeof TRANSITIONS)['ev'];
type HcsTable = (typeof TRANSITIONS)['hcs'];
/** The states the table allows after `S` (in either role's table). */
export type NextOf<S extends SessionState> =
  | (S extends keyof EvTable ? EvTable[S][number] : never)
  | (S extends keyof HcsTable ? HcsTable[S][number] : never);

/**
 * What a move from `S` to `T` must bring: the fields `T` guarantees that `S` does not already
 * (entering `charging` needs the start reading, `awaitingSettlement` the end and the report).
 */
export type MovePatch<S extends SessionState, T extends SessionState> = Partial<SessionBase> &
  Pick<StateShapes[T], Exclude<keyof StateShapes[T], keyof StateShapes[S]>>;

export function canMove(s: SessionRecord, to: SessionState): boolean {
  const table: Table<SessionState> = TRANSITIONS[s.role];
  return table[s.state]?.includes(to) ?? false;
}

export const OPEN_STATES: readonly SessionState[] = [
  'searching',
  'requesting',
  'awaitingMutual',
  'offered',
  'charging',
  'awaitingSettlement',
];

export function termsFromJson(ev: string, hcs: string, t: TermsJson): Terms {
  return {
    ev,
    hcs,
    seq: big(t.seq),
    priceWeiPerKWh: big(t.price),
    maxEnergyWh: BigInt(t.maxWh),
    settleBy: BigInt(t.settleBy),
  };
}

/** Checks terms that arrived in optional data; returns them typed, or a reason they are unusable. */
export function parseTerms(raw: unknown): TermsJson | string {
  const t = raw as Record<string, unknown> | undefined;
  if (!t || typeof t !== 'object') return 'no terms';
  if (typeof t.seq !== 'string' && typeof t.seq !== 'number') return 'terms: seq missing';
  if (typeof t.price !== 'string' || !/^[0-9]+$/.test(t.price))
    return 'terms: price must be a decimal string';
  if (typeof t.maxWh !== 'number' || !Number.isInteger(t.maxWh) || t.maxWh <= 0)
    return 'terms: maxWh must be a positive integer';
  if (typeof t.settleBy !== 'number' || !Number.isInteger(t.settleBy))
    return 'terms: settleBy must be unix seconds';
  return { seq: String(t.seq), price: t.price, maxWh: t.maxWh, settleBy: t.settleBy };
}

export const END = SESSION_END;
export const END_NAMES = Object.fromEntries(Object.entries(SESSION_END).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

/** The `n` (nonce) of a request's optional data, to echo in the answer. */
export function nonceOf(optional: Record<string, unknown> | undefined): { optional?: { n: string } } {
  const n = optional?.n;
  return typeof n === 'string' && n.length <= 32 ? { optional: { n } } : {};
}

/** Whether `s` is in one of `states` (and typed so). */
export function isIn<S extends SessionState>(s: SessionRecord, ...states: S[]): s is SessionIn<S> {
  return (states as SessionState[]).includes(s.state);
}
