/**
 * Modbus RTU line timing (Modbus over Serial Line V1.02, §2.5.1.1): a character is 1 start bit,
 * 7 or 8 data bits, an optional parity bit and 1 or 2 stop bits; frames are separated by at least
 * 3.5 character times of silence (fixed 1.75 ms above 19200 baud). Used by the driver (gap after
 * each response), the simulated meter (wire-time emulation) and the benchmark (line maximum).
 */
import type { Parity } from './types.js';

export interface Framing {
  dataBits?: 7 | 8;
  parity?: Parity;
  stopBits?: 1 | 2;
}

export function bitsPerChar(f: Framing = {}): number {
  return 1 + (f.dataBits ?? 8) + ((f.parity ?? 'none') === 'none' ? 0 : 1) + (f.stopBits ?? 1);
}

export function charTimeMs(baud: number, f: Framing = {}): number {
  return (bitsPerChar(f) * 1000) / baud;
}

/** Inter-frame silence t3.5. */
export function interFrameMs(baud: number, f: Framing = {}): number {
  return baud > 19200 ? 1.75 : 3.5 * charTimeMs(baud, f);
}

/** Time to shift `bytes` characters onto the line. */
export function frameTimeMs(bytes: number, baud: number, f: Framing = {}): number {
  return bytes * charTimeMs(baud, f);
}

/** RTU frame sizes of a "read N registers" transaction (FC 03/04): addr, fc, start, count, CRC. */
export const READ_REQUEST_BYTES = 8;
export const readResponseBytes = (registers: number): number => 5 + 2 * registers;

/**
 * The most transactions per second a line can carry: request, t3.5, response, t3.5, nothing else.
 */
export function lineMaxPerSec(
  requestBytes: number,
  responseBytes: number,
  baud: number,
  f: Framing = {},
): number {
  const cycle = frameTimeMs(requestBytes + responseBytes, baud, f) + 2 * interFrameMs(baud, f);
  return 1000 / cycle;
}

export const nowMs = (): number => performance.now();

/**
 * Resolves at `deadline` (a performance.now() time) with sub-millisecond precision: a timer for the
 * bulk, then spinning on setImmediate (which still lets I/O run) for the last stretch, because
 * setTimeout alone is up to ~1 ms late and a 19200-baud transaction lasts only 12 ms.
 */
export function sleepUntil(deadline: number): Promise<void> {
  return new Promise((resolve) => {
    const spin = (): void => {
      if (nowMs() >= deadline) resolve();
      else setImmediate(spin);
    };
    const bulk = deadline - nowMs() - 4;
    if (bulk > 0) setTimeout(spin, bulk);
    else spin();
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
