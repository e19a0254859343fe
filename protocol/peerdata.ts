/**
 * What a peer may put in a message's optional data (SPEC.md: a CBOR map after the fixed part), as
 * one table: per message, the keys this implementation reads and what each must hold. The bus
 * checks every arriving message against it (agent/core/bus.ts) and drops one whose known keys hold
 * the wrong kind of value, so a non-numeric `wh` is refused where it arrives instead of becoming
 * NaN in a role. Keys not listed pass untouched (newer peers may send more).
 */
import type { Message, MessageName, MessageOf } from './schema.js';

type Rule =
  | { kind: 'number'; min: number; integer?: boolean }
  | { kind: 'decimal' }
  | { kind: 'decimalOrInteger' }
  | { kind: 'text'; maxLength: number };

const nonce = { kind: 'text', maxLength: 32 } as const;
const termsRules = {
  seq: { kind: 'decimalOrInteger' },
  price: { kind: 'decimal' },
  maxWh: { kind: 'number', min: 1, integer: true },
  settleBy: { kind: 'number', min: 0, integer: true },
} as const;
const reportRules = {
  m: { kind: 'text', maxLength: 64 },
  p: { kind: 'text', maxLength: 64 },
  s: { kind: 'number', min: 0 },
  e: { kind: 'number', min: 0 },
  t0: { kind: 'number', min: 0, integer: true },
  t1: { kind: 'number', min: 0, integer: true },
  st: { kind: 'number', min: 0, integer: true },
  /** An interim receipt's index (0: the consent that reserves the session); absent on a final report. */
  i: { kind: 'number', min: 0, integer: true },
} as const;

export const OPTIONAL_RULES = {
  search: { n: nonce },
  suggestion: { n: nonce },
  /** `wh`: the energy the car asks for. */
  request: { wh: { kind: 'number', min: 0 }, n: nonce },
  /** An accepted request carries the terms and the station's power; a refusal says why. */
  response: {
    ...termsRules,
    kw: { kind: 'number', min: 0 },
    why: { kind: 'text', maxLength: 64 },
    n: nonce,
    /** The station's receipt rule: a receipt every `rWh` Wh or `rMs` ms (docs/PROTOCOL.md). */
    rWh: { kind: 'number', min: 1, integer: true },
    rMs: { kind: 'number', min: 1, integer: true },
  },
  mutual: termsRules,
  /** The meter behind a report: serial, profile, start and end readings, times, end status. */
  chargeReceived: reportRules,
  chargeProvided: reportRules,
} as const satisfies Partial<Record<MessageName, Record<string, Rule>>>;

type RuleValue<R> = R extends { kind: 'number' }
  ? number
  : R extends { kind: 'decimalOrInteger' }
    ? string | number
    : string;
type Checked = keyof typeof OPTIONAL_RULES;
/** The optional data of a message as the table describes it (every key may be absent). */
export type OptionalOf<N extends Checked> = {
  [K in keyof (typeof OPTIONAL_RULES)[N]]?: RuleValue<(typeof OPTIONAL_RULES)[N][K]>;
};

function problem(rule: Rule, v: unknown): string | undefined {
  switch (rule.kind) {
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) return 'must be a number';
      if (rule.integer && !Number.isInteger(v)) return 'must be an integer';
      return v < rule.min ? `must be at least ${rule.min}` : undefined;
    case 'decimal':
      return typeof v === 'string' && /^[0-9]{1,78}$/.test(v) ? undefined : 'must be a decimal string';
    case 'decimalOrInteger':
      if (typeof v === 'number')
        return Number.isSafeInteger(v) && v >= 0 ? undefined : 'must be a whole number';
      return typeof v === 'string' && /^[0-9]{1,78}$/.test(v) ? undefined : 'must be a decimal string';
    case 'text':
      if (typeof v !== 'string') return 'must be text';
      return v.length > rule.maxLength ? `is longer than ${rule.maxLength}` : undefined;
  }
}

/** What is wrong with a message's optional data, as "key: reason"; undefined when nothing is. */
export function optionalProblem(msg: Message): string | undefined {
  const rules = (OPTIONAL_RULES as Partial<Record<MessageName, Record<string, Rule>>>)[msg.type];
  if (!rules || msg.optional === undefined) return undefined;
  for (const [key, rule] of Object.entries(rules)) {
    const v = msg.optional[key];
    if (v === undefined) continue;
    const why = problem(rule, v);
    if (why) return `${key} ${why}`;
  }
  return undefined;
}

/**
 * A message's optional data, typed by the table. The bus refused any message whose known keys
 * break it (optionalProblem), so the cast states what was checked at the boundary.
 */
export function optionalOf<N extends Checked>(msg: MessageOf<N>): OptionalOf<N> {
  return (msg.optional ?? {}) as OptionalOf<N>;
}
