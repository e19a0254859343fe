/**
 * Wire side of the simulated meter: Modbus TCP (MBAP), RTU framing over TCP (what a serial
 * gateway's "transparent" mode carries) and RTU on a serial port (the slave end of a socat pty
 * pair). Several meters — different unit ids — can share one endpoint, as on a real RS-485 bus.
 */
import { constants as fsConstants, openSync, realpathSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import tty from 'node:tty';
import { SerialPort } from 'serialport';
import { frameTimeMs, interFrameMs, nowMs, sleepUntil } from '../../drivers/timing.js';
import { crc16, handlePdu, type ModbusUnit, rtuRequestLength, withCrc } from './pdu.js';

export type Units = ReadonlyMap<number, ModbusUnit>;

interface Answer {
  pdu: Buffer;
  delayMs: number;
  badCrc: boolean;
}

/** Runs one request through the addressed meter's faults and registers; undefined = stay silent. */
function answer(units: Units, unitId: number, pdu: Buffer): Answer | undefined {
  if (unitId === 0) {
    // Broadcast: writes reach every meter, nobody answers.
    for (const m of units.values()) handlePdu(m, pdu, { drop: false, badCrc: false, delayMs: 0 });
    return undefined;
  }
  const model = units.get(unitId);
  if (!model || model.absentUntil > nowMs()) return undefined;
  const fx = model.faults.next();
  if (fx.drop) return undefined;
  return { pdu: handlePdu(model, pdu, fx), delayMs: fx.delayMs, badCrc: fx.badCrc };
}

export interface RtuTiming {
  /** Baud rate whose wire time is emulated; none = answer at once. */
  baud?: number;
  parity?: 'none' | 'even' | 'odd';
  stopBits?: 1 | 2;
}

/**
 * Splits an RTU byte stream into request frames, checks their CRC and answers them one after the
 * other, holding each answer back for the time a real line at `timing.baud` would take.
 */
class RtuResponder {
  private buf: Buffer = Buffer.alloc(0);
  private lineFreeAt = 0;
  private queue: Promise<void> = Promise.resolve();
  private staleTimer?: NodeJS.Timeout;

  constructor(
    private readonly units: Units,
    private readonly timing: RtuTiming,
    private readonly send: (frame: Buffer) => void,
  ) {}

  push(data: Buffer): void {
    const arrivedAt = nowMs();
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    for (;;) {
      let len = rtuRequestLength(this.buf);
      if (len === 0) break;
      if (len < 0) len = this.buf.length; // unknown function: the whole burst is the frame
      if (this.buf.length < len) break;
      const frame = this.buf.subarray(0, len);
      this.buf = this.buf.subarray(len);
      if (frame.length < 4 || crc16(frame.subarray(0, -2)) !== frame.readUInt16LE(frame.length - 2)) {
        // A slave ignores a frame with a bad CRC; resynchronise on the next burst.
        this.buf = Buffer.alloc(0);
        break;
      }
      const request = Buffer.from(frame);
      this.queue = this.queue.then(() => this.respond(request, arrivedAt)).catch(() => {});
    }
    // Leftover partial bytes that no further byte completes are noise: drop them after a silence.
    clearTimeout(this.staleTimer);
    if (this.buf.length > 0) this.staleTimer = setTimeout(() => (this.buf = Buffer.alloc(0)), 100);
  }

  private async respond(request: Buffer, arrivedAt: number): Promise<void> {
    const a = answer(this.units, request[0]!, request.subarray(1, -2));
    const baud = this.timing.baud;
    let sendAt = nowMs();
    if (baud) {
      // On a pty the request arrived whole when the master began to send; on the wire its last
      // byte lands one frame time later, the slave waits t3.5, then its answer takes its own time.
      const gap = interFrameMs(baud, this.timing);
      const reqEnd = Math.max(arrivedAt, this.lineFreeAt) + frameTimeMs(request.length, baud, this.timing);
      const respEnd = a ? reqEnd + gap + frameTimeMs(a.pdu.length + 3, baud, this.timing) : reqEnd;
      this.lineFreeAt = respEnd + gap;
      sendAt = respEnd;
    }
    if (!a) return;
    sendAt += a.delayMs;
    if (sendAt > nowMs()) await sleepUntil(sendAt);
    const frame = withCrc(Buffer.concat([Buffer.from([request[0]!]), a.pdu]));
    if (a.badCrc) frame[frame.length - 1]! ^= 0x5a;
    this.send(frame);
  }

  dispose(): void {
    clearTimeout(this.staleTimer);
  }
}

export interface SimEndpoint {
  /** TCP port (for TCP endpoints). */
  readonly port?: number;
  /** Stops answering and, for TCP, closes every connection and the listener, for `forMs` (or until reappear). */
  disappear(forMs?: number): void;
  reappear(): void;
  close(): Promise<void>;
}

export interface TcpEndpointOptions {
  host?: string;
  port?: number;
  /** 'tcp' = Modbus TCP (MBAP header); 'rtu' = RTU frames with CRC over the socket (serial gateway). */
  framing?: 'tcp' | 'rtu';
  /** Devices that accept one client at a time refuse (close) any further connection. */
  maxClients?: number;
  timing?: RtuTiming;
}

export async function startTcpEndpoint(units: Units, opts: TcpEndpointOptions = {}): Promise<SimEndpoint> {
  const host = opts.host ?? '127.0.0.1';
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = opts.port ?? 0;
  let closed = false;
  let comeBack: NodeJS.Timeout | undefined;

  const onConnection = (socket: Socket): void => {
    if (opts.maxClients !== undefined && sockets.size >= opts.maxClients) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    if (opts.framing === 'rtu') {
      const rtu = new RtuResponder(
        units,
        opts.timing ?? {},
        (frame) => socket.writable && socket.write(frame),
      );
      socket.on('data', (d: Buffer) => rtu.push(d));
      socket.on('close', () => rtu.dispose());
      return;
    }
    let buf: Buffer = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 7) {
        const len = buf.readUInt16BE(4);
        if (len < 2 || len > 254) {
          socket.destroy(); // not Modbus TCP
          return;
        }
        if (buf.length < 6 + len) break;
        const adu = buf.subarray(0, 6 + len);
        buf = buf.subarray(6 + len);
        const a = answer(units, adu[6]!, Buffer.from(adu.subarray(7)));
        if (!a) continue;
        // Without a CRC on TCP, "corrupted" means a PDU one byte short of what it announces.
        const pdu = a.badCrc && a.pdu.length > 2 ? a.pdu.subarray(0, -1) : a.pdu;
        const reply = Buffer.alloc(7 + pdu.length);
        adu.copy(reply, 0, 0, 4);
        reply.writeUInt16BE(pdu.length + 1, 4);
        reply[6] = adu[6]!;
        pdu.copy(reply, 7);
        const write = () => socket.writable && socket.write(reply);
        if (a.delayMs > 0) setTimeout(write, a.delayMs);
        else write();
      }
    });
  };

  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = createServer(onConnection);
      s.once('error', reject);
      s.listen(port, host, () => {
        s.off('error', reject);
        s.on('error', () => {});
        const address = s.address();
        if (address && typeof address === 'object') port = address.port;
        server = s;
        resolve();
      });
    });

  const shutDown = async (): Promise<void> => {
    const s = server;
    server = undefined;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  };

  await listen();
  return {
    get port() {
      return port;
    },
    disappear(forMs?: number) {
      clearTimeout(comeBack);
      void shutDown();
      if (forMs !== undefined) {
        comeBack = setTimeout(() => {
          if (!closed) listen().catch(() => {});
        }, forMs);
      }
    },
    reappear() {
      clearTimeout(comeBack);
      if (!server && !closed) listen().catch(() => {});
    },
    async close() {
      closed = true;
      clearTimeout(comeBack);
      await shutDown();
    },
  };
}

export interface SerialEndpointOptions {
  path: string;
  baudRate?: number;
  timing?: RtuTiming;
}

/** A byte link the RTU slave reads and writes; a pty or a real serial port. */
interface ByteLink {
  write(frame: Buffer): void;
  close(): Promise<void>;
}

/**
 * Opens a pseudo-terminal as a libuv tty handle: epoll-driven reads and writes, no thread-pool
 * round trip per chunk as with serialport's fs-based binding. A pty has no baud rate or parity to
 * set (socat made it raw), and every millisecond of rig latency would be charged to the line.
 */
function openPtyLink(path: string, onData: (d: Buffer) => void, onGone: () => void): ByteLink {
  const fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK);
  const input = new tty.ReadStream(fd);
  const output = new tty.WriteStream(fd);
  let gone = false;
  const lost = () => {
    if (gone) return;
    gone = true;
    input.destroy();
    output.destroy();
    onGone();
  };
  input.on('data', (d: Buffer) => onData(d));
  input.on('error', lost); // EIO when the other side of the pair vanishes
  input.on('close', lost);
  output.on('error', lost);
  return {
    write: (frame) => {
      if (!gone) output.write(frame);
    },
    close: async () => {
      gone = true;
      input.destroy();
      output.destroy();
    },
  };
}

function openSerialLink(
  path: string,
  baudRate: number,
  onData: (d: Buffer) => void,
  onGone: () => void,
): Promise<ByteLink> {
  return new Promise((resolve, reject) => {
    const p = new SerialPort({ path, baudRate, autoOpen: false });
    p.open((err) => {
      if (err) return reject(err);
      p.on('data', onData);
      p.on('error', () => {});
      p.on('close', onGone);
      resolve({
        write: (frame) => {
          if (p.isOpen) p.write(frame);
        },
        close: () => new Promise<void>((r) => (p.isOpen ? p.close(() => r()) : r())),
      });
    });
  });
}

const isPty = (path: string): boolean => {
  try {
    return realpathSync(path).startsWith('/dev/pts/');
  } catch {
    return false;
  }
};

/**
 * RTU slave on a serial device or pty. If the device vanishes (the pty pair's socat was stopped,
 * as when a USB adapter is pulled), it keeps trying to reopen the same path.
 */
export async function startSerialEndpoint(units: Units, opts: SerialEndpointOptions): Promise<SimEndpoint> {
  let link: ByteLink | undefined;
  let closed = false;
  let silentUntil = 0;
  let retry: NodeJS.Timeout | undefined;
  const responder = new RtuResponder(units, opts.timing ?? {}, (frame) => {
    if (nowMs() >= silentUntil) link?.write(frame);
  });
  const onData = (d: Buffer) => {
    if (nowMs() >= silentUntil) responder.push(d);
  };

  const open = async (): Promise<void> => {
    const onGone = () => {
      link = undefined;
      scheduleReopen();
    };
    link = isPty(opts.path)
      ? openPtyLink(opts.path, onData, onGone)
      : await openSerialLink(opts.path, opts.baudRate ?? opts.timing?.baud ?? 9600, onData, onGone);
  };

  const scheduleReopen = (): void => {
    if (closed) return;
    clearTimeout(retry);
    retry = setTimeout(() => {
      open().catch(scheduleReopen);
    }, 100);
  };

  await open();
  return {
    disappear(forMs?: number) {
      silentUntil = forMs === undefined ? Number.POSITIVE_INFINITY : nowMs() + forMs;
    },
    reappear() {
      silentUntil = 0;
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      responder.dispose();
      const l = link;
      link = undefined;
      await l?.close();
    },
  };
}
