/**
 * Modbus application layer of the simulated meter: one request PDU in, one response PDU out
 * (Modbus Application Protocol V1.1b3, §6). Function codes 01, 03, 04, 05, 06 and 16; anything
 * else gets exception 01, an unknown address exception 02, a bad count exception 03.
 */
import type { FaultPlan, RequestEffects } from './faults.js';

/** A Modbus slave the servers can carry: the simulated meter, or a simulated wallbox (sim/charger). */
export interface ModbusUnit {
  readonly unitId: number;
  readonly faults: FaultPlan;
  absentUntil: number;
  readRegisters(
    kind: 'input' | 'holding',
    address: number,
    count: number,
    fx?: RequestEffects,
  ): number[] | undefined;
  readCoil(address: number): boolean | undefined;
  writeRegister(address: number, value: number): boolean;
}

const MAX_READ_REGISTERS = 125;

export function exceptionPdu(fc: number, code: number): Buffer {
  return Buffer.from([fc | 0x80, code]);
}

export function handlePdu(model: ModbusUnit, pdu: Buffer, fx: RequestEffects): Buffer {
  const fc = pdu[0] ?? 0;
  if (fx.exception !== undefined) return exceptionPdu(fc, fx.exception);
  if (pdu.length < 5 && fc !== 0) return exceptionPdu(fc, 3);
  switch (fc) {
    case 0x03:
    case 0x04: {
      const address = pdu.readUInt16BE(1);
      const count = pdu.readUInt16BE(3);
      if (count < 1 || count > MAX_READ_REGISTERS) return exceptionPdu(fc, 3);
      const words = model.readRegisters(fc === 0x03 ? 'holding' : 'input', address, count, fx);
      if (!words) return exceptionPdu(fc, 2);
      const out = Buffer.alloc(2 + 2 * count);
      out[0] = fc;
      out[1] = 2 * count;
      words.forEach((w, i) => {
        out.writeUInt16BE(w, 2 + 2 * i);
      });
      return out;
    }
    case 0x01: {
      const address = pdu.readUInt16BE(1);
      const count = pdu.readUInt16BE(3);
      if (count !== 1) return exceptionPdu(fc, 3);
      const coil = model.readCoil(address);
      if (coil === undefined) return exceptionPdu(fc, 2);
      return Buffer.from([fc, 1, coil ? 1 : 0]);
    }
    case 0x05: {
      const address = pdu.readUInt16BE(1);
      const value = pdu.readUInt16BE(3);
      if (value !== 0xff00 && value !== 0x0000) return exceptionPdu(fc, 3);
      if (model.readCoil(address) === undefined) return exceptionPdu(fc, 2);
      model.writeRegister(address, value === 0xff00 ? 1 : 0);
      return Buffer.from(pdu.subarray(0, 5));
    }
    case 0x06: {
      const address = pdu.readUInt16BE(1);
      if (!model.writeRegister(address, pdu.readUInt16BE(3))) return exceptionPdu(fc, 2);
      return Buffer.from(pdu.subarray(0, 5));
    }
    case 0x10: {
      const address = pdu.readUInt16BE(1);
      const count = pdu.readUInt16BE(3);
      const bytes = pdu[5] ?? 0;
      if (count < 1 || bytes !== 2 * count || pdu.length < 6 + bytes) return exceptionPdu(fc, 3);
      for (let i = 0; i < count; i++) {
        if (!model.writeRegister(address + i, pdu.readUInt16BE(6 + 2 * i))) return exceptionPdu(fc, 2);
      }
      return Buffer.from(pdu.subarray(0, 5));
    }
    default:
      return exceptionPdu(fc, 1);
  }
}

/** CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), appended low byte first. */
export function crc16(buf: Buffer): number {
  let crc = 0xffff;
  for (const byte of buf) {
    crc ^= byte;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

export function withCrc(frame: Buffer): Buffer {
  const out = Buffer.alloc(frame.length + 2);
  frame.copy(out);
  out.writeUInt16LE(crc16(frame), frame.length);
  return out;
}

/**
 * Length of the RTU request frame at the start of `buf` (unit, PDU, CRC), 0 if more bytes are
 * needed, -1 if the function code is one whose length cannot be known (take what arrived).
 */
export function rtuRequestLength(buf: Buffer): number {
  if (buf.length < 2) return 0;
  const fc = buf[1]!;
  if (fc >= 1 && fc <= 6) return 8;
  if (fc === 0x0f || fc === 0x10) return buf.length < 7 ? 0 : 9 + buf[6]!;
  return -1;
}
