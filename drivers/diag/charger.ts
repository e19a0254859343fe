/**
 * `p2pev diag charger`: the installer's check of a wallbox before the agent runs it.
 *
 *   --ocpp-listen HOST:PORT [--id ID]   waits for an OCPP 1.6J wallbox to connect (any id unless
 *                                        --id), prints its boot information, status and meter values
 *   --profile NAME (--port TTY | --tcp HOST:PORT) [--id N]   a Modbus wallbox by profile
 *
 * and on either, [--start] [--limit AMPS] [--stop]. With --json one document (docs/CHARGERS.md):
 * vendor, model, serial, firmware, status, raw, energyWh, failsafe, and each action's result.
 */
import type { Command } from 'commander';
import { ModbusCharger } from '../chargers/modbus.js';
import { CHARGER_PROFILE_NAMES, resolveChargerProfile } from '../chargers/profiles.js';
import { type Charger, ChargerError, type ChargerState } from '../chargers/types.js';
import { MeterError } from '../errors.js';
import type { DiagIo } from '../cli.js';
import { parseHostPort, parseNumber, parseParity } from './options.js';

export interface ChargerDiagOptions {
  ocppListen?: string;
  profile?: string;
  port?: string;
  tcp?: string;
  baud?: string;
  parity?: string;
  id?: string;
  start?: boolean;
  stop?: boolean;
  limit?: string;
  /** OCPP: ChangeAvailability of the connector. */
  available?: boolean;
  unavailable?: boolean;
  wait?: string;
  watch?: string;
  json?: boolean;
}

export interface ActionResult {
  ok: boolean;
  amps?: number;
  /** OCPP ChangeAvailability: the wallbox's answer (Accepted, Rejected, Scheduled). */
  status?: string;
  error?: string;
}

/** The `--json` document (docs/CHARGERS.md). */
export interface ChargerDiagReport {
  kind: 'ocpp' | 'modbus';
  /** OCPP: the URL the wallbox connected to; Modbus: the line. */
  endpoint: string;
  chargePointId?: string;
  connected: boolean;
  vendor: string;
  model: string;
  serial?: string;
  firmware?: string;
  status?: ChargerState['status'];
  raw?: string;
  enabled?: boolean;
  currentLimitA?: number;
  energyWh?: number;
  powerW?: number;
  failsafe: { configured: boolean; worstCaseS?: number; detail: string };
  actions: {
    start?: ActionResult;
    limit?: ActionResult;
    stop?: ActionResult;
    availability?: ActionResult;
  };
  /** What arrived while watching (OCPP status notifications, meter values). */
  events: { at: string; event: string; detail: string }[];
  error?: string;
  hint?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Runs the requested actions in order start → limit → stop, each with its result. */
export async function chargerActions(
  charger: Charger,
  o: { start?: boolean; stop?: boolean; limitA?: number },
  sessionId: string,
): Promise<ChargerDiagReport['actions']> {
  const actions: ChargerDiagReport['actions'] = {};
  const attempt = async (f: () => Promise<void>, amps?: number): Promise<ActionResult> => {
    try {
      await f();
      return { ok: true, ...(amps !== undefined ? { amps } : {}) };
    } catch (err) {
      return { ok: false, ...(amps !== undefined ? { amps } : {}), error: message(err) };
    }
  };
  if (o.start) actions.start = await attempt(() => charger.enable(o.limitA ?? 6, sessionId), o.limitA ?? 6);
  const limitA = o.limitA;
  if (limitA !== undefined && !o.start)
    actions.limit = await attempt(() => charger.setCurrent(limitA), limitA);
  if (o.stop) actions.stop = await attempt(() => charger.disable());
  return actions;
}

async function describe(charger: Charger, report: ChargerDiagReport): Promise<void> {
  const id = await charger.identity();
  Object.assign(report, id);
  const st = await charger.state();
  report.status = st.status;
  report.raw = st.raw;
  if (st.enabled !== undefined) report.enabled = st.enabled;
  if (st.currentLimitA !== undefined) report.currentLimitA = st.currentLimitA;
  if (st.energyWh !== undefined) report.energyWh = st.energyWh;
  if (st.powerW !== undefined) report.powerW = st.powerW;
}

export async function diagOcpp(
  o: ChargerDiagOptions & { ocppListen: string },
  io: DiagIo,
): Promise<ChargerDiagReport> {
  const { host, port } = parseHostPort(o.ocppListen, true);
  const id = o.id ?? '*';
  const waitS = parseNumber(o.wait, 'wait', 60);
  const { OcppCharger } = await import('../chargers/ocpp.js');
  const cs = new OcppCharger({ host, port, chargePointId: id });
  const events: ChargerDiagReport['events'] = [];
  const note = (event: string, detail: string) => {
    events.push({ at: new Date().toISOString(), event, detail });
    if (!o.json) io.out(`${event.padEnd(12)} ${detail}`);
  };
  cs.on('boot', (b: Record<string, unknown>) =>
    note('boot', `${b.chargePointVendor} ${b.chargePointModel} firmware ${b.firmwareVersion ?? '?'}`),
  );
  cs.on('status', (s: { status: string; errorCode: string }) =>
    note('status', `${s.status} (${s.errorCode})`),
  );
  cs.on('transaction', (t: { id: number; idTag: string }) =>
    note('transaction', `started ${t.id} for ${t.idTag}`),
  );
  cs.on('stopped', (t: { id: number }) => note('transaction', `stopped ${t.id}`));
  await cs.open();
  const url = `ws://${host === '0.0.0.0' ? '<this host>' : host}:${cs.port}/${id === '*' ? '<id>' : id}`;
  const report: ChargerDiagReport = {
    kind: 'ocpp',
    endpoint: url,
    connected: false,
    vendor: 'unknown',
    model: 'unknown',
    failsafe: cs.failsafe(),
    actions: {},
    events,
  };
  try {
    if (!o.json) io.out(`waiting up to ${waitS} s for a wallbox at ${url} …`);
    const until = Date.now() + waitS * 1000;
    while (!cs.connected() && Date.now() < until) await sleep(100);
    if (!cs.connected())
      throw new ChargerError(
        'not-connected',
        `no wallbox connected within ${waitS} s`,
        `set its OCPP backend URL to ws://<this host>:${cs.port}/${id === '*' ? '<id>' : id} (OCPP 1.6J), check it reaches this host (same network, no firewall on port ${cs.port})`,
      );
    report.connected = true;
    report.chargePointId = cs.connectedId;
    if (!cs.bootInfo) await cs.requestBoot();
    const bootUntil = Date.now() + 5_000;
    while (!cs.bootInfo && Date.now() < bootUntil) await sleep(100);
    await sleep(300); // the status it reports on connect
    report.actions = await chargerActions(
      cs,
      {
        ...(o.start ? { start: true } : {}),
        ...(o.stop ? { stop: true } : {}),
        ...(o.limit ? { limitA: parseNumber(o.limit, 'limit', 16) } : {}),
      },
      '999999999',
    );
    if (o.available || o.unavailable) {
      // Operative / Inoperative: an installer takes a connector out of service, or puts it back.
      try {
        const status = await cs.setAvailable(o.available === true);
        report.actions.availability = { ok: status !== 'Rejected', status };
      } catch (err) {
        report.actions.availability = { ok: false, error: message(err) };
      }
    }
    const watchS = parseNumber(o.watch, 'watch', o.start ? 10 : 2);
    await sleep(watchS * 1000);
    await describe(cs, report);
  } catch (err) {
    report.error = message(err);
    if (err instanceof ChargerError) report.hint = err.hint;
  } finally {
    await cs.close();
  }
  return report;
}

export async function diagModbus(o: ChargerDiagOptions & { profile: string }): Promise<ChargerDiagReport> {
  const profile = resolveChargerProfile(o.profile);
  const serialPort = o.port;
  if (!serialPort === !o.tcp)
    throw new MeterError('config', 'say where the wallbox is', 'give --port /dev/ttyUSB0 or --tcp host:port');
  const transport = o.tcp
    ? { kind: 'tcp' as const, ...parseHostPort(o.tcp) }
    : {
        kind: 'rtu' as const,
        port: serialPort ?? '',
        baudRate: parseNumber(o.baud, 'baud', profile.factoryLine?.baudRate ?? 9600),
        parity: o.parity ? parseParity(o.parity) : (profile.factoryLine?.parity ?? 'none'),
      };
  const unitId = parseNumber(o.id, 'id', profile.defaultUnitId);
  const charger = new ModbusCharger({ profile: profile.name, unitId, transport, readOnly: !o.start });
  await charger.open();
  const report: ChargerDiagReport = {
    kind: 'modbus',
    endpoint: o.tcp ? `tcp ${o.tcp} unit ${unitId}` : `${o.port} unit ${unitId}`,
    connected: false,
    vendor: profile.vendor,
    model: profile.model,
    failsafe: charger.failsafe(),
    actions: {},
    events: [],
  };
  try {
    await describe(charger, report);
    report.connected = true;
    report.actions = await chargerActions(
      charger,
      {
        ...(o.start ? { start: true } : {}),
        ...(o.stop ? { stop: true } : {}),
        ...(o.limit ? { limitA: parseNumber(o.limit, 'limit', 16) } : {}),
      },
      'diag',
    );
    if (report.actions.start || report.actions.stop || report.actions.limit) await describe(charger, report);
    const fs = await charger.readFailsafe().catch(() => undefined);
    if (fs)
      report.failsafe = {
        configured: fs.timeoutS > 0 && fs.currentA === 0,
        ...(fs.timeoutS > 0 ? { worstCaseS: fs.timeoutS } : {}),
        detail: `watchdog ${fs.timeoutS} s, failsafe current ${fs.currentA} A${fs.timeoutS > 0 && fs.currentA === 0 ? '' : ' (the agent sets 15 s and 0 A when it runs)'}`,
      };
  } catch (err) {
    report.error = message(err);
    report.hint =
      err instanceof ChargerError && err.cause instanceof MeterError
        ? err.cause.hint
        : `check the wiring, unit id ${unitId} and line settings of the ${profile.model}`;
  } finally {
    await charger.close();
  }
  return report;
}

function print(r: ChargerDiagReport, io: DiagIo): void {
  const lines = [
    `${r.vendor} ${r.model}${r.serial ? ` serial ${r.serial}` : ''}${r.firmware ? ` firmware ${r.firmware}` : ''}`,
    `endpoint     ${r.endpoint}${r.chargePointId ? ` (id ${r.chargePointId})` : ''}`,
  ];
  if (r.status) lines.push(`status       ${r.status} (${r.raw})`);
  if (r.currentLimitA !== undefined)
    lines.push(`limit        ${r.currentLimitA} A${r.enabled ? ', enabled' : ''}`);
  if (r.energyWh !== undefined) lines.push(`energy       ${(r.energyWh / 1000).toFixed(3)} kWh`);
  lines.push(`failsafe     ${r.failsafe.configured ? 'yes' : 'NO'}: ${r.failsafe.detail}`);
  for (const [name, a] of Object.entries(r.actions))
    lines.push(
      `${name.padEnd(12)} ${a.ok ? 'ok' : `FAILED: ${a.error}`}${a.amps !== undefined ? ` (${a.amps} A)` : ''}`,
    );
  io.out(lines.join('\n'));
}

export function registerDiagCharger(diag: Command, io: DiagIo): void {
  diag
    .command('charger')
    .description(
      'Check a wallbox: wait for an OCPP 1.6J wallbox (--ocpp-listen) or read a Modbus one (--profile); start, limit, stop it',
    )
    .option('--ocpp-listen <host:port>', 'act as its OCPP central system here, e.g. 0.0.0.0:8887')
    .option('--profile <name>', `Modbus wallbox profile: ${CHARGER_PROFILE_NAMES.join(', ')}`)
    .option('--port <tty>', 'Modbus RTU: serial port')
    .option('--tcp <host:port>', 'Modbus TCP: the wallbox')
    .option('--baud <b>', "Modbus RTU baud rate (default: the profile's factory setting)")
    .option('--parity <p>', "Modbus RTU parity (default: the profile's factory setting)")
    .option('--id <id>', 'OCPP: the charge point id to accept (default any); Modbus: the unit id')
    .option('--start', 'permit charging (OCPP: RemoteStartTransaction; a car must be plugged in to draw)')
    .option('--stop', 'stop charging (OCPP: RemoteStopTransaction)')
    .option('--unavailable', 'OCPP: take the connector out of service (ChangeAvailability Inoperative)')
    .option('--available', 'OCPP: put the connector back into service (ChangeAvailability Operative)')
    .option('--limit <amps>', 'current limit, A (with --start: the start limit)')
    .option('--wait <s>', 'OCPP: how long to wait for the wallbox to connect', '60')
    .option('--watch <s>', 'OCPP: seconds to watch status and meter values after the actions')
    .option('--json', 'one JSON document (docs/CHARGERS.md)')
    .action(async (o: ChargerDiagOptions) => {
      try {
        const { ocppListen, profile } = o;
        let report: ChargerDiagReport;
        if (ocppListen && !profile) report = await diagOcpp({ ...o, ocppListen }, io);
        else if (profile && !ocppListen) {
          if (o.available || o.unavailable)
            throw new MeterError(
              'config',
              '--available and --unavailable are OCPP (ChangeAvailability)',
              'a Modbus wallbox is switched with --start and --stop',
            );
          report = await diagModbus({ ...o, profile });
        } else
          throw new MeterError(
            'config',
            'say which wallbox',
            'give --ocpp-listen HOST:PORT, or --profile NAME with --port or --tcp',
          );
        if (o.json) io.out(JSON.stringify(report));
        else {
          print(report, io);
          if (report.error) io.err(`error: ${report.error}`);
        }
        const failed = report.error !== undefined || Object.values(report.actions).some((a) => !a.ok);
        if (failed) io.setExitCode(1);
      } catch (err) {
        const m = message(err);
        if (o.json)
          io.out(
            JSON.stringify({
              error: m,
              ...(err instanceof MeterError || err instanceof ChargerError ? { hint: err.hint } : {}),
            }),
          );
        else io.err(`error: ${m}`);
        io.setExitCode(1);
      }
    });
}
