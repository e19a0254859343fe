/**
 * `p2pev doctor`: checks an installed device end to end and says what to fix for each failure.
 * Every check is independent (one failing does not hide the others), except that nothing can be
 * checked without a valid config. Nothing secret is printed: neither the key nor a password.
 *
 * The meter is a special case: an RS-485 line has one master, so while the agent runs the doctor
 * does not open the port itself but reads the agent's latest telemetry from its control port.
 */
import { windowCheck } from '../roles/hcs.js';
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { formatEther, isKeystoreJson } from 'ethers';
import mqtt from 'mqtt';
import { MemberStatus, MemberRole, SettlementClient } from '../../contracts/client.js';
import { readDeployment } from '../../contracts/deploy.js';
import { signatureBackendInfo } from '../../protocol/index.js';
import { connectRpc } from '../../contracts/rpc.js';
import { type Charger, createCharger, ModbusCharger } from '../../drivers/chargers/index.js';
import { openMeter, resolveProfile } from '../../drivers/index.js';
import { type AgentConfig, loadConfig } from '../core/config.js';
import { openKeystore, readPassword } from '../core/keys.js';
import { mqttCredentials } from '../core/bus.js';
import { fetchStatus } from './status.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about it (failures and warnings). */
  fix?: string;
}

export interface DoctorOptions {
  configPath: string;
  /** The keystore password; read from the config's env variable or file when omitted. */
  password?: string;
  timeoutMs?: number;
  /** Free space below these is a failure / a warning (bytes). */
  minFreeBytes?: number;
  warnFreeBytes?: number;
  /**
   * Is this an installed device under systemd? Default: systemd is PID 1 (/run/systemd/system).
   * Without it (a developer's bench, a container) the systemd checks are skipped quietly and the
   * fixes name `p2pev run` instead of systemctl.
   */
  systemd?: boolean;
  /** Also switch the charger on and off once (`doctor --active`). */
  active?: boolean;
  /** How long to wait for an OCPP wallbox to connect when the agent is not running. */
  chargerWaitMs?: number;
}

const MiB = 1024 * 1024;
const ok = (name: string, detail: string): Check => ({ name, status: 'ok', detail });
const fail = (name: string, detail: string, fix: string): Check => ({ name, status: 'fail', detail, fix });
const warn = (name: string, detail: string, fix: string): Check => ({ name, status: 'warn', detail, fix });
const skip = (name: string, detail: string): Check => ({ name, status: 'skip', detail });
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function checkKeystore(
  cfg: AgentConfig,
  password?: string,
): Promise<{ checks: Check[]; address?: string }> {
  const path = cfg.keystore.path;
  const checks: Check[] = [];
  if (!existsSync(path))
    return {
      checks: [
        fail(
          'keystore',
          `${path} does not exist`,
          `create the device key: sudo -u p2pev p2pev keys new --keystore ${path} --password-file ${cfg.keystore.passwordFile ?? '/etc/p2pev/key.password'}`,
        ),
      ],
    };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return {
      checks: [
        fail(
          'keystore',
          `cannot read ${path} (${code})`,
          `run the doctor as the agent's user: sudo -u p2pev p2pev doctor`,
        ),
      ],
    };
  }
  if (!isKeystoreJson(text))
    return {
      checks: [
        fail(
          'keystore',
          `${path} is not an encrypted JSON keystore`,
          'never store a bare private key: encrypt it with p2pev keys import --private-key-file FILE, then delete FILE',
        ),
      ],
    };
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077)
    checks.push(
      fail('keystore', `${path} has mode ${mode.toString(8)}: others can read it`, `chmod 600 ${path}`),
    );
  else checks.push(ok('keystore', `${path}: encrypted, mode ${mode.toString(8)}`));
  if (cfg.keystore.passwordFile && existsSync(cfg.keystore.passwordFile)) {
    const pmode = statSync(cfg.keystore.passwordFile).mode & 0o777;
    if (pmode & 0o077)
      checks.push(
        fail(
          'password file',
          `${cfg.keystore.passwordFile} has mode ${pmode.toString(8)}: others can read it`,
          `chmod 600 ${cfg.keystore.passwordFile}`,
        ),
      );
  }
  let pw: string;
  try {
    pw = password ?? readPassword(cfg.keystore);
  } catch (err) {
    checks.push(
      fail(
        'keystore password',
        message(err),
        'set keystore.passwordFile in the config (mode 600, owned by p2pev) or export the variable it names',
      ),
    );
    return { checks };
  }
  try {
    const key = await openKeystore(path, pw);
    checks.push(ok('keystore password', `opens the key of ${key.address}`));
    return { checks, address: key.address };
  } catch (err) {
    if (mode & 0o077) return { checks }; // already reported; the decrypt refused for the same reason
    checks.push(
      fail(
        'keystore password',
        message(err),
        'the password does not open this keystore: check the password file',
      ),
    );
    return { checks };
  }
}

/** Plausible for a meter at a charge point: the limits are wide; they catch wrong registers and scaling. */
export function implausible(
  r: { energyWh: number; powerW?: number; voltageV?: number; currentA?: number },
  maxPowerW: number,
): string | undefined {
  if (!Number.isFinite(r.energyWh) || r.energyWh < 0) return `energy register reads ${r.energyWh} Wh`;
  if (r.energyWh > 1e12)
    return `energy register reads ${r.energyWh} Wh (over 1 TWh: wrong register or scale?)`;
  if (r.powerW !== undefined && Math.abs(r.powerW) > maxPowerW * 1.5)
    return `power reads ${r.powerW} W, more than the meter can measure (${maxPowerW} W)`;
  if (r.voltageV !== undefined && r.voltageV !== 0 && (r.voltageV < 80 || r.voltageV > 480))
    return `voltage reads ${r.voltageV} V (expected 80..480 V; 0 = no mains)`;
  return undefined;
}

async function checkMeter(cfg: AgentConfig, running: Record<string, unknown> | undefined): Promise<Check> {
  const m = cfg.meter;
  if (!m)
    return fail('meter', `a ${cfg.role} needs a meter section in the config`, 'add meter (docs/METERS.md)');
  let maxPowerW = 350_000;
  try {
    maxPowerW = m.plausibility?.maxPowerW ?? resolveProfile(m.profile, m.generic).maxPowerW ?? maxPowerW;
  } catch (err) {
    return fail(
      'meter',
      message(err),
      'set meter.profile to a known profile (p2pev diag scan finds the meter)',
    );
  }
  const fixLine =
    m.transport.kind === 'rtu'
      ? `check the RS-485 wiring (A/B, termination), ${m.transport.port}, baud rate and unit id ${m.unitId}: p2pev diag read --port ${m.transport.port} --profile ${m.profile}`
      : `check that ${'host' in m.transport ? m.transport.host : ''}:${'port' in m.transport ? m.transport.port : ''} answers Modbus and unit id ${m.unitId}`;
  if (running) {
    // The agent owns the line: use its telemetry, do not open the port beside it.
    const t = (running.telemetry ?? {}) as {
      at?: number;
      reading?: { energyWh: number; powerW?: number; voltageV?: number; at: number };
      meterError?: string;
    };
    if (!t.reading)
      return fail(
        'meter',
        `the running agent has no reading${t.meterError ? `: ${t.meterError}` : ' yet'}`,
        fixLine,
      );
    const bad = implausible(t.reading, maxPowerW);
    if (bad)
      return fail('meter', bad, `check meter.profile (${m.profile}) matches the meter: p2pev diag scan`);
    const age = Date.now() - t.reading.at;
    const stale = t.meterError ? ` but the last read failed: ${t.meterError}` : '';
    return (stale ? warn : (n: string, d: string) => ok(n, d))(
      'meter',
      `${(t.reading.energyWh / 1000).toFixed(3)} kWh${t.reading.powerW !== undefined ? `, ${Math.round(t.reading.powerW)} W` : ''} (read by the agent ${Math.round(age / 1000)} s ago)${stale}`,
      fixLine,
    );
  }
  const { pollMs: _p, ...driverConfig } = m;
  const meter = await openMeter(driverConfig);
  try {
    const r = await meter.read();
    const bad = implausible(r, maxPowerW);
    if (bad)
      return fail('meter', bad, `check meter.profile (${m.profile}) matches the meter: p2pev diag scan`);
    const id = await meter.identity().catch(() => ({ serial: undefined }));
    return ok(
      'meter',
      `${m.profile}${id.serial ? ` serial ${id.serial}` : ''}: ${(r.energyWh / 1000).toFixed(3)} kWh${r.powerW !== undefined ? `, ${Math.round(r.powerW)} W` : ''}${r.voltageV !== undefined ? `, ${r.voltageV.toFixed(1)} V` : ''}`,
    );
  } catch (err) {
    return fail('meter', message(err), fixLine);
  } finally {
    await meter.close().catch(() => {});
  }
}

/**
 * The charger: connected, its status, the failsafe; with --active, that enable and disable
 * round-trip. While the agent runs it owns the charger (the OCPP port, the Modbus line): its
 * status report is used, and --active is refused.
 */
export async function checkCharger(
  cfg: AgentConfig,
  running: Record<string, unknown> | undefined,
  opts: { active?: boolean; waitMs?: number } = {},
): Promise<Check[]> {
  const c = cfg.charger;
  if (c.kind === 'none')
    return [
      cfg.role === 'hcs'
        ? warn(
            'charger',
            'no charger configured: nothing switches the power for a session',
            'set "charger" in the config (docs/CHARGERS.md)',
          )
        : skip('charger', 'this device has no charger'),
    ];
  if (c.kind === 'sim-control')
    return [skip('charger', "simulation: the simulated meter's own switch (drivers/simcontrol.ts)")];
  const urlHint =
    c.kind === 'ocpp'
      ? `set the wallbox's OCPP backend URL to ws://<this device>:${c.port}/${c.chargePointId} (p2pev diag charger --ocpp-listen 0.0.0.0:${c.port} --id ${c.chargePointId} shows what it sends)`
      : c.kind === 'modbus'
        ? `check the wallbox's wiring, unit id and line: p2pev diag charger --profile ${c.profile} ${c.transport.kind === 'rtu' ? `--port ${c.transport.port}` : `--tcp ${'host' in c.transport ? c.transport.host : ''}:${'port' in c.transport ? c.transport.port : ''}`}`
        : 'check the gpiochip and line (gpioinfo) and that gpiod is installed';
  if (running) {
    const ch = (running.charger ?? {}) as {
      kind?: string;
      connected?: boolean;
      status?: string;
      raw?: string;
      error?: string;
      failsafe?: { configured: boolean; worstCaseS?: number; detail: string };
    };
    const checks: Check[] = [];
    if (!ch.connected || ch.error)
      checks.push(fail('charger', `${c.kind}: ${ch.error ?? 'not connected to the agent'}`, urlHint));
    else checks.push(ok('charger', `${c.kind}: connected, ${ch.status ?? '?'} (${ch.raw ?? ''})`));
    if (ch.failsafe)
      checks.push(
        ch.failsafe.configured
          ? ok('charger failsafe', `${ch.failsafe.detail}`)
          : warn('charger failsafe', ch.failsafe.detail, 'see docs/CHARGERS.md, "Failsafe"'),
      );
    if (opts.active)
      checks.push(
        skip(
          'charger on/off',
          'the running agent owns the charger: stop it (systemctl stop p2pev) to run --active',
        ),
      );
    return checks;
  }
  let charger: Charger | undefined;
  try {
    charger = await createCharger(c, { readOnly: !opts.active });
    if (!charger) return [];
    await charger.open();
    const until = Date.now() + (opts.waitMs ?? 60_000);
    while (!charger.connected() && c.kind === 'ocpp' && Date.now() < until)
      await new Promise((r) => setTimeout(r, 200));
    const st = await charger.state();
    const id = await charger.identity();
    const checks: Check[] = [ok('charger', `${id.vendor} ${id.model}: ${st.status} (${st.raw})`)];
    const fs = charger.failsafe();
    const now =
      charger instanceof ModbusCharger ? await charger.readFailsafe().catch(() => undefined) : undefined;
    checks.push(
      fs.configured || now
        ? ok(
            'charger failsafe',
            now
              ? `watchdog in the wallbox now ${now.timeoutS} s at ${now.currentA} A; the agent sets ${(charger as ModbusCharger).failsafeS} s at 0 A when it starts`
              : fs.detail,
          )
        : warn('charger failsafe', fs.detail, 'see docs/CHARGERS.md, "Failsafe"'),
    );
    if (opts.active) {
      try {
        await charger.enable(6, '999999998');
        const on = await charger.state();
        await charger.disable();
        const off = await charger.state();
        checks.push(
          c.kind === 'ocpp' || (on.enabled && !off.enabled)
            ? ok('charger on/off', `enable accepted (${on.raw}), disable accepted (${off.raw})`)
            : fail(
                'charger on/off',
                `enable/disable did not take: on → ${on.raw}, off → ${off.raw}`,
                urlHint,
              ),
        );
      } catch (err) {
        checks.push(fail('charger on/off', message(err), urlHint));
      }
    }
    return checks;
  } catch (err) {
    return [fail('charger', message(err), urlHint)];
  } finally {
    if (opts.active) await charger?.disable().catch(() => {});
    await charger?.close().catch(() => {});
  }
}

async function checkBroker(cfg: AgentConfig, timeoutMs: number): Promise<Check> {
  const m = cfg.mqtt;
  const fix = `check mqtt.url (${m.url}), that the broker runs and the firewall lets this device reach it${m.username ? `, and the credentials (mqtt.username, ${m.passwordEnv ?? 'mqtt.passwordEnv'})` : ''}${m.caFile ? `, and the CA file ${m.caFile}` : ''}`;
  let client: mqtt.MqttClient | undefined;
  try {
    // Its own client id: borrowing the agent's would disconnect the running agent.
    client = await withTimeout(
      mqtt.connectAsync(m.url, {
        clientId: `p2pev-doctor-${process.pid}-${Date.now() % 100000}`,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: timeoutMs,
        ...mqttCredentials(m),
      }),
      timeoutMs,
      `broker ${m.url}`,
    );
    return ok('broker', `${m.url} accepts connections`);
  } catch (err) {
    return fail('broker', `${m.url}: ${message(err)}`, fix);
  } finally {
    await client?.endAsync(true).catch(() => {});
  }
}

async function checkChain(cfg: AgentConfig, address: string | undefined): Promise<Check[]> {
  const checks: Check[] = [];
  let deployment: ReturnType<typeof readDeployment>;
  try {
    deployment = readDeployment(cfg.chain.deploymentFile);
  } catch (err) {
    return [
      fail('contract', message(err), `copy the operator's deployment file to ${cfg.chain.deploymentFile}`),
    ];
  }
  let conn: Awaited<ReturnType<typeof connectRpc>>;
  try {
    conn = await connectRpc(cfg.chain.rpcUrl);
    checks.push(ok('chain', `${cfg.chain.rpcUrl} answers (chain ${conn.chainId})`));
  } catch (err) {
    return [fail('chain', message(err), `check chain.rpcUrl (${cfg.chain.rpcUrl}) and the network`)];
  }
  const { provider, chainId } = conn;
  try {
    if (chainId !== BigInt(deployment.chainId)) {
      checks.push(
        fail(
          'contract',
          `${cfg.chain.rpcUrl} is chain ${chainId}, the deployment file is for chain ${deployment.chainId}`,
          'point chain.rpcUrl at the right network, or get the deployment file for this one',
        ),
      );
      return checks;
    }
    if ((await provider.getCode(deployment.address)) === '0x') {
      checks.push(
        fail(
          'contract',
          `no contract at ${deployment.address} on chain ${chainId}`,
          'the chain was reset or the deployment file is stale: ask the operator for the current one',
        ),
      );
      return checks;
    }
    checks.push(ok('contract', `settlement contract at ${deployment.address}`));
    if (cfg.role === 'hcs' && cfg.hcs) {
      // The configured window against the contract's (and the power registered, once known).
      const c = SettlementClient.fromDeployment(deployment, provider);
      const window = Number(await c.settlementWindow());
      const powerW = address ? (await c.hcsProfile(address)).powerW : 0;
      const w = windowCheck(cfg.hcs, window, powerW || undefined);
      checks.push(
        w.level === 'ok'
          ? ok('window', w.detail)
          : w.level === 'warn'
            ? warn('window', w.detail, w.fix ?? '')
            : fail('window', w.detail, w.fix ?? ''),
      );
    }
    if (!address) {
      checks.push(skip('registration', 'the keystore could not be opened, so the address is unknown'));
      return checks;
    }
    const client = SettlementClient.fromDeployment(deployment, provider);
    const balance = await provider.getBalance(address);
    if (cfg.role === 'edge') {
      checks.push(
        balance > 0n
          ? ok('gas', `${address} holds ${formatEther(balance)} ETH for settlement transactions`)
          : fail(
              'gas',
              `${address} holds no ETH`,
              `send ETH to ${address}: the edge pays gas for settleBatch`,
            ),
      );
      return checks;
    }
    const info = await client.authInfo(address);
    const wantRole = cfg.role === 'ev' ? MemberRole.EV : MemberRole.HCS;
    if (info.role === MemberRole.None)
      checks.push(
        fail(
          'registration',
          `${address} is not registered`,
          'p2pev register --config <this config>, then ask the operator to verify it',
        ),
      );
    else if (info.role !== wantRole)
      checks.push(
        fail(
          'registration',
          `${address} is registered as ${info.role === MemberRole.EV ? 'an EV' : 'a station'}, but the config says ${cfg.role}`,
          'use the keystore that belongs to this role, or fix "role" in the config',
        ),
      );
    else if (info.status === MemberStatus.Verified)
      checks.push(ok('registration', `${address} registered and verified`));
    else {
      const why: [string, string] =
        info.status === MemberStatus.Pending
          ? [
              "is registered, awaiting the operator's verification",
              'ask the operator to verify it (their physical check of your documents)',
            ]
          : [
              `is ${info.status === MemberStatus.Suspended ? 'suspended' : 'revoked'}`,
              'contact the operator; the agent cannot take part until it is verified again',
            ];
      checks.push(fail('registration', `${address} ${why[0]}`, why[1]));
    }
    checks.push(
      balance > 0n
        ? ok('gas', `${address} holds ${formatEther(balance)} ETH`)
        : warn(
            'gas',
            `${address} holds no ETH`,
            `send a little ETH to ${address}: ${cfg.role === 'ev' ? 'deposits and ratings' : 'settling directly when the edge is away'} cost gas`,
          ),
    );
  } catch (err) {
    checks.push(
      fail('chain', `reading the contract failed: ${message(err)}`, 'check the node and the deployment file'),
    );
  } finally {
    provider.destroy();
  }
  return checks;
}

function checkDisk(cfg: AgentConfig, minFree: number, warnFree: number): Check {
  let dir = cfg.dataDir;
  // The data directory may not exist before the first start: its nearest existing parent decides.
  while (!existsSync(dir) && dir !== '/') dir = dir.replace(/\/[^/]*$/, '') || '/';
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    return fail(
      'disk',
      `${dir} is not writable by this user`,
      `chown p2pev: ${cfg.dataDir} (or run the doctor as p2pev)`,
    );
  }
  const fs = statfsSync(dir);
  const free = fs.bavail * fs.bsize;
  const detail = `${Math.round(free / MiB)} MiB free for ${cfg.dataDir}`;
  if (free < minFree)
    return fail(
      'disk',
      detail,
      'free space: journalctl --vacuum-size=50M, apt-get clean, or a larger SD card',
    );
  if (free < warnFree)
    return warn('disk', detail, 'space is getting low: journalctl --vacuum-size=50M; apt-get clean');
  return ok('disk', detail);
}

function checkClock(timeoutMs: number): Promise<Check> {
  return new Promise((resolve) => {
    execFile(
      'timedatectl',
      ['show', '--property=NTPSynchronized', '--value'],
      { timeout: timeoutMs },
      (err, stdout, stderr) => {
        if (err) {
          const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
          resolve(
            skip(
              'clock',
              missing
                ? 'timedatectl is not installed: cannot tell whether the clock is synchronised'
                : `timedatectl could not answer (${(stderr || err.message).trim().split('\n')[0]}): no systemd here?`,
            ),
          );
        } else if (stdout.trim() === 'yes') resolve(ok('clock', 'synchronised by NTP'));
        else
          resolve(
            fail(
              'clock',
              'the system clock is not synchronised (NTP)',
              'timedatectl set-ntp true, and let the device reach an NTP server (UDP 123); session times and settlement windows depend on it',
            ),
          );
      },
    );
  });
}

/**
 * Which signature backend checks the messages: native libsecp256k1 (~25× the checks a core) or,
 * where its binding did not load, the portable @noble/curves, which works but limits how many
 * messages a busy device (an edge above all) can take.
 */
export function checkSignatureBackend(info = signatureBackendInfo()): Check {
  if (info.name === 'libsecp256k1') return ok('signatures', 'native libsecp256k1 checks them');
  if (info.nativeUnavailable === 'P2PEV_SIGNATURE_BACKEND')
    return warn(
      'signatures',
      '@noble/curves (pure JS) checks them: P2PEV_SIGNATURE_BACKEND chose it',
      'unset P2PEV_SIGNATURE_BACKEND to use native libsecp256k1',
    );
  return warn(
    'signatures',
    `@noble/curves (pure JS, ~25× slower) checks them: the native libsecp256k1 binding did not load (${info.nativeUnavailable ?? 'unknown'})`,
    'install a compiler and rebuild it: sudo apt-get install build-essential python3 && cd /opt/p2pev && npm rebuild secp256k1',
  );
}

/** Runs every check; never throws. */
export async function runDoctor(opts: DoctorOptions): Promise<Check[]> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  let cfg: AgentConfig;
  try {
    cfg = loadConfig(opts.configPath);
  } catch (err) {
    return [fail('config', message(err), `edit ${opts.configPath}; its schema is agent/config.schema.json`)];
  }
  const checks: Check[] = [
    ok('config', `${opts.configPath}: ${cfg.role} "${cfg.name}"`),
    checkSignatureBackend(),
  ];
  const systemd = opts.systemd ?? existsSync('/run/systemd/system');
  const key = await checkKeystore(cfg, opts.password);
  checks.push(...key.checks);

  let running: Record<string, unknown> | undefined;
  if (cfg.control.port) {
    try {
      running = await fetchStatus({ host: cfg.control.host, port: cfg.control.port }, timeoutMs);
      checks.push(
        running.address === key.address || !key.address
          ? ok(
              'agent',
              `running for ${Math.round(Number(running.uptimeS) / 60)} min on port ${cfg.control.port}`,
            )
          : fail(
              'agent',
              `the agent on port ${cfg.control.port} is ${String(running.address)}, not this keystore's ${key.address}`,
              'another agent holds this control port: give each config its own control.port',
            ),
      );
    } catch (err) {
      checks.push(
        warn(
          'agent',
          message(err),
          systemd
            ? 'systemctl start p2pev (and systemctl enable p2pev to start at boot)'
            : `no systemd here (a bench): start it with p2pev run --config ${opts.configPath}`,
        ),
      );
    }
  } else checks.push(skip('agent', 'no control.port in the config: cannot see the running agent'));

  const [meter, charger, broker, chain, clock] = await Promise.all([
    cfg.role === 'edge'
      ? Promise.resolve(skip('meter', 'an edge has no meter'))
      : checkMeter(cfg, running).catch((err) => fail('meter', message(err), 'check meter in the config')),
    cfg.role === 'edge'
      ? Promise.resolve([])
      : checkCharger(cfg, running, {
          ...(opts.active ? { active: true } : {}),
          ...(opts.chargerWaitMs !== undefined ? { waitMs: opts.chargerWaitMs } : {}),
        }),
    checkBroker(cfg, timeoutMs),
    checkChain(cfg, key.address),
    systemd
      ? checkClock(timeoutMs)
      : Promise.resolve(skip('clock', 'no systemd here (a bench): NTP sync not checked')),
  ]);
  checks.push(meter, ...charger, broker, ...chain);
  checks.push(checkDisk(cfg, opts.minFreeBytes ?? 50 * MiB, opts.warnFreeBytes ?? 200 * MiB), clock);
  return checks;
}

const MARK: Record<CheckStatus, string> = { ok: '[ ok ]', warn: '[warn]', fail: '[FAIL]', skip: '[skip]' };

export function formatChecks(checks: Check[]): string {
  const lines = checks.map(
    (c) =>
      `${MARK[c.status]} ${c.name.padEnd(17)} ${c.detail}${c.fix ? `\n       ${''.padEnd(17)} fix: ${c.fix}` : ''}`,
  );
  const failed = checks.filter((c) => c.status === 'fail').length;
  lines.push(failed ? `${failed} check(s) failed` : 'all checks passed');
  return lines.join('\n');
}
