/**
 * Messages as JSON (for `p2pev msg`, logs and test vectors): integers wider than 32 bits become
 * decimal strings, byte strings in optional data become 0x-hex. The conversion follows the schema
 * table, so it needs no per-message code either.
 */
import { EncodeError } from './errors.js';
import { toHex } from './hex.js';
import {
  type Field,
  MESSAGES,
  type Message,
  type MessageInput,
  type MessageName,
  type MessageSchema,
} from './schema.js';

function jsonSafe(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return toHex(value);
  if (Array.isArray(value)) return value.map(jsonSafe);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonSafe(v)]));
  }
  return value;
}

export function messageToJson(msg: Message): Record<string, unknown> {
  return jsonSafe(msg) as Record<string, unknown>;
}

function wideFromJson(
  fields: readonly Field[],
  values: Record<string, unknown>,
  path: string,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...values };
  for (const f of fields) {
    if (f.kind === 'pad' || !(f.name in values)) continue;
    const v = values[f.name];
    const at = path ? `${path}.${f.name}` : f.name;
    if (f.kind === 'uint' && f.bits > 32 && (typeof v === 'string' || typeof v === 'number')) {
      try {
        out[f.name] = BigInt(v);
      } catch {
        throw new EncodeError(`${JSON.stringify(v)} is not an integer`, at);
      }
    } else if (f.kind === 'list' && Array.isArray(v)) {
      out[f.name] = v.map((item, i) =>
        item && typeof item === 'object'
          ? wideFromJson(f.item, item as Record<string, unknown>, `${at}[${i}]`)
          : item,
      );
    }
  }
  return out;
}

/** The inverse of messageToJson, ready for `encode`. */
export function messageFromJson(json: unknown): MessageInput {
  if (!json || typeof json !== 'object' || Array.isArray(json))
    throw new EncodeError('must be a JSON object', 'message');
  const values = json as Record<string, unknown>;
  const schema = (MESSAGES as Record<string, MessageSchema>)[values.type as MessageName];
  if (!schema) throw new EncodeError(`unknown message type ${JSON.stringify(values.type)}`, 'type');
  // encode() checks every field against the schema; this only widened the JSON-friendly ones.
  return wideFromJson(schema.fields, values, '') as MessageInput;
}
