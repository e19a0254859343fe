/**
 * The wire formats of SPEC.md (the paper's Figure 4) as one declarative table. Every encoder and
 * decoder is generated from it by `codec.ts`; there is no hand-written code per message.
 *
 * Widths are in bits. `pad` is zero bits to the next byte boundary. The optional CBOR data
 * (`optional.ts`) follows the fixed part of every message and is not listed here.
 */

/** An unsigned integer; ≤ 32 bits decode to `number`, wider ones to `bigint`. */
export interface UintField {
  readonly kind: 'uint';
  readonly name: string;
  readonly bits: number;
  readonly min?: number | undefined;
  readonly max?: number | undefined;
}
/** A 20-byte Ethereum address, as `0x` + 40 lowercase hex digits. */
export interface AddrField {
  readonly kind: 'addr';
  readonly name: string;
}
/** 32 raw bytes (transaction IDs, commitments), as `0x` + 64 lowercase hex digits. */
export interface Bytes32Field {
  readonly kind: 'bytes32';
  readonly name: string;
}
/** IEEE-754 float64, big-endian; NaN and infinities are never valid. */
export interface F64Field {
  readonly kind: 'f64';
  readonly name: string;
  readonly min: number;
  readonly max: number;
}
/** Fixed-size UTF-8 text, zero-padded (the rating comment: 80 bits = 10 bytes). */
export interface TextField {
  readonly kind: 'text';
  readonly name: string;
  readonly bytes: number;
}
/** An 8-bit count, then that many records of `item` fields (the suggestion list). */
export interface ListField {
  readonly kind: 'list';
  readonly name: string;
  readonly countBits: number;
  readonly maxItems: number;
  readonly item: readonly ScalarField[];
}
export interface PadField {
  readonly kind: 'pad';
}
export type ScalarField = UintField | AddrField | Bytes32Field | F64Field | TextField;
export type Field = ScalarField | ListField | PadField;

/** The bits a scalar field takes on the wire. */
export function scalarBits(f: ScalarField): number {
  switch (f.kind) {
    case 'uint':
      return f.bits;
    case 'addr':
      return 160;
    case 'bytes32':
      return 256;
    case 'f64':
      return 64;
    case 'text':
      return f.bytes * 8;
  }
}

/**
 * One message name. Several names can share a type code (request/response, completion/termination,
 * chargeReceived/chargeProvided); `select` says which values of which field mean this name.
 */
export interface MessageSchema {
  readonly code: number;
  readonly fields: readonly Field[];
  readonly select?: { readonly field: string; readonly values: readonly number[] };
}

export const TYPE_BITS = 4;

// Small constructors keep the table readable; the generic parameters keep the literal names and
// widths, from which the message types below are derived.
const addr = <N extends string>(name: N) => ({ kind: 'addr', name }) as const;
const b32 = <N extends string>(name: N) => ({ kind: 'bytes32', name }) as const;
const uint = <N extends string, B extends number>(name: N, bits: B, min?: number, max?: number) =>
  ({ kind: 'uint', name, bits, min, max }) as const;
const pad = { kind: 'pad' } as const;

/** Member roles on the registry (registration, verification). */
export const ROLE = { ev: 1, hcs: 2 } as const;
/** Registry status as the server answers it in `verification`. */
export const MEMBER_STATUS = { unknown: 0, pending: 1, verified: 2, suspended: 3, revoked: 4 } as const;
/** request/response status (SPEC.md). */
export const REQUEST_STATUS = { none: 0, accept: 1, reject: 2, busy: 3 } as const;
/** completion/termination status: 1 completed; 2.. termination reasons. */
export const SESSION_END = {
  completed: 1,
  stoppedByEv: 2,
  stoppedByHcs: 3,
  meterFault: 4,
  timeout: 5,
  peerLost: 6,
  billRefused: 7,
} as const;
/** Payment status of amount and transaction (SPEC.md). */
export const PAYMENT_STATUS = {
  none: 0,
  pending: 1,
  settled: 2,
  disputed: 3,
  refunded: 4,
  failed: 5,
} as const;

const requestResponse = [
  uint('kind', 2, 1, 2),
  uint('status', 2, 0, 3),
  addr('sender'),
  addr('receiver'),
] as const;
const completionTermination = [
  addr('ev'),
  addr('hcs'),
  b32('txid'),
  uint('status', 4, SESSION_END.completed, SESSION_END.billRefused),
] as const;
const chargeReport = [
  uint('memberType', 4, 1, 2),
  addr('ev'),
  addr('hcs'),
  b32('txid'),
  uint('energyWh', 160),
] as const;
const comment = { kind: 'text', name: 'comment', bytes: 10 } as const;

export const MESSAGES = {
  /** Designed here (SPEC.md): a member's request to join; identity documents stay off the wire. */
  registration: {
    code: 0x1,
    fields: [uint('role', 4, ROLE.ev, ROLE.hcs), addr('member'), addr('server'), b32('identityCommitment')],
  },
  /** Designed here: ask the server whether `subject` is a registered, verified member. */
  reqAuthInfo: {
    code: 0x2,
    fields: [pad, addr('requester'), addr('server'), addr('subject'), uint('nonce', 64)],
  },
  /** Designed here: the server's answer to reqAuthInfo (and to registration). */
  verification: {
    code: 0x3,
    fields: [
      uint('status', 4, MEMBER_STATUS.unknown, MEMBER_STATUS.revoked),
      addr('server'),
      addr('requester'),
      addr('subject'),
      uint('role', 8, 0, ROLE.hcs),
      uint('nonce', 64),
    ],
  },
  search: {
    code: 0x4,
    fields: [
      addr('requester'),
      addr('server'),
      { kind: 'f64', name: 'latitude', min: -90, max: 90 },
      { kind: 'f64', name: 'longitude', min: -180, max: 180 },
      // Half the Earth's circumference: no search needs more.
      { kind: 'f64', name: 'radiusM', min: 0, max: 20_037_509 },
      pad,
    ],
  },
  suggestion: {
    code: 0x5,
    fields: [
      addr('server'),
      addr('requester'),
      {
        kind: 'list',
        name: 'stations',
        countBits: 8,
        maxItems: 255,
        item: [
          addr('hcs'),
          uint('distanceM', 32),
          uint('meanRating', 16, 0, 500),
          uint('priceWeiPerKWh', 256),
        ],
      },
      pad,
    ],
  },
  request: { code: 0x6, fields: requestResponse, select: { field: 'kind', values: [1] } },
  response: { code: 0x6, fields: requestResponse, select: { field: 'kind', values: [2] } },
  mutual: { code: 0x7, fields: [addr('server'), addr('ev'), addr('hcs'), b32('txid'), pad] },
  completion: { code: 0x8, fields: completionTermination, select: { field: 'status', values: [1] } },
  termination: {
    code: 0x8,
    fields: completionTermination,
    select: { field: 'status', values: [2, 3, 4, 5, 6, 7] },
  },
  chargeReceived: { code: 0x9, fields: chargeReport, select: { field: 'memberType', values: [1] } },
  chargeProvided: { code: 0x9, fields: chargeReport, select: { field: 'memberType', values: [2] } },
  amount: {
    code: 0xa,
    fields: [
      addr('server'),
      b32('txid'),
      addr('sender'),
      addr('receiver'),
      uint('amountWei', 256),
      uint('paymentStatus', 4, 0, 5),
    ],
  },
  rating: {
    code: 0xb,
    fields: [b32('txid'), addr('sender'), addr('receiver'), uint('rating', 8, 1, 5), comment, pad],
  },
  transaction: {
    code: 0xc,
    fields: [
      b32('txid'),
      addr('sender'),
      addr('receiver'),
      uint('amountWei', 256),
      uint('paymentStatus', 4, 0, 5),
      uint('rating', 8, 0, 5),
      comment,
    ],
  },
} as const satisfies Record<string, MessageSchema>;

export type MessageName = keyof typeof MESSAGES;
export const MESSAGE_NAMES = Object.keys(MESSAGES) as MessageName[];

/** Largest optional data accepted (SPEC.md asks for a limit). */
export const MAX_OPTIONAL_BYTES = 1024;

// ---- Types derived from the table: a message is `{ type, ...its fields, optional? }`. ----

/** Widths that still fit a JavaScript number exactly; wider integers are bigints. */
type SmallWidth = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 12 | 16 | 24 | 32;
type ScalarValue<F> = F extends { kind: 'uint'; bits: infer B }
  ? B extends SmallWidth
    ? number
    : bigint
  : F extends { kind: 'f64' }
    ? number
    : string;
type FieldValue<F> = F extends { kind: 'list'; item: infer I extends readonly unknown[] }
  ? Array<FieldsOf<I>>
  : ScalarValue<F>;
type Named<T extends readonly unknown[]> = Extract<T[number], { name: string }>;
type FieldsOf<T extends readonly unknown[]> = { [F in Named<T> as F['name']]: FieldValue<F> };

/** The optional data: one CBOR map (`optional.ts`). */
export type OptionalData = Record<string, unknown>;

export type MessageOf<N extends MessageName> = { type: N } & FieldsOf<(typeof MESSAGES)[N]['fields']> & {
    optional?: OptionalData;
  };
export type Message = { [N in MessageName]: MessageOf<N> }[MessageName];

type SelectKey<N extends MessageName> = (typeof MESSAGES)[N] extends {
  select: { field: infer K extends string };
}
  ? K
  : never;
/** What `encode` takes: the field that names the variant (request's `kind`…) may be left out. */
export type MessageInput<N extends MessageName = MessageName> = N extends MessageName
  ? Omit<MessageOf<N>, SelectKey<N>> & Partial<Pick<MessageOf<N>, SelectKey<N> & keyof MessageOf<N>>>
  : never;
