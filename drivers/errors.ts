/**
 * Errors of the meter drivers, classified so that the agent can count them and a technician can
 * act on them: every message says where (unit, line settings, port) and what to check.
 */
import type { ErrorKind, Transport } from './types.js';

export class MeterError extends Error {
  override readonly name = 'MeterError';
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** What to check, in a technician's words. */
    readonly hint: string,
    /** The Modbus exception code, for kind 'exception'. */
    readonly exceptionCode?: number,
    options?: { cause?: unknown },
  ) {
    super(hint ? `${message}: ${hint}` : message, options);
  }
}

/** "9600 8N1 on /dev/ttyUSB0", "tcp 10.0.0.5:502" — how the line is described in messages. */
export function describeTransport(t: Transport): string {
  if (t.kind === 'rtu') {
    const parity = (t.parity ?? 'none').charAt(0).toUpperCase();
    return `${t.baudRate ?? 9600} ${t.dataBits ?? 8}${parity}${t.stopBits ?? 1} on ${t.port}`;
  }
  return `${t.kind === 'tcp' ? 'Modbus TCP' : 'RTU over TCP'} ${t.host}:${t.port}`;
}

const EXCEPTION_HINTS: Record<number, string> = {
  1: 'the meter does not support this function code: check the profile matches the meter model',
  2: 'the meter has no such register: check the profile matches the meter model (and firmware version)',
  3: 'the meter rejected the value or register count: check the profile data type',
  4: 'the meter reports an internal failure: power-cycle it; replace it if it persists',
  5: 'the meter acknowledged but is busy: retry later',
  6: 'the meter is busy: retry later',
  10: 'the gateway has no path to the meter: check the gateway configuration (serial side, unit id mapping)',
  11: 'the gateway got no answer from the meter: check the serial side of the gateway (A/B wiring, baud, unit id)',
};

/** Turns whatever modbus-serial or the OS threw into a MeterError. */
export function classifyError(err: unknown, unitId: number, transport: Transport): MeterError {
  if (err instanceof MeterError) return err;
  const e = (err ?? {}) as {
    message?: string;
    name?: string;
    errno?: string;
    code?: string;
    modbusCode?: number;
  };
  const message = String(e.message ?? err);
  const where = `unit ${unitId} at ${describeTransport(transport)}`;
  const serial = transport.kind === 'rtu';
  if (typeof e.modbusCode === 'number') {
    const code = e.modbusCode;
    return new MeterError(
      'exception',
      `Modbus exception ${code} from ${where}`,
      EXCEPTION_HINTS[code] ?? 'unknown exception code: check the meter manual',
      code,
      { cause: err },
    );
  }
  if (e.name === 'TransactionTimedOutError' || e.errno === 'ETIMEDOUT' || /timed out/i.test(message)) {
    return new MeterError(
      'timeout',
      `no response from ${where}`,
      serial || transport.kind === 'rtu-over-tcp'
        ? 'check A/B wiring, termination, unit id and baud'
        : 'check the unit id, and that the device answers Modbus TCP on this port',
      undefined,
      { cause: err },
    );
  }
  if (/CRC|data length|unexpected data|length error/i.test(message)) {
    return new MeterError(
      'crc',
      `corrupted response from ${where} (${message})`,
      'check termination resistors, cable shield/ground, a second master on the bus, and that baud and parity match',
      undefined,
      { cause: err },
    );
  }
  const code = e.code ?? e.errno ?? '';
  if (
    /ENOENT|EACCES|EIO|ENXIO|EBADF|ECONNREFUSED|ECONNRESET|EPIPE|EHOSTUNREACH|ENETUNREACH|ENOTCONN/.test(
      code,
    ) ||
    /Port Not Open|not open|No such file|disconnected|closed|ECONNREFUSED|ECONNRESET|EPIPE/i.test(message)
  ) {
    return new MeterError(
      'port-gone',
      `${serial ? 'serial port' : 'connection'} unavailable for ${where} (${message})`,
      serial
        ? 'check the USB RS-485 adapter is plugged in (see `p2pev diag ports`) and that no other program holds the port'
        : 'check the device or gateway is powered and reachable, and that no other client holds its only TCP connection',
      undefined,
      { cause: err },
    );
  }
  return new MeterError(
    'port-gone',
    `communication failed with ${where} (${message})`,
    'check the line and the device',
    undefined,
    {
      cause: err,
    },
  );
}

/** Whether a later attempt can succeed where this one failed. */
export function isRetryable(err: MeterError): boolean {
  if (err.kind === 'exception')
    return err.exceptionCode === 5 || err.exceptionCode === 6 || err.exceptionCode === 11;
  return err.kind === 'timeout' || err.kind === 'crc' || err.kind === 'port-gone';
}
