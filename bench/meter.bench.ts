/**
 * `npm run bench:meter` — billing reads per second through the real driver stack against the
 * simulated meter (in its own process): Modbus TCP on loopback, and Modbus RTU on a socat pty pair
 * with the meter emulating the wire time of a 9600- and a 19200-baud line. Each RTU figure is set
 * against the line's theoretical maximum for the same transaction: request (8 bytes) + t3.5 +
 * response (9 bytes) + t3.5, at 10 bits per character (8N1: start + 8 data + stop).
 * Prints a table, then one JSON object as the last line. Figures only: nothing here asserts timing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants as fsConstants, openSync } from 'node:fs';
import { createInterface } from 'node:readline';
import tty from 'node:tty';
import { SerialPort } from 'serialport';
import { fileURLToPath } from 'node:url';
import { openMeter } from '../drivers/index.js';
import { summarize } from '../drivers/stats.js';
import { bitsPerChar, lineMaxPerSec, READ_REQUEST_BYTES, readResponseBytes } from '../drivers/timing.js';
import type { Transport } from '../drivers/types.js';
import { openPtyPair } from '../sim/pty.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const PROFILE = 'sdm630'; // billing register: input 0x0048, float32 = 2 registers
const simMain = fileURLToPath(new URL('../sim/meter/main.ts', import.meta.url));

async function startSimProcess(args: string[]): Promise<{ child: ChildProcess; port?: number }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', simMain, '--profile', PROFILE, '--json', ...args],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: child.stdout! });
  const ready = await new Promise<{ port?: number }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`simulated meter exited with ${code}`)));
    lines.once('line', (line) => resolve(JSON.parse(line) as { port?: number }));
  });
  return { child, ...(ready.port !== undefined ? { port: ready.port } : {}) };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

async function measure(
  transport: Transport,
): Promise<{ perSec: number; p50: number; p99: number; errors: number }> {
  const meter = await openMeter({ profile: PROFILE, unitId: 1, transport, timeoutMs: 1000 });
  for (let i = 0; i < 20; i++) await meter.readEnergyWh(); // warm-up: JIT, first serial read
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  while (performance.now() < end) {
    const t0 = performance.now();
    try {
      await meter.readEnergyWh();
      latencies.push(performance.now() - t0);
    } catch {
      errors++;
    }
  }
  const elapsed = (performance.now() - start) / 1000;
  await meter.close();
  const s = summarize(latencies);
  return { perSec: latencies.length / elapsed, p50: s.p50, p99: s.p99, errors };
}

/**
 * Round trip of 8 bytes over the bare socat pty pair (serialport on one end, a tty handle on the
 * other, as in the runs): the test rig's own latency, which a transaction pays on top of line time.
 */
async function rigRoundTripMs(): Promise<number> {
  const pty = await openPtyPair();
  const fd = openSync(pty.slave, fsConstants.O_RDWR | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK);
  const echoIn = new tty.ReadStream(fd);
  const echoOut = new tty.WriteStream(fd);
  echoIn.on('data', (d: Buffer) => echoOut.write(d));
  const port = new SerialPort({ path: pty.master, baudRate: 19200 });
  await new Promise((r) => port.once('open', r));
  const samples: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      port.once('data', () => resolve());
      port.write(Buffer.alloc(8, i));
    });
    samples.push(performance.now() - t0);
  }
  await new Promise((r) => port.close(r));
  echoIn.destroy();
  echoOut.destroy();
  await pty.close();
  return summarize(samples).p50;
}

async function rtu(baud: number) {
  const pty = await openPtyPair();
  const sim = await startSimProcess(['--port', pty.slave, '--baud', String(baud)]);
  try {
    const r = await measure({ kind: 'rtu', port: pty.master, baudRate: baud });
    const lineMax = lineMaxPerSec(READ_REQUEST_BYTES, readResponseBytes(2), baud, {
      parity: 'none',
      stopBits: 1,
    });
    return { ...r, lineMax };
  } finally {
    await stop(sim.child);
    await pty.close();
  }
}

async function tcp() {
  const sim = await startSimProcess(['--tcp', '127.0.0.1:0']);
  try {
    return await measure({ kind: 'tcp', host: '127.0.0.1', port: sim.port! });
  } finally {
    await stop(sim.child);
  }
}

const rigRtt = await rigRoundTripMs();
const r9600 = await rtu(9600);
const r19200 = await rtu(19200);
const t = await tcp();

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const rows = [
  ['RTU 9600 8N1 (pty, emulated wire time)', r9600.perSec, r9600.lineMax, r9600.p50, r9600.p99],
  ['RTU 19200 8N1 (pty, emulated wire time)', r19200.perSec, r19200.lineMax, r19200.p50, r19200.p99],
  ['Modbus TCP (loopback)', t.perSec, undefined, t.p50, t.p99],
] as const;
console.log(
  `meter benchmark: ${PROFILE} billing register (2 registers), ${SECONDS} s per line, ${bitsPerChar()} bits/char`,
);
console.log(`pty rig round trip (socat pair, no Modbus): p50 ${rigRtt} ms, paid once per RTU transaction`);
console.log('| line | reads/s | line max/s | of max | p50 ms | p99 ms |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const [name, perSec, max, p50, p99] of rows) {
  const share = max ? `${round((100 * perSec) / max)} %` : '—';
  console.log(`| ${name} | ${round(perSec)} | ${max ? round(max) : '—'} | ${share} | ${p50} | ${p99} |`);
}
console.log(
  JSON.stringify({
    profile: PROFILE,
    seconds: SECONDS,
    bitsPerChar: bitsPerChar(),
    rtu9600ReadsPerSec: round(r9600.perSec),
    rtu9600LineMaxPerSec: round(r9600.lineMax),
    rtu9600OfLineMax: round(r9600.perSec / r9600.lineMax, 3),
    rtu9600P50Ms: r9600.p50,
    rtu9600P99Ms: r9600.p99,
    rtu19200ReadsPerSec: round(r19200.perSec),
    rtu19200LineMaxPerSec: round(r19200.lineMax),
    rtu19200OfLineMax: round(r19200.perSec / r19200.lineMax, 3),
    rtu19200P50Ms: r19200.p50,
    rtu19200P99Ms: r19200.p99,
    ptyRigRoundTripP50Ms: rigRtt,
    tcpReadsPerSec: round(t.perSec),
    tcpP50Ms: t.p50,
    tcpP99Ms: t.p99,
    errors: r9600.errors + r19200.errors + t.errors,
  }),
);
