/**
 * `p2pev sim meter`: one simulated meter in the foreground until interrupted — a developer's bench
 * meter for the agent, `p2pev diag` or any Modbus master (mbpoll, QModMaster …).
 */
import type { Command } from 'commander';
import { parseHostPort } from '../drivers/diag/options.js';
import { PROFILE_NAMES, resolveProfile } from '../drivers/profiles.js';
import { SIM_CONTROL, type SimMeter, startSimMeter } from './meter.js';

export interface SimMeterCliOptions {
  profile: string;
  tcp?: string;
  port?: string;
  unit: string;
  baud?: string;
  parity?: 'none' | 'even' | 'odd';
  emulate: boolean;
  rtuOverTcp?: boolean;
  singleClient?: boolean;
  kw?: string;
  chargeNow?: boolean;
  targetKwh?: string;
  timeScale?: string;
  initialKwh?: string;
  serial?: string;
  json?: boolean;
}

export async function runSimMeter(
  o: SimMeterCliOptions,
  out: (line: string) => void = console.log,
): Promise<SimMeter> {
  if (!o.tcp === !o.port)
    throw Object.assign(new Error('give only one of --tcp HOST:PORT and --port TTY (one is needed)'), {
      name: 'UsageError',
    });
  const baud = o.baud ? Number(o.baud) : undefined;
  const tcp = o.tcp ? parseHostPort(o.tcp, true) : undefined;
  const sim = await startSimMeter({
    profile: o.profile,
    unitId: Number(o.unit),
    ...(tcp
      ? {
          tcp: {
            ...tcp,
            ...(o.rtuOverTcp ? { framing: 'rtu' as const } : {}),
            ...(o.singleClient ? { maxClients: 1 } : {}),
          },
        }
      : {}),
    ...(o.port
      ? {
          rtu: {
            path: o.port,
            ...(baud ? { baudRate: baud } : {}),
            ...(o.parity ? { parity: o.parity } : {}),
          },
        }
      : {}),
    ...(baud && o.emulate ? { emulateBaud: baud } : {}),
    // Two bench meters must not share a serial (the agents would take one for the other):
    // without --serial, it follows the TCP port or the device path, stable across restarts.
    serial: o.serial ?? benchSerial(o.profile, tcp?.port, o.port),
    ...(o.initialKwh ? { initialWh: Number(o.initialKwh) * 1000 } : {}),
    // The time scale and power hold for every charge, however it is switched on (the agent's
    // control register, mbpoll, or --charge-now): the counter moves only while charging.
    ...(o.timeScale ? { timeScale: Number(o.timeScale) } : {}),
    ...(o.kw ? { chargeKw: Number(o.kw) } : {}),
  });
  if (o.chargeNow) {
    sim.startCharging(Number(o.kw ?? 11), {
      ...(o.targetKwh ? { targetWh: Number(o.targetKwh) * 1000 } : {}),
    });
  }
  const where = tcp
    ? `${o.rtuOverTcp ? 'RTU over TCP' : 'Modbus TCP'} ${tcp.host}:${sim.port}`
    : `RTU ${o.port}`;
  if (o.json) {
    out(
      JSON.stringify({
        ready: true,
        profile: o.profile,
        unitId: sim.unitId,
        serial: sim.serial,
        port: sim.port,
      }),
    );
  } else {
    out(
      `simulated ${o.profile} unit ${sim.unitId} (serial ${sim.serial}) on ${where}` +
        `${baud && o.emulate ? `, emulating ${baud} baud` : ''}; ` +
        `charging switch: holding/coil 0x${SIM_CONTROL.enable.toString(16)}, power ×100 W at 0x${SIM_CONTROL.powerHectoWatt.toString(16)}. Ctrl-C stops.`,
    );
  }
  return sim;
}

/**
 * A default serial that differs between two bench meters and stays the same across restarts of
 * one: from the TCP port, or the serial device's path; unit 1's profile default otherwise.
 */
export function benchSerial(profile: string, tcpPort?: number, path?: string): string | undefined {
  let n: number | undefined;
  if (tcpPort) n = tcpPort;
  else if (path) n = [...path].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 900_000, 7) + 1;
  if (n === undefined) return undefined;
  const ascii = resolveProfile(profile).serial?.type === 'ascii';
  return ascii ? `SIM${String(n).padStart(6, '0')}` : String(21_000_000 + n);
}

/** Adds `meter` under `p2pev sim`. */
export function registerSimMeterCommand(sim: Command): void {
  // `sim` has options of its own (--json, --time-scale …): after `meter`, options are meter's.
  sim.enablePositionalOptions();
  sim
    .command('meter')
    .description('Run one simulated Modbus meter in the foreground (TCP, or RTU on a tty/pty)')
    .requiredOption(
      '--profile <name>',
      `meter profile: ${PROFILE_NAMES.filter((n) => n !== 'generic').join(', ')}`,
    )
    .option('--tcp <host:port>', 'serve Modbus TCP here (port 0 = any free port)')
    .option('--port <tty>', 'serve Modbus RTU on this serial device (e.g. the slave end of a socat pty pair)')
    .option('--unit <n>', 'Modbus unit id', '1')
    .option('--baud <b>', 'baud rate; on RTU the answers take the wire time of this rate')
    .option('--parity <p>', 'none | even | odd (for the emulated character time)')
    .option('--no-emulate', 'answer at once instead of emulating the wire time of --baud')
    .option('--rtu-over-tcp', 'with --tcp: RTU frames with CRC over TCP, like a serial gateway')
    .option('--single-client', 'with --tcp: refuse a second TCP client, like many meters and gateways')
    .option('--kw <x>', 'the power a charge runs at once switched on (presets 3.7, 7.4, 11, 22)', '11')
    .option(
      '--charge-now',
      'start charging at once (otherwise: when switched on at 0x7f00, as the agent does)',
    )
    .option(
      '--target-kwh <x>',
      'with --charge-now: energy after which the charging curve tapers off and stops',
    )
    .option('--time-scale <x>', 'simulated seconds per real second of every charge', '1')
    .option(
      '--serial <s>',
      'serial number (default: from the TCP port or device path, so two bench meters differ)',
    )
    .option('--initial-kwh <x>', 'counter value at start')
    .option('--json', 'print a JSON ready line instead of text')
    .action(async (o: SimMeterCliOptions) => {
      const sim = await runSimMeter(o);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await sim.close();
    });
}
