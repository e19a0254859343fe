/**
 * The command lines: `p2pev sim meter` (as its own process) read and switched by Debian's mbpoll,
 * mbpoll over RTU on a pty, and `p2pev diag …` against simulated meters.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DiagIo, registerDiagCommands } from '../drivers/cli.js';
import { startSimBus, startSimMeter } from '../sim/meter.js';
import { openPtyPair } from '../sim/pty.js';

const run = promisify(execFile);
const simMain = fileURLToPath(new URL('../sim/meter/main.ts', import.meta.url));

/** mbpoll prints "[73]: \t1234.5" per value. */
function mbpollValues(stdout: string): Record<number, string> {
  const values: Record<number, string> = {};
  for (const m of stdout.matchAll(/^\[(\d+)\]:\s+(\S+)/gm)) values[Number(m[1])] = m[2]!;
  return values;
}

describe('p2pev sim meter, read and switched by mbpoll', () => {
  let child: ChildProcess;
  let port: number;

  beforeAll(async () => {
    child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        simMain,
        '--profile',
        'sdm630',
        '--tcp',
        '127.0.0.1:0',
        '--initial-kwh',
        '1234.5',
        '--json',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const line = await new Promise<string>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`sim meter exited with ${code}`)));
      createInterface({ input: child.stdout! }).once('line', resolve);
    });
    const ready = JSON.parse(line) as { ready: boolean; port: number; serial: string };
    expect(ready).toMatchObject({ ready: true, serial: '21000001' });
    port = ready.port;
  });
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });

  /** mbpoll as a Modbus TCP master of unit 1 on the simulated meter's port. */
  const mbpollTcp = (args: string[]) => run('mbpoll', ['-m', 'tcp', '-p', String(port), '-a', '1', ...args]);

  it('mbpoll reads the billing register (input 30073, float32 big-endian)', async () => {
    const { stdout } = await mbpollTcp(['-t', '3:float', '-B', '-r', '73', '-1', '127.0.0.1']);
    expect(mbpollValues(stdout)[73]).toBe('1234.5');
  });

  it('mbpoll reads the serial number (holding 0xFC00, uint32)', async () => {
    const { stdout } = await mbpollTcp(['-t', '4:int', '-B', '-0', '-r', String(0xfc00), '-1', '127.0.0.1']);
    expect(mbpollValues(stdout)[0xfc00]).toBe('21000001');
  });

  it('mbpoll switches charging on through the sim-only control registers', async () => {
    const mb = ['-t', '4', '-0'];
    await mbpollTcp([...mb, '-r', String(0x7f01), '-1', '127.0.0.1', '220']);
    await mbpollTcp([...mb, '-r', String(0x7f00), '-1', '127.0.0.1', '1']);
    const { stdout } = await mbpollTcp([...mb, '-r', String(0x7f00), '-c', '2', '-1', '127.0.0.1']);
    expect(mbpollValues(stdout)).toMatchObject({ [0x7f00]: '1', [0x7f01]: '220' });
    await new Promise((r) => setTimeout(r, 1200));
    const power = await mbpollTcp(['-t', '3:float', '-B', '-0', '-r', '52', '-1', '127.0.0.1']);
    expect(Number(mbpollValues(power.stdout)[52])).toBeGreaterThan(0);
  });
});

it('mbpoll reads the simulated meter over RTU on a pty', async () => {
  const pty = await openPtyPair();
  const sim = await startSimMeter({
    profile: 'sdm120',
    rtu: { path: pty.slave },
    initialWh: 321_000,
    emulateBaud: 9600,
  });
  try {
    const { stdout } = await run('mbpoll', [
      '-m',
      'rtu',
      '-b',
      '9600',
      '-P',
      'none',
      '-a',
      '1',
      '-t',
      '3:float',
      '-B',
      '-0',
      '-r',
      '72',
      '-1',
      pty.master,
    ]);
    expect(mbpollValues(stdout)[72]).toBe('321');
  } finally {
    await sim.close();
    await pty.close();
  }
});

function captureIo(
  isTTY = false,
): DiagIo & { stdout: string[]; stderr: string[]; progressed: string[]; exitCode: number } {
  const io = {
    stdout: [] as string[],
    stderr: [] as string[],
    progressed: [] as string[],
    exitCode: 0,
    isTTY,
    progress: (t: string) => io.progressed.push(t),
    out: (t: string) => io.stdout.push(t),
    err: (t: string) => io.stderr.push(t),
    setExitCode: (c: number) => {
      io.exitCode = c;
    },
    interrupted: () => new Promise<void>(() => {}),
  };
  return io;
}

async function diag(...args: string[]) {
  return diagOn(captureIo(), ...args);
}

async function diagOn(io: ReturnType<typeof captureIo>, ...args: string[]) {
  const program = new Command('p2pev').exitOverride();
  registerDiagCommands(program, io);
  await program.parseAsync(['node', 'p2pev', 'diag', ...args]);
  return io;
}

describe('p2pev diag', () => {
  it('read: every quantity with units, as text and JSON', async () => {
    const sim = await startSimMeter({
      profile: 'em340',
      tcp: { port: 0 },
      initialWh: 98_700,
      serial: 'CG0001',
    });
    try {
      const tcp = `127.0.0.1:${sim.port}`;
      const text = await diag('read', '--tcp', tcp, '--profile', 'em340');
      expect(text.stdout.join('\n')).toMatch(/Carlo Gavazzi EM340.*serial CG0001/);
      expect(text.stdout.join('\n')).toMatch(/energy\s+98700\s+Wh\s+input 0x0034 int32/);
      const json = JSON.parse((await diag('read', '--tcp', tcp, '--profile', 'em340', '--json')).stdout[0]!);
      expect(json.serial).toBe('CG0001');
      expect(json.values).toContainEqual({ name: 'energy', value: 98_700, unit: 'Wh' });
      expect(json.values).toContainEqual({ name: 'frequency', value: 50, unit: 'Hz' });
    } finally {
      await sim.close();
    }
  });

  it('dump: raw registers in hex and decoded', async () => {
    const sim = await startSimMeter({ profile: 'sdm630', tcp: { port: 0 }, initialWh: 1_234_500 });
    try {
      const io = await diag(
        'dump',
        '--tcp',
        `127.0.0.1:${sim.port}`,
        '--from',
        '0x48',
        '--count',
        '2',
        '--input',
        '--json',
      );
      const dump = JSON.parse(io.stdout[0]!);
      expect(dump.words).toEqual([0x449a, 0x5000]);
      expect(dump.rows[0]).toMatchObject({ address: 0x48, hex: '449a', f32: 1234.5 });
      const text = await diag(
        'dump',
        '--tcp',
        `127.0.0.1:${sim.port}`,
        '--from',
        '72',
        '--count',
        '2',
        '--input',
      );
      expect(text.stdout.join('\n')).toMatch(/0x0048\s+72\s+449a.*1234\.5/);
    } finally {
      await sim.close();
    }
  });

  it('watch: refreshes with values, errors by class and latency', async () => {
    const sim = await startSimMeter({ profile: 'abb-b23', tcp: { port: 0 }, initialWh: 500 });
    try {
      const args = [
        'watch',
        '--tcp',
        `127.0.0.1:${sim.port}`,
        '--profile',
        'abb-b23',
        '--count',
        '2',
        '--interval',
        '50',
      ];
      const json = await diag(...args, '--json');
      expect(json.stdout).toHaveLength(2);
      const last = JSON.parse(json.stdout[1]!);
      expect(last.reading.energyWh).toBe(500);
      expect(last.stats.errors).toMatchObject({ timeout: 0, crc: 0 });
      expect(last.stats.latencyMs.samples).toBeGreaterThan(0);
      const text = await diagOn(captureIo(true), ...args);
      expect(text.stdout[1]?.startsWith('\x1b[2J\x1b[H')).toBe(true);
      expect(text.stdout[1]).toMatch(/errors\s+timeout 0\s+crc 0/);
      expect(text.stdout[1]).toMatch(/latency p50 [\d.]+ ms/);
      // Into a pipe: one plain line per refresh, no screen-clearing codes.
      const piped = await diag(...args);
      expect(piped.stdout).toHaveLength(2);
      for (const line of piped.stdout) {
        expect(line).not.toContain('\x1b');
        expect(line).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z {2}energy 500 Wh {2}power/);
      }
    } finally {
      await sim.close();
    }
  });

  it('scan: finds the devices on a bus and the profile each matches', async () => {
    const pty = await openPtyPair();
    const bus = await startSimBus({
      rtu: { path: pty.slave },
      meters: [
        { profile: 'sdm120', unitId: 1, initialWh: 1_000 },
        { profile: 'em340', unitId: 3, initialWh: 2_000, serial: 'CGSCAN' },
      ],
    });
    try {
      const io = await diag(
        'scan',
        '--port',
        pty.master,
        '--bauds',
        '9600',
        '--parities',
        'none',
        '--ids',
        '1-4',
        // Two ids answer nobody, so this is the scan's length; the simulated bus answers from the
        // test's own busy process (80 ms lost a unit under CI's load).
        '--timeout',
        '500',
        '--json',
      );
      const { devices } = JSON.parse(io.stdout[0]!);
      expect(devices).toHaveLength(2);
      expect(devices[0]).toMatchObject({ unitId: 1, matches: [{ profile: 'sdm120', serial: '21000001' }] });
      expect(devices[1]).toMatchObject({ unitId: 3 });
      expect(devices[1].matches.map((m: { profile: string }) => m.profile)).toEqual(['em340', 'et340']);
      expect(devices[0].line).toMatch(/^9600 8N1 on /);
      // Progress on stderr while it asks, ending at the last id.
      expect(io.progressed.at(-1)).toMatch(/: id 4 \(4\/4\), 2 found$/);
    } finally {
      await bus.close();
      await pty.close();
    }
  });

  it('errors say what to check, as text and as JSON', async () => {
    const pty = await openPtyPair();
    try {
      const io = await diag(
        'read',
        '--port',
        pty.master,
        '--profile',
        'sdm630',
        '--id',
        '5',
        '--timeout',
        '60',
      );
      expect(io.exitCode).toBe(1);
      expect(io.stderr[0]).toMatch(
        /no response from unit 5 at 9600 8N1 on .*: check A\/B wiring, termination, unit id and baud; `p2pev diag scan --port .*` finds the unit ids that answer/,
      );
      const missing = await diag(
        'read',
        '--port',
        '/dev/ttyUSB-nonexistent',
        '--profile',
        'sdm630',
        '--json',
      );
      const { error } = JSON.parse(missing.stdout[0]!);
      expect(error.kind).toBe('port-gone');
      expect(error.message).toMatch(/cannot open serial port \/dev\/ttyUSB-nonexistent/);
      expect(error.hint).toMatch(/diag ports/);
      const badProfile = await diag('read', '--port', pty.master, '--profile', 'nope');
      expect(badProfile.stderr[0]).toMatch(/unknown meter profile "nope": use one of sdm630/);
      expect(badProfile.exitCode).toBe(2);
    } finally {
      await pty.close();
    }
  });

  it('ports: lists serial ports as JSON', async () => {
    const io = await diag('ports', '--json');
    expect(Array.isArray(JSON.parse(io.stdout[0]!).ports)).toBe(true);
  });

  it('read detects the profile when none is given, and takes the meter from an agent config', async () => {
    const sim = await startSimMeter({ profile: 'abb-b23', tcp: { port: 0 }, initialWh: 4_200 });
    const dir = mkdtempSync(join(tmpdir(), 'p2pev-diag-'));
    try {
      const io = await diag('read', '--tcp', `127.0.0.1:${sim.port}`, '--json');
      expect(io.exitCode).toBe(0);
      // The B23 and B24 share a register map: the first is as good, and the tie is said.
      expect(io.stderr).toEqual(['profile detected: abb-b23 (the same registers as abb-b24)']);
      expect(JSON.parse(io.stdout[0]!)).toMatchObject({ profile: 'abb-b23' });
      const config = join(dir, 'agent.config.json');
      writeFileSync(
        config,
        JSON.stringify({
          role: 'hcs',
          meter: {
            profile: 'abb-b23',
            unitId: 1,
            transport: { kind: 'tcp', host: '127.0.0.1', port: sim.port },
          },
        }),
      );
      const fromConfig = await diag('read', '--config', config, '--json');
      expect(fromConfig.stderr).toEqual([]);
      expect(JSON.parse(fromConfig.stdout[0]!).values).toContainEqual({
        name: 'energy',
        value: 4_200,
        unit: 'Wh',
      });
      const both = await diag('read', '--config', config, '--tcp', `127.0.0.1:${sim.port}`);
      expect(both.exitCode).toBe(2);
      expect(both.stderr[0]).toContain('give only one of --config and --port/--tcp');
    } finally {
      await sim.close();
    }
  });

  it('generic is read through a config with its register map, and refused without one (exit 2)', async () => {
    const sim = await startSimMeter({ profile: 'sdm630', tcp: { port: 0 }, initialWh: 1_234_500 });
    const dir = mkdtempSync(join(tmpdir(), 'p2pev-diag-'));
    try {
      const bare = await diag('read', '--tcp', `127.0.0.1:${sim.port}`, '--profile', 'generic');
      expect(bare.exitCode).toBe(2);
      expect(bare.stderr[0]).toContain('profile "generic" needs its register map');
      const config = join(dir, 'generic.json');
      writeFileSync(
        config,
        JSON.stringify({
          meter: {
            profile: 'generic',
            transport: { kind: 'tcp', host: '127.0.0.1', port: sim.port },
            generic: {
              name: 'my-meter',
              quantities: { energy: { kind: 'input', address: 0x48, type: 'float32', unit: 'kWh' } },
            },
          },
        }),
      );
      const io = await diag('read', '--config', config, '--json');
      expect(io.stderr).toEqual([]);
      expect(JSON.parse(io.stdout[0]!).values).toContainEqual({
        name: 'energy',
        value: 1_234_500,
        unit: 'Wh',
      });
    } finally {
      await sim.close();
    }
  });

  it('usage mistakes exit 2 and say what to give: --tcp with --port, nowhere, --input with --holding', async () => {
    const both = await diag(
      'read',
      '--tcp',
      '127.0.0.1:502',
      '--port',
      '/dev/ttyUSB0',
      '--profile',
      'sdm630',
    );
    expect(both.exitCode).toBe(2);
    expect(both.stderr[0]).toContain('give only one of --port and --tcp');
    const nowhere = await diag('dump', '--from', '0');
    expect(nowhere.exitCode).toBe(2);
    expect(nowhere.stderr[0]).toContain('say where the meter is');
    const kinds = await diag('dump', '--tcp', '127.0.0.1:502', '--from', '0', '--input', '--holding');
    expect(kinds.exitCode).toBe(2);
    expect(kinds.stderr[0]).toContain('give only one of --input and --holding');
  });
});
