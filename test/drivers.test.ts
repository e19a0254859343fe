import { describe, expect, it } from 'vitest';
import { parseAddress, parseIdList, parseParity } from '../drivers/diag/options.js';
import { classifyError, isRetryable, MeterError } from '../drivers/errors.js';
import { EnergyGuard } from '../drivers/plausibility.js';
import { scanSysfsPorts } from '../drivers/ports.js';
import { PROFILES, resolveProfile } from '../drivers/profiles.js';
import {
  decodeRaw,
  decodeText,
  encodeRaw,
  encodeText,
  isNotAvailable,
  rawFromBase,
  scaleToBase,
} from '../drivers/registers.js';
import { summarize } from '../drivers/stats.js';
import {
  bitsPerChar,
  interFrameMs,
  lineMaxPerSec,
  READ_REQUEST_BYTES,
  readResponseBytes,
} from '../drivers/timing.js';
import type { DataType, RegisterSpec } from '../drivers/types.js';
import { chargingPowerW } from '../sim/meter/curve.js';
import { crc16 } from '../sim/meter/pdu.js';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('register codec', () => {
  const cases: [DataType, number][] = [
    ['int16', -1234],
    ['uint16', 65535],
    ['int32', -123456789],
    ['uint32', 4_000_000_000],
    ['int64', -9_000_000_000_000],
    ['uint64', 123_456_789_012_345],
    ['float32', 12345.5],
    ['float64', 1234567.891],
  ];
  for (const [type, value] of cases) {
    for (const wordOrder of ['high-first', 'low-first'] as const) {
      it(`round-trips ${type} ${wordOrder}`, () => {
        const spec = { type, wordOrder };
        expect(decodeRaw(encodeRaw(value, spec), spec)).toBe(value);
      });
    }
  }

  it('puts the low word first where the vendor says so (Carlo Gavazzi INT32)', () => {
    expect(encodeRaw(0x00010002, { type: 'int32', wordOrder: 'low-first' })).toEqual([0x0002, 0x0001]);
    expect(encodeRaw(0x00010002, { type: 'int32' })).toEqual([0x0001, 0x0002]);
  });

  it('recognises all-ones and max-signed "not available" markers', () => {
    expect(isNotAvailable([0xffff, 0xffff], { type: 'float32' })).toBe(true);
    expect(isNotAvailable([0xffff, 0xffff, 0xffff, 0xffff], { type: 'uint64' })).toBe(true);
    expect(isNotAvailable([0x7fff, 0xffff], { type: 'int32' })).toBe(true);
    expect(isNotAvailable([0xffff, 0x7fff], { type: 'int32', wordOrder: 'low-first' })).toBe(true);
    expect(isNotAvailable([0x0000, 0x0001], { type: 'uint32' })).toBe(false);
  });

  it('scales to base units and back, truncating integer counters', () => {
    const abb: RegisterSpec = { kind: 'holding', address: 0x5000, type: 'uint64', scale: 0.01, unit: 'kWh' };
    expect(rawFromBase(1234_567, abb)).toBe(123456);
    expect(scaleToBase(123456, abb)).toBeCloseTo(1234_560, 6);
    const sunspec: RegisterSpec = {
      kind: 'holding',
      address: 0,
      type: 'int16',
      unit: 'W',
      exponentAddress: 1,
    };
    expect(scaleToBase(1234, sunspec, -1)).toBeCloseTo(123.4, 9);
  });

  it('encodes ASCII serial numbers two characters per register', () => {
    const words = encodeText('SIM00010001', 7);
    expect(words).toHaveLength(7);
    expect(decodeText(words)).toBe('SIM00010001');
  });
});

describe('profiles table', () => {
  it('has the required meters, each citing its source', () => {
    for (const name of ['sdm630', 'sdm120', 'sdm72d', 'abb-b23', 'abb-b24', 'em340', 'et340']) {
      const p = PROFILES[name]!;
      expect(p.source.length).toBeGreaterThan(40);
      expect(['Wh', 'kWh', 'MWh']).toContain(p.quantities.energy.unit);
    }
    expect(PROFILES.sdm630!.quantities.energy).toMatchObject({
      kind: 'input',
      address: 0x48,
      type: 'float32',
    });
    expect(PROFILES.sdm120!.quantities.energy).toMatchObject({
      kind: 'input',
      address: 0x48,
      type: 'float32',
    });
    expect(PROFILES.sdm72d!.quantities.energy).toMatchObject({
      kind: 'input',
      address: 0x48,
      type: 'float32',
    });
    expect(PROFILES['abb-b23']!.quantities.energy).toMatchObject({
      kind: 'holding',
      address: 0x5000,
      type: 'uint64',
      scale: 0.01,
    });
    expect(PROFILES['abb-b23']!.serial).toMatchObject({ address: 0x8900 });
    expect(PROFILES.em340!.quantities.energy).toMatchObject({
      address: 0x34,
      type: 'int32',
      wordOrder: 'low-first',
      scale: 0.1,
    });
  });

  it('validates a user-described generic profile and says what is wrong', () => {
    const ok = resolveProfile('generic', {
      name: 'my-meter',
      quantities: { energy: { kind: 'holding', address: 100, type: 'uint32', unit: 'Wh' } },
    });
    expect(ok.name).toBe('my-meter');
    expect(() =>
      resolveProfile('generic', {
        quantities: { energy: { kind: 'coil', address: 1, type: 'uint32', unit: 'Wh' } },
      } as never),
    ).toThrow(/kind must be "input" or "holding"/);
    expect(() =>
      resolveProfile('generic', {
        quantities: { energy: { kind: 'input', address: 1, type: 'uint32', unit: 'W' } },
      }),
    ).toThrow(/energy register must be in Wh/);
    expect(() => resolveProfile('nope')).toThrow(MeterError);
  });
});

describe('energy plausibility', () => {
  const guard = () => new EnergyGuard({ maxPowerW: 22_000, confirmReads: 2, resolutionWh: 10 });

  it('accepts normal progress and holds a sub-resolution step back', () => {
    const g = guard();
    expect(g.evaluate({ energyWh: 1000, at: 0 })).toEqual({ kind: 'accept', energyWh: 1000 });
    expect(g.evaluate({ energyWh: 1100, at: 60_000 })).toEqual({ kind: 'accept', energyWh: 1100 });
    expect(g.evaluate({ energyWh: 1095, at: 61_000 })).toEqual({ kind: 'accept', energyWh: 1100 });
  });

  it('believes a step back only when confirmed', () => {
    const g = guard();
    g.evaluate({ energyWh: 50_000, at: 0 });
    expect(g.evaluate({ energyWh: 3, at: 1000 }).kind).toBe('unconfirmed');
    const v = g.evaluate({ energyWh: 3, at: 1100 });
    expect(v).toMatchObject({ kind: 'discontinuity', direction: 'backwards', previousWh: 50_000 });
  });

  it('rejects a one-off impossible jump and keeps the baseline', () => {
    const g = guard();
    g.evaluate({ energyWh: 1000, at: 0 });
    expect(g.evaluate({ energyWh: 900_000, at: 1000 }).kind).toBe('unconfirmed');
    expect(g.evaluate({ energyWh: 1005, at: 1100 })).toEqual({ kind: 'accept', energyWh: 1005 });
  });
});

describe('line timing', () => {
  it('counts start, data, parity and stop bits', () => {
    expect(bitsPerChar({ parity: 'none', stopBits: 1 })).toBe(10);
    expect(bitsPerChar({ parity: 'even', stopBits: 1 })).toBe(11);
    expect(bitsPerChar({ parity: 'none', stopBits: 2 })).toBe(11);
  });

  it('computes the line maximum from frame bits and two t3.5 gaps', () => {
    // 9600 8N1: (8 + 9) chars × 10 bits + 2 × 3.5 × 10 bits = 240 bits → 40 transactions/s.
    expect(lineMaxPerSec(READ_REQUEST_BYTES, readResponseBytes(2), 9600)).toBeCloseTo(40, 9);
    expect(lineMaxPerSec(READ_REQUEST_BYTES, readResponseBytes(2), 19200)).toBeCloseTo(80, 9);
    expect(interFrameMs(38400)).toBe(1.75);
  });

  it('computes CRC-16/MODBUS', () => {
    // The textbook frame "01 03 00 00 00 0A C5 CD" (CRC sent low byte first).
    expect(crc16(Buffer.from([0x01, 0x03, 0x00, 0x00, 0x00, 0x0a]))).toBe(0xcdc5);
    expect(crc16(Buffer.from([0x01, 0x04, 0x00, 0x48, 0x00, 0x02]))).toBe(0xddf1);
  });
});

describe('charging curve', () => {
  it('ramps up, holds, tapers near full and stops at the target', () => {
    const plan = { kw: 11, targetWh: 40_000 };
    expect(chargingPowerW(plan, 0, 0)).toBe(0);
    expect(chargingPowerW(plan, 4, 0)).toBeCloseTo(5500, 6);
    expect(chargingPowerW(plan, 60, 10_000)).toBe(11_000);
    expect(chargingPowerW(plan, 3600, 36_000)).toBeCloseTo(5500, 6);
    expect(chargingPowerW(plan, 3600, 39_990)).toBeCloseTo(880, 6);
    expect(chargingPowerW(plan, 3600, 40_000)).toBe(0);
  });
});

describe('errors, stats and option parsing', () => {
  const rtu = { kind: 'rtu', port: '/dev/ttyUSB0', baudRate: 9600 } as const;
  it('classifies modbus-serial failures with hints', () => {
    const t = classifyError(
      { name: 'TransactionTimedOutError', message: 'Timed out', errno: 'ETIMEDOUT' },
      1,
      rtu,
    );
    expect(t.kind).toBe('timeout');
    expect(t.message).toBe(
      'no response from unit 1 at 9600 8N1 on /dev/ttyUSB0: check A/B wiring, termination, unit id and baud',
    );
    expect(classifyError(new Error('CRC error'), 1, rtu).kind).toBe('crc');
    const ex = classifyError(Object.assign(new Error('Modbus exception 2'), { modbusCode: 2 }), 1, rtu);
    expect([ex.kind, ex.exceptionCode, isRetryable(ex)]).toEqual(['exception', 2, false]);
    expect(classifyError(new Error('Port Not Open'), 1, rtu).kind).toBe('port-gone');
  });

  it('summarises latency percentiles', () => {
    const s = summarize(Array.from({ length: 100 }, (_, i) => i + 1));
    expect([s.p50, s.p90, s.p99, s.max]).toEqual([50, 90, 99, 100]);
  });

  it('parses ids, addresses and parities', () => {
    expect(parseIdList('1-3,7')).toEqual([1, 2, 3, 7]);
    expect(() => parseIdList('0-2')).toThrow(/out of range/);
    expect(parseAddress('0x5000')).toBe(0x5000);
    expect(parseAddress('72')).toBe(72);
    expect(parseParity('E')).toBe('even');
  });
});

describe('diag ports from sysfs', () => {
  it('names USB adapters and their stable by-id links, skipping placeholder UARTs', () => {
    const root = mkdtempSync(join(tmpdir(), 'p2pev-sysfs-'));
    const usb = join(root, 'sys/devices/usb1/1-1');
    mkdirSync(join(usb, '1-1:1.0/ttyUSB0'), { recursive: true });
    for (const [f, v] of Object.entries({
      idVendor: '0403',
      idProduct: '6001',
      manufacturer: 'FTDI',
      product: 'USB-RS485',
      serial: 'A10K',
    })) {
      writeFileSync(join(usb, f), `${v}\n`);
    }
    mkdirSync(join(root, 'sys/bus/usb-serial/drivers/ftdi_sio'), { recursive: true });
    mkdirSync(join(root, 'sys/class/tty/ttyUSB0'), { recursive: true });
    symlinkSync(join(usb, '1-1:1.0/ttyUSB0'), join(root, 'sys/class/tty/ttyUSB0/device'));
    symlinkSync(join(root, 'sys/bus/usb-serial/drivers/ftdi_sio'), join(usb, '1-1:1.0/ttyUSB0/driver'));
    mkdirSync(join(root, 'sys/class/tty/ttyS3/device'), { recursive: true });
    writeFileSync(join(root, 'sys/class/tty/ttyS3/type'), '0\n');
    mkdirSync(join(root, 'sys/bus/platform/drivers/serial8250'), { recursive: true });
    symlinkSync(
      join(root, 'sys/bus/platform/drivers/serial8250'),
      join(root, 'sys/class/tty/ttyS3/device/driver'),
    );
    mkdirSync(join(root, 'sys/class/tty/tty1'), { recursive: true });
    mkdirSync(join(root, 'dev/serial/by-id'), { recursive: true });
    symlinkSync('../../ttyUSB0', join(root, 'dev/serial/by-id/usb-FTDI_USB-RS485_A10K-if00-port0'));
    const ports = scanSysfsPorts({ sys: join(root, 'sys'), dev: join(root, 'dev') });
    expect(ports).toHaveLength(1);
    expect(ports[0]).toMatchObject({
      path: join(root, 'dev/ttyUSB0'),
      driver: 'ftdi_sio',
      vendorId: '0403',
      productId: '6001',
      manufacturer: 'FTDI',
      product: 'USB-RS485',
      serialNumber: 'A10K',
      byId: [join(root, 'dev/serial/by-id/usb-FTDI_USB-RS485_A10K-if00-port0')],
    });
  });
});
