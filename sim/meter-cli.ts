/**
 * `p2pev sim meter`: one simulated meter in the foreground until interrupted — a developer's bench
 * meter for the agent, `p2pev diag` or any Modbus master (mbpoll, QModMaster …).
 */
import type { Command } from 'commander';
import { parseHostPort } from '../drivers/diag/options.js';
import { PROFILE_NAMES } from '../drivers/profiles.js';
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
    ...(o.serial ? { serial: o.serial } : {}),
    ...(o.initialKwh ? { initialWh: Number(o.initialKwh) * 1000 } : {}),
  });
  if (o.kw) {
    sim.startCharging(Number(o.kw), {
      ...(o.targetKwh ? { targetWh: Number(o.targetKwh) * 1000 } : {}),
      ...(o.timeScale ? { timeScale: Number(o.timeScale) } : {}),
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
    .option('--kw <x>', 'start charging at this power (presets 3.7, 7.4, 11, 22)')
    .option('--target-kwh <x>', 'energy after which the charging curve tapers off and stops')
    .option('--time-scale <x>', 'simulated seconds per real second', '1')
    .option('--initial-kwh <x>', 'counter value at start')
    .option('--serial <s>', 'serial number')
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
