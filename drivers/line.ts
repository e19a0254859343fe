/**
 * One physical Modbus line — a serial port or a TCP connection — shared by every meter on it.
 * RS-485 is half duplex and many meters allow a single TCP client, so all meters of a line go
 * through one connection and one queue: one request on the wire at a time.
 *
 * The line (re)opens itself lazily: a request finding it closed opens it, with a growing pause
 * between failed attempts, so an unplugged USB adapter or a rebooting gateway is picked up again
 * without anyone restarting the agent.
 */
import modbusSerial from 'modbus-serial';
import { classifyError, describeTransport, MeterError } from './errors.js';
import type { StatsRecorder } from './stats.js';
import { interFrameMs, nowMs, sleepUntil } from './timing.js';
import type { Transport } from './types.js';

// modbus-serial is CommonJS: its module object is the client class, also exported as `default`.
const ModbusRTU = modbusSerial.default;
export type Client = InstanceType<typeof ModbusRTU>;

const OPEN_BACKOFF_MIN_MS = 100;
const OPEN_BACKOFF_MAX_MS = 5_000;
/** Consecutive TCP timeouts after which the connection is presumed half-dead and rebuilt. */
const TCP_TIMEOUTS_BEFORE_RECONNECT = 3;

export function lineKey(t: Transport): string {
  return t.kind === 'rtu' ? `rtu:${t.port}` : `${t.kind}:${t.host}:${t.port}`;
}

function sameSettings(a: Transport, b: Transport): boolean {
  if (a.kind !== 'rtu' || b.kind !== 'rtu') return a.kind === b.kind;
  return (
    (a.baudRate ?? 9600) === (b.baudRate ?? 9600) &&
    (a.parity ?? 'none') === (b.parity ?? 'none') &&
    (a.stopBits ?? 1) === (b.stopBits ?? 1) &&
    (a.dataBits ?? 8) === (b.dataBits ?? 8)
  );
}

const lines = new Map<string, ModbusLine>();

export class ModbusLine {
  private client?: Client;
  private tail: Promise<unknown> = Promise.resolve();
  private users = 0;
  private openedBefore = false;
  private openBackoffMs = 0;
  private nextOpenAt = 0;
  private lastOpenError?: MeterError;
  /** End of the silence owed to the line (t3.5 after a response, longer after a timeout). */
  private quietUntil = 0;
  private consecutiveTimeouts = 0;
  private readonly gapMs: number;

  private constructor(readonly transport: Transport) {
    this.gapMs =
      transport.kind === 'rtu'
        ? (transport.interFrameDelayMs ?? interFrameMs(transport.baudRate ?? 9600, transport))
        : transport.kind === 'rtu-over-tcp'
          ? 2 // the gateway paces the serial side; a little room for its turnaround
          : 0;
  }

  /** The shared line for a transport; every `acquire` needs one `release`. */
  static acquire(transport: Transport): ModbusLine {
    const key = lineKey(transport);
    let line = lines.get(key);
    if (line && !sameSettings(line.transport, transport)) {
      throw new MeterError(
        'config',
        `${key} is already open as ${describeTransport(line.transport)}, not ${describeTransport(transport)}`,
        'all meters on one RS-485 bus must use the same baud rate, parity and stop bits',
      );
    }
    if (!line) {
      line = new ModbusLine(transport);
      lines.set(key, line);
    }
    line.users++;
    return line;
  }

  async release(): Promise<void> {
    this.users--;
    if (this.users > 0) return;
    lines.delete(lineKey(this.transport));
    // Wait for queued requests, then close.
    await this.tail.catch(() => {});
    await this.drop();
  }

  get isOpen(): boolean {
    return this.client?.isOpen === true;
  }

  /**
   * Runs one Modbus transaction exclusively on the line. Errors come back classified; the
   * latency and the outcome are recorded in the caller's statistics.
   */
  exec<T>(
    unitId: number,
    timeoutMs: number,
    stats: StatsRecorder,
    op: (client: Client) => Promise<T>,
  ): Promise<T> {
    const run = async (): Promise<T> => {
      const client = await this.ensureOpen(stats);
      if (this.quietUntil > nowMs()) await sleepUntil(this.quietUntil);
      this.flushStaleBytes(client);
      client.setID(unitId);
      client.setTimeout(timeoutMs);
      stats.request();
      const started = nowMs();
      // modbus-serial lets a transaction run into its timeout when the connection drops under
      // it; a device that closes on us (reboot, single-client refusal, unplug) should fail fast.
      const events = client as unknown as NodeJS.EventEmitter;
      let onClose: (() => void) | undefined;
      const closed = new Promise<never>((_, reject) => {
        onClose = () => reject(new Error('connection closed by the other side (ECONNRESET)'));
        events.once('close', onClose);
      });
      try {
        const result = await Promise.race([op(client), closed]);
        const done = nowMs();
        stats.response(done - started);
        this.consecutiveTimeouts = 0;
        this.quietUntil = done + this.gapMs;
        return result;
      } catch (err) {
        const e = classifyError(err, unitId, this.transport);
        this.quietUntil = nowMs() + this.gapMs;
        if (e.kind === 'timeout') {
          this.consecutiveTimeouts++;
          // A late answer to this request may still be on its way; on a serial line it would be
          // taken for the answer to the next one, so keep the line quiet a while longer.
          if (this.transport.kind !== 'tcp') this.quietUntil = nowMs() + Math.min(timeoutMs, 500);
          if (this.transport.kind !== 'rtu' && this.consecutiveTimeouts >= TCP_TIMEOUTS_BEFORE_RECONNECT) {
            await this.drop();
          }
        }
        if (e.kind === 'port-gone' || !client.isOpen) await this.drop();
        throw e;
      } finally {
        if (onClose) events.off('close', onClose);
        closed.catch(() => {});
      }
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => {});
    return result;
  }

  private flushStaleBytes(client: Client): void {
    // modbus-serial's buffered RTU ports keep unmatched bytes; drop leftovers of a late or
    // corrupted answer so they cannot be matched to this request.
    const port = (client as unknown as { _port?: { _buffer?: Buffer } })._port;
    if (port && Buffer.isBuffer(port._buffer) && port._buffer.length > 0) port._buffer = Buffer.alloc(0);
  }

  private async ensureOpen(stats: StatsRecorder): Promise<Client> {
    if (this.client?.isOpen) return this.client;
    if (this.client) await this.drop();
    if (nowMs() < this.nextOpenAt && this.lastOpenError) throw this.lastOpenError;
    const client = new ModbusRTU();
    // modbus-serial re-emits port errors; without a listener they would crash the process.
    client.on('error', () => {});
    const t = this.transport;
    try {
      const connecting =
        t.kind === 'rtu'
          ? client.connectRTUBuffered(t.port, {
              baudRate: t.baudRate ?? 9600,
              parity: t.parity ?? 'none',
              stopBits: t.stopBits ?? 1,
              dataBits: t.dataBits ?? 8,
            })
          : t.kind === 'tcp'
            ? client.connectTCP(t.host, { port: t.port })
            : // modbus-serial's "Telnet" port is RTU framing (with CRC) over a socket; its
              // "TcpRTUBuffered" port is MBAP framing despite the name.
              client.connectTelnet(t.host, { port: t.port });
      await withDeadline(connecting, 3_000, `opening ${describeTransport(t)} timed out`);
      if (!client.isOpen) throw new Error(`connection to ${describeTransport(t)} closed at once`);
    } catch (err) {
      closeQuietly(client);
      this.openBackoffMs = Math.min(
        OPEN_BACKOFF_MAX_MS,
        Math.max(OPEN_BACKOFF_MIN_MS, this.openBackoffMs * 2),
      );
      this.nextOpenAt = nowMs() + this.openBackoffMs;
      const reason = err instanceof Error ? err.message.replace(/^Error: /, '') : String(err);
      this.lastOpenError = new MeterError(
        'port-gone',
        t.kind === 'rtu'
          ? `cannot open serial port ${t.port} (${reason})`
          : `cannot connect to ${t.host}:${t.port} (${reason})`,
        t.kind === 'rtu'
          ? 'check the USB RS-485 adapter is plugged in (see `p2pev diag ports`) and that no other program holds the port'
          : 'check the device or gateway is powered and reachable, and that no other client holds its only TCP connection',
        undefined,
        { cause: err },
      );
      throw this.lastOpenError;
    }
    if (this.openedBefore) stats.reconnect();
    this.openedBefore = true;
    this.openBackoffMs = 0;
    this.lastOpenError = undefined;
    this.consecutiveTimeouts = 0;
    this.client = client;
    return client;
  }

  private async drop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) await closeQuietly(client);
  }
}

function withDeadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(message)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function closeQuietly(client: Client): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => resolve();
    try {
      const port = (client as unknown as { _port?: { destroy?: unknown } })._port;
      if (port && typeof port.destroy === 'function') client.destroy(done);
      else client.close(done);
    } catch {
      resolve();
    }
    // Never hang a shutdown on a port that does not call back.
    setTimeout(done, 500).unref();
  });
}
