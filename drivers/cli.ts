/**
 * `p2pev diag …`: field diagnostics for the technician on site with a USB RS-485 adapter (or a
 * Modbus TCP gateway): which ports exist, who answers on the bus, what a meter reads, live values,
 * raw registers. `--json` everywhere; errors say what to check; usage mistakes exit 2.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Command } from 'commander';
import { registerDiagCharger } from './diag/charger.js';
import { identify, type ProfileMatch, rawMeter } from './diag/identify.js';
import {
  type LineOptions,
  parseAddress,
  parseIdList,
  parseNumber,
  parseParity,
  transportFrom,
} from './diag/options.js';
import { describeTransport, MeterError } from './errors.js';
import { ModbusMeter } from './meter.js';
import { listSerialPorts } from './ports.js';
import { PROFILE_NAMES } from './profiles.js';
import { decodeRaw, decodeText } from './registers.js';
import { sleep } from './timing.js';
import type { GenericProfile, Parity, Transport } from './types.js';

/** Where diag writes; tests pass their own. */
export interface DiagIo {
  out(text: string): void;
  err(text: string): void;
  setExitCode(code: number): void;
  /** Resolves when the user interrupts (Ctrl-C); `diag watch` stops then. */
  interrupted(): Promise<void>;
  /** Is stdout a terminal? `watch` redraws the screen there, and writes plain lines into a pipe. */
  isTTY?: boolean;
  /** A progress note on stderr (scan): redrawn in place on a terminal, a line each otherwise. */
  progress?(text: string, done: boolean): void;
}

const processIo: DiagIo = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
  isTTY: !!process.stdout.isTTY,
  progress: (t, done) => {
    if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${t}${done ? '\n' : ''}`);
    else process.stderr.write(`${t}\n`);
  },
  setExitCode: (c) => {
    process.exitCode = c;
  },
  interrupted: () => new Promise((r) => process.once('SIGINT', () => r())),
};

function lineOptions(cmd: Command, withProfile = false): Command {
  cmd
    .option('--port <tty>', 'serial port, e.g. /dev/ttyUSB0 (see `diag ports`)')
    .option('--tcp <host:port>', 'Modbus TCP device or gateway instead of a serial port')
    .option('--rtu-over-tcp', 'with --tcp: the gateway passes RTU frames (with CRC) through')
    .option('--baud <b>', 'baud rate', '9600')
    .option('--parity <p>', 'none | even | odd', 'none')
    .option('--stop-bits <n>', '1 | 2', '1')
    .option('--id <n>', 'Modbus unit id', '1')
    .option('--timeout <ms>', 'per-request timeout')
    .option('--json', 'machine-readable output')
    .option(
      '-c, --config <file>',
      "the device's agent.config.json: take the meter's line, unit id and profile from its meter section",
    );
  if (withProfile)
    cmd.option(
      '--profile <name>',
      `meter profile: ${BUILT_IN_PROFILES.join(', ')} (default: detected, as scan does; generic only through --config)`,
    );
  return cmd;
}

/** Profiles a technician can name; generic needs a register map, which only a config file holds. */
const BUILT_IN_PROFILES = PROFILE_NAMES.filter((p) => p !== 'generic');

/** A usage mistake: exit code 2. */
const usage = (message: string, hint = '') => new MeterError('config', message, hint);

/** The meter section of an agent config: line, unit id, profile (and a generic register map). */
interface ConfigMeter {
  profile: string;
  unitId?: number;
  transport: Transport;
  timeoutMs?: number;
  generic?: GenericProfile;
}

function meterFromConfig(path: string): ConfigMeter {
  let cfg: { meter?: ConfigMeter };
  try {
    cfg = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw usage(`cannot read ${path}: ${(err as Error).message}`, 'give the path of the agent config');
  }
  const m = cfg.meter;
  if (!m?.transport || !m.profile)
    throw usage(`${path} has no meter section with profile and transport`, 'an edge has no meter');
  // A relative device path is relative to the config, as the agent reads it.
  if (m.transport.kind === 'rtu' && !isAbsolute(m.transport.port))
    m.transport = { ...m.transport, port: resolve(dirname(resolve(path)), m.transport.port) };
  return m;
}

/** Where the meter is: --config, or --port/--tcp and the line flags; never both. */
function lineFrom(o: LineOptions & { config?: string }): {
  transport: Transport;
  unitId: number;
  meter?: ConfigMeter;
} {
  if (o.config) {
    if (o.port || o.tcp) throw usage('give only one of --config and --port/--tcp');
    const meter = meterFromConfig(o.config);
    return { transport: meter.transport, unitId: meter.unitId ?? 1, meter };
  }
  return { transport: transportFrom(o), unitId: parseNumber(o.id, 'unit id', 1) };
}

function explain(err: unknown): { kind: string; message: string; hint: string } {
  if (err instanceof MeterError) return { kind: err.kind, message: err.message, hint: err.hint };
  return { kind: 'error', message: err instanceof Error ? err.message : String(err), hint: '' };
}

/**
 * Runs a command body; a failure becomes one message (or a JSON error object) and exit code 1,
 * or 2 for a usage mistake (a bad flag or value: kind "config").
 */
function action<O extends { json?: boolean }>(io: DiagIo, body: (o: O) => Promise<void>) {
  return async (o: O) => {
    try {
      await body(o);
    } catch (err) {
      const e = explain(err);
      if (o.json) io.out(JSON.stringify({ error: e }));
      else io.err(`p2pev diag: ${e.message}`);
      io.setExitCode(e.kind === 'config' ? 2 : 1);
    }
  };
}

/** No answer from a unit often means the wrong unit id: say how to find the right one. */
function withScanHint(err: unknown, o: LineOptions & { config?: string }): unknown {
  if (!(err instanceof MeterError) || err.kind !== 'timeout') return err;
  const where = o.config ? `--config ${o.config}` : o.tcp ? `--tcp ${o.tcp}` : `--port ${o.port}`;
  return new MeterError(
    'timeout',
    err.message.replace(/: [^:]*$/, ''),
    `${err.hint}; \`p2pev diag scan ${o.config ? `--port … (the line in ${o.config})` : where}\` finds the unit ids that answer`,
  );
}

const fmt = (v: number | undefined, digits = 3): string =>
  v === undefined ? '—' : Number.isInteger(v) ? String(v) : v.toFixed(digits);

function table(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

async function withMeter<T>(meter: ModbusMeter, body: (m: ModbusMeter) => Promise<T>): Promise<T> {
  await meter.open();
  try {
    return await body(meter);
  } finally {
    await meter.close();
  }
}

/**
 * The meter to read: its profile from --profile, else the config's, else detected (as scan
 * does; models sharing a register map read the same, so the first of a tie is as good).
 */
async function meterFor(
  o: LineOptions & { profile?: string; config?: string },
  io: DiagIo,
): Promise<ModbusMeter> {
  const { transport, unitId, meter } = lineFrom(o);
  const timeoutMs = o.timeout ? parseNumber(o.timeout, 'timeout', 500) : (meter?.timeoutMs ?? undefined);
  let profile = o.profile ?? meter?.profile;
  if (profile === 'generic' && !meter?.generic)
    throw usage(
      'profile "generic" needs its register map',
      'give --config agent.config.json with meter.generic, or one of ' + BUILT_IN_PROFILES.join(', '),
    );
  if (!profile) {
    const matches = await identify(transport, unitId, Math.max(timeoutMs ?? 300, 300)).catch((err) => {
      throw withScanHint(err, o);
    });
    const [first, ...rest] = matches;
    if (!first) {
      // Tell "nobody answers" from "an unknown register map" with one raw read.
      await withMeter(rawMeter(transport, unitId, timeoutMs ?? 500, 1), (m) => m.dump('holding', 0, 1)).catch(
        (err: unknown) => {
          if (!(err instanceof MeterError && err.kind === 'exception')) throw withScanHint(err, o);
        },
      );
      throw new MeterError(
        'config',
        `unit ${unitId} at ${describeTransport(transport)} answers, but matches no known profile`,
        'give --profile, or describe its registers as meter.generic in the config (see `diag dump`)',
      );
    }
    profile = first.profile;
    const others = rest.map((m) => m.profile);
    io.err(
      `profile detected: ${profile}${others.length ? ` (the same registers as ${others.join(', ')})` : ''}`,
    );
  }
  return new ModbusMeter({
    profile,
    unitId,
    transport,
    ...(meter?.generic ? { generic: meter.generic } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
  });
}

async function readOnce(meter: ModbusMeter) {
  // The billing register first: if it fails, its error (with what to check) is the answer.
  await meter.readValue('energy', meter.profile.quantities.energy);
  const identity = await meter.identity().catch(() => undefined);
  const values = await meter.readAll();
  return { identity, values };
}

export function registerDiagCommands(program: Command, io: DiagIo = processIo): void {
  const diag = program.command('diag').description('Field diagnostics of Modbus meters over serial or TCP');
  registerPorts(diag, io);
  registerScan(diag, io);
  registerRead(diag, io);
  registerWatch(diag, io);
  registerDump(diag, io);
  registerDiagCharger(diag, io);
}

/** `p2pev diag ports`: the serial ports present, with adapter names. */
function registerPorts(diag: Command, io: DiagIo): void {
  diag
    .command('ports')
    .description('List the serial ports present, with adapter names')
    .option('--json', 'machine-readable output')
    .action(
      action(io, async (o: { json?: boolean }) => {
        const ports = await listSerialPorts();
        if (o.json) return io.out(JSON.stringify({ ports }));
        if (ports.length === 0) {
          return io.out(
            'no serial ports found: check the USB RS-485 adapter is plugged in (dmesg | tail shows it), ' +
              'and that its driver (ftdi_sio, ch341, cp210x, pl2303) is loaded',
          );
        }
        const rows = [['PORT', 'ADAPTER', 'USB ID', 'SERIAL', 'STABLE NAME']];
        for (const p of ports) {
          rows.push([
            p.path,
            [p.manufacturer, p.product].filter(Boolean).join(' ') ||
              (p.driver ? `${p.driver} (${p.subsystem ?? 'on-board'})` : ''),
            p.vendorId ? `${p.vendorId}:${p.productId ?? ''}` : '',
            p.serialNumber ?? '',
            p.byId[0] ?? '',
          ]);
        }
        io.out(table(rows));
      }),
    );
}

/** `p2pev diag scan`: the devices on a bus across baud rates and parities, and the profile each matches. */
function registerScan(diag: Command, io: DiagIo): void {
  lineOptions(
    diag
      .command('scan')
      .description('Find the devices on a bus across baud rates and parities, and the profile each matches')
      .option('--bauds <list>', 'baud rates to try', '9600,19200,2400,4800,38400')
      .option('--parities <list>', 'parities to try', 'none,even')
      .option('--ids <list>', 'unit ids to try', '1-247')
      .option('--all-framings', 'keep scanning after a baud/parity where devices answered'),
  ).action(
    action(
      io,
      async (
        o: LineOptions & {
          config?: string;
          bauds: string;
          parities: string;
          ids: string;
          allFramings?: boolean;
        },
      ) => {
        const ids = parseIdList(o.ids);
        const timeoutMs = parseNumber(o.timeout, 'timeout', 150);
        // --config: the line as configured (its baud and parity), every id on it.
        const configured = o.config ? lineFrom(o).transport : undefined;
        const framings: { baud?: number; parity?: Parity }[] =
          o.tcp || configured
            ? [{}]
            : o.bauds
                .split(',')
                .flatMap((b) =>
                  o.parities
                    .split(',')
                    .map((p) => ({ baud: parseNumber(b, 'baud', 9600), parity: parseParity(p) })),
                );
        const found: { line: string; unitId: number; matches: ProfileMatch[]; note?: string }[] = [];
        for (const f of framings) {
          const transport = configured ?? transportFrom(o, f.baud, f.parity);
          const line = describeTransport(transport);
          if (!o.json) io.err(`scanning ${line}, ids ${o.ids} …`);
          let here = 0;
          let asked = 0;
          for (const unitId of ids) {
            asked++;
            // Progress on stderr: a full scan of 247 ids over TCP takes about 40 s.
            if (io.progress && (asked === 1 || asked % 10 === 0 || asked === ids.length))
              io.progress(
                `  ${line}: id ${unitId} (${asked}/${ids.length}), ${found.length} found`,
                asked === ids.length,
              );
            const probe = rawMeter(transport, unitId, timeoutMs);
            // Any answer, even an exception, proves a device; garbage hints at wrong settings.
            const answered = await withMeter(probe, (m) =>
              m.dump('holding', 0, 1).then(
                () => 'yes' as const,
                (err: unknown) => {
                  if (err instanceof MeterError && err.kind === 'exception') return 'yes' as const;
                  if (err instanceof MeterError && err.kind === 'crc') return 'garbled' as const;
                  if (err instanceof MeterError && err.kind === 'port-gone') throw err;
                  return 'no' as const;
                },
              ),
            );
            if (answered === 'no') continue;
            here++;
            if (answered === 'garbled') {
              found.push({
                line,
                unitId,
                matches: [],
                note: 'garbled answers: wrong baud/parity, or two devices with this id',
              });
              continue;
            }
            found.push({
              line,
              unitId,
              matches: await identify(transport, unitId, Math.max(timeoutMs, 300)),
            });
          }
          if (here > 0 && !o.allFramings) break;
        }
        if (o.json) return io.out(JSON.stringify({ devices: found }));
        if (found.length === 0) {
          return io.out(
            'no device answered: check A/B wiring (swap A and B once), termination, the adapter port, ' +
              'and the meter’s address/baud in its display menu',
          );
        }
        const rows = [['LINE', 'UNIT', 'PROFILE', 'SERIAL']];
        for (const d of found) {
          rows.push([
            d.line,
            String(d.unitId),
            d.matches.map((m) => m.profile).join(' | ') || d.note || 'unknown register map',
            d.matches[0]?.serial ?? '',
          ]);
        }
        io.out(table(rows));
      },
    ),
  );
}

/** `p2pev diag read`: one reading of every quantity of a meter, with units. */
function registerRead(diag: Command, io: DiagIo): void {
  lineOptions(
    diag.command('read').description('One reading of every quantity of a meter, with units'),
    true,
  ).action(
    action(io, async (o: LineOptions & { profile?: string; config?: string }) => {
      const meter = await meterFor(o, io);
      const { identity, values } = await withMeter(meter, readOnce).catch((err: unknown) => {
        throw withScanHint(err, o);
      });
      if (o.json) {
        return io.out(
          JSON.stringify({
            profile: meter.profile.name,
            unitId: meter.config.unitId,
            line: describeTransport(meter.config.transport),
            serial: identity?.serial,
            values: values.map(({ name, value, unit, error }) => ({
              name,
              value,
              unit,
              ...(error ? { error } : {}),
            })),
          }),
        );
      }
      io.out(
        `${meter.profile.vendor} ${meter.profile.model}, unit ${meter.config.unitId}, serial ${identity?.serial ?? '—'}` +
          ` (${describeTransport(meter.config.transport)})`,
      );
      const rows = [['QUANTITY', 'VALUE', 'UNIT', 'REGISTER']];
      for (const v of values) {
        const reg = `${v.spec.kind} 0x${v.spec.address.toString(16).padStart(4, '0')} ${v.spec.type}`;
        rows.push([v.name, v.error ? `error: ${v.error}` : fmt(v.value), v.unit, reg]);
      }
      io.out(table(rows));
    }),
  );
}

/** `p2pev diag watch`: a live view refreshing in place. */
function registerWatch(diag: Command, io: DiagIo): void {
  lineOptions(
    diag
      .command('watch')
      .description('Live view refreshing in place: values, errors by class, latency')
      .option('--interval <ms>', 'refresh period', '1000')
      .option('--count <n>', 'stop after n refreshes (default: until Ctrl-C)'),
    true,
  ).action(
    action(
      io,
      async (o: LineOptions & { profile?: string; config?: string; interval: string; count?: string }) => {
        const meter = await meterFor(o, io);
        // A terminal gets a screen redrawn in place; a pipe or file plain lines, one per refresh.
        const tty = !!io.isTTY;
        const interval = parseNumber(o.interval, 'interval', 1000);
        const count = o.count ? parseNumber(o.count, 'count', 1) : Number.POSITIVE_INFINITY;
        let stop = false;
        void io.interrupted().then(() => {
          stop = true;
        });
        await withMeter(meter, async (m) => {
          for (let i = 0; i < count && !stop; i++) {
            const started = Date.now();
            const reading = await m.read().catch((err: unknown) => ({ error: explain(err) }));
            const stats = m.stats();
            if (o.json) {
              io.out(JSON.stringify({ at: started, reading, stats }));
            } else {
              const r = reading as Record<string, unknown>;
              const values =
                'error' in r
                  ? `last read failed: ${(r.error as { message: string }).message}`
                  : `energy ${r.energyWh} Wh   power ${fmt(r.powerW as number)} W   voltage ${fmt(r.voltageV as number)} V   ` +
                    `current ${fmt(r.currentA as number)} A   frequency ${fmt(r.frequencyHz as number)} Hz`;
              if (!tty) {
                io.out(`${new Date(started).toISOString()}  ${values.replace(/ {2,}/g, '  ')}`);
                if (i + 1 < count) await sleep(Math.max(0, interval - (Date.now() - started)));
                continue;
              }
              const lines = [
                `\x1b[2J\x1b[H${m.profile.name} unit ${m.config.unitId} on ${describeTransport(m.config.transport)}` +
                  ` — ${new Date(started).toISOString()} (Ctrl-C stops)`,
                'error' in r
                  ? `last read failed: ${(r.error as { message: string }).message}`
                  : `energy ${r.energyWh} Wh   power ${fmt(r.powerW as number)} W   voltage ${fmt(r.voltageV as number)} V   ` +
                    `current ${fmt(r.currentA as number)} A   frequency ${fmt(r.frequencyHz as number)} Hz`,
                `requests ${stats.requests}  ok ${stats.responses}  retries ${stats.retries}  reconnects ${stats.reconnects}`,
                `errors  ${Object.entries(stats.errors)
                  .map(([k, v]) => `${k} ${v}`)
                  .join('  ')}`,
                `latency p50 ${stats.latencyMs.p50} ms  p90 ${stats.latencyMs.p90} ms  p99 ${stats.latencyMs.p99} ms  max ${stats.latencyMs.max} ms`,
              ];
              io.out(lines.join('\n'));
            }
            if (i + 1 < count) await sleep(Math.max(0, interval - (Date.now() - started)));
          }
        });
      },
    ),
  );
}

/** `p2pev diag dump`: raw registers, in hex and decoded as the common types. */
function registerDump(diag: Command, io: DiagIo): void {
  lineOptions(
    diag
      .command('dump')
      .description('Raw registers, in hex and decoded as the common types')
      .requiredOption('--from <addr>', 'first register (0-based; decimal or 0x hex)')
      .option('--count <n>', 'number of registers (1..125)', '16')
      .option('--input', 'input registers (function 04)')
      .option('--holding', 'holding registers (function 03; the default)'),
  ).action(
    action(
      io,
      async (
        o: LineOptions & { config?: string; from: string; count: string; input?: boolean; holding?: boolean },
      ) => {
        if (o.input && o.holding) throw usage('give only one of --input and --holding');
        const kind = o.input ? 'input' : 'holding';
        const from = parseAddress(o.from);
        const count = parseNumber(o.count, 'count', 16);
        if (!Number.isInteger(count) || count < 1 || count > 125) {
          throw new MeterError(
            'config',
            'count must be 1..125',
            'Modbus reads at most 125 registers at once',
          );
        }
        const { transport, unitId } = lineFrom(o);
        const timeoutMs = parseNumber(o.timeout, 'timeout', 1000);
        const words = await withMeter(rawMeter(transport, unitId, timeoutMs, 2), (m) =>
          m.dump(kind, from, count),
        );
        const rows = words.map((w, i) => {
          const next = words[i + 1];
          const pair = next !== undefined ? [w, next] : undefined;
          return {
            address: from + i,
            hex: w.toString(16).padStart(4, '0'),
            u16: w,
            i16: decodeRaw([w], { type: 'int16' }),
            ascii: decodeText([w]).replace(/[^\x20-\x7e]/g, '.'),
            ...(pair
              ? {
                  u32: decodeRaw(pair, { type: 'uint32' }),
                  i32LowFirst: decodeRaw(pair, { type: 'int32', wordOrder: 'low-first' }),
                  f32: decodeRaw(pair, { type: 'float32' }),
                  f32LowFirst: decodeRaw(pair, { type: 'float32', wordOrder: 'low-first' }),
                }
              : {}),
          };
        });
        if (o.json) return io.out(JSON.stringify({ kind, unitId, from, count, words, rows }));
        io.out(
          `${kind} registers ${from}..${from + count - 1} of unit ${unitId} on ${describeTransport(transport)}`,
        );
        const out = [
          [
            'ADDR',
            'DEC',
            'HEX',
            'U16',
            'I16',
            'ASCII',
            'U32 (hi,lo)',
            'I32 (lo,hi)',
            'F32 (hi,lo)',
            'F32 (lo,hi)',
          ],
        ];
        for (const r of rows) {
          out.push([
            `0x${r.address.toString(16).padStart(4, '0')}`,
            String(r.address),
            r.hex,
            String(r.u16),
            String(r.i16),
            r.ascii,
            r.u32 === undefined ? '' : String(r.u32),
            r.i32LowFirst === undefined ? '' : String(r.i32LowFirst),
            r.f32 === undefined ? '' : fmtFloat(r.f32),
            r.f32LowFirst === undefined ? '' : fmtFloat(r.f32LowFirst),
          ]);
        }
        io.out(table(out));
      },
    ),
  );
}

const fmtFloat = (f: number): string =>
  Number.isFinite(f) && Math.abs(f) < 1e9 ? String(Number(f.toPrecision(7))) : String(f);
