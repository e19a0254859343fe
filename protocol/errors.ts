/**
 * The only errors the protocol package throws on bad input. A decoder never throws anything
 * else, whatever the bytes: callers can count and drop on `DecodeError` alone.
 */
export class DecodeError extends Error {
  override readonly name = 'DecodeError';
  /** Bit offset into the input where the problem was found (byte = Math.floor(bit / 8)). */
  readonly bitOffset: number;
  readonly field: string | undefined;

  constructor(message: string, bitOffset: number, field?: string) {
    const where = `byte ${Math.floor(bitOffset / 8)}${bitOffset % 8 ? ` bit ${bitOffset % 8}` : ''}`;
    super(`${field ? `${field}: ` : ''}${message} (at ${where})`);
    this.bitOffset = bitOffset;
    this.field = field;
  }
}

/** A message object that cannot be encoded: a value out of range, a missing field, a bad type. */
export class EncodeError extends Error {
  override readonly name = 'EncodeError';
  readonly field: string | undefined;

  constructor(message: string, field?: string) {
    super(`${field ? `${field}: ` : ''}${message}`);
    this.field = field;
  }
}
