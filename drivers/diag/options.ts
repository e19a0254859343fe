/** Shared option parsing of `p2pev diag …`: which line, which unit, output form. */
import { MeterError } from '../errors.js';
import type { Parity, Transport } from '../types.js';

export interface LineOptions {
  port?: string;
  tcp?: string;
  rtuOverTcp?: boolean;
  baud?: string;
  parity?: string;
  stopBits?: string;
  id?: string;
  timeout?: string;
  json?: boolean;
}

const usage = (message: string, hint: string) => new MeterError('config', message, hint);

/** "host:port" or "port"; a server (the simulated meter) may ask for port 0 = any free port. */
export function parseHostPort(text: string, allowPortZero = false): { host: string; port: number } {
  const m = /^(?:\[?([^\]]*?)\]?:)?(\d+)$/.exec(text.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port < (allowPortZero ? 0 : 1) || port > 65535) {
    throw usage(`"${text}" is not HOST:PORT`, 'e.g. --tcp 192.168.1.20:502');
  }
  return { host: m[1] || '127.0.0.1', port };
}

export function parseParity(text = 'none'): Parity {
  const p = { none: 'none', n: 'none', even: 'even', e: 'even', odd: 'odd', o: 'odd' }[text.toLowerCase()];
  if (!p) throw usage(`parity "${text}"`, 'use none, even or odd');
  return p as Parity;
}

export function parseNumber(text: string | undefined, what: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n)) throw usage(`${what} "${text}" is not a number`, `give ${what} as a number`);
  return n;
}

/** "1-5,9,0x10" → [1,2,3,4,5,9,16] */
export function parseIdList(text: string, min = 1, max = 247): number[] {
  const ids = new Set<number>();
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map((x) => Number(x.trim()));
    if (a === undefined || !Number.isInteger(a) || (b !== undefined && !Number.isInteger(b))) {
      throw usage(`"${part}" is not an id or a range`, 'e.g. --ids 1-10,20');
    }
    for (let i = a; i <= (b ?? a); i++) {
      if (i < min || i > max) throw usage(`id ${i} is out of range`, `ids are ${min}..${max}`);
      ids.add(i);
    }
  }
  return [...ids];
}

export function parseAddress(text: string): number {
  const n = text.toLowerCase().startsWith('0x') ? Number.parseInt(text.slice(2), 16) : Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 0xffff)
    throw usage(`address "${text}"`, 'give 0..65535 or 0x0000..0xFFFF');
  return n;
}

export function transportFrom(o: LineOptions, baudOverride?: number, parityOverride?: Parity): Transport {
  if (o.port && o.tcp)
    throw usage(
      'give only one of --port and --tcp',
      'a serial line (--port /dev/ttyUSB0) or a TCP device (--tcp host:port)',
    );
  if (!o.port && !o.tcp)
    throw usage(
      'say where the meter is',
      'give --port /dev/ttyUSB0 or --tcp host:port (or --config agent.config.json)',
    );
  if (o.rtuOverTcp && !o.tcp)
    throw usage('--rtu-over-tcp goes with --tcp', 'e.g. --tcp 192.168.1.20:8899 --rtu-over-tcp');
  const serialPort = o.port;
  if (o.tcp) {
    const { host, port } = parseHostPort(o.tcp);
    return { kind: o.rtuOverTcp ? 'rtu-over-tcp' : 'tcp', host, port };
  }
  if (!serialPort) throw usage('say where the meter is', 'give --port /dev/ttyUSB0 or --tcp host:port');
  const stopBits = parseNumber(o.stopBits, 'stop bits', 1);
  if (stopBits !== 1 && stopBits !== 2) throw usage('stop bits must be 1 or 2', 'e.g. --stop-bits 1');
  return {
    kind: 'rtu',
    port: serialPort,
    baudRate: baudOverride ?? parseNumber(o.baud, 'baud', 9600),
    parity: parityOverride ?? parseParity(o.parity),
    stopBits,
  };
}
